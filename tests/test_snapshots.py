"""What users read, pinned: the default table output of train, runs, show, eval and
compare, on an 80-column terminal and in a pipe, compared with golden files in
tests/snapshots/. An intended change of output is a new golden file:

    MASKLAB_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_snapshots.py

then read `git diff tests/snapshots/` before committing it.

runs, show and compare read run folders written here with fixed numbers and times, so
their output is pinned exactly. train and eval really train and evaluate; their
measured numbers and seconds differ between machines, so each measured value is
replaced by a fixed stand-in on its way into the table: what is pinned is everything
around the numbers (columns, titles, order, formatting, widths, fitting).
"""

from __future__ import annotations

import json
import os
import re
import zlib
from pathlib import Path

import pytest
import yaml

from masklab import spec as spec_mod
from masklab.cli import tables

from conftest import cli, tiny_spec, trained_once

GOLDEN = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("MASKLAB_UPDATE_SNAPSHOTS") == "1"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Terminal:
    """stdout as an 80-column terminal: render() sees a TTY and draws its rich table."""

    def __init__(self, real) -> None:
        self.real, self.text = real, []

    def isatty(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.text.append(s)
        return len(s)

    def flush(self) -> None:
        pass


def stand_in(key: str, position: int) -> float:
    """A fixed number for a measured value: the same key and row give the same number."""
    return round(0.5 + (zlib.crc32(f"{key}/{position}".encode()) % 4000) / 10_000, 4)


@pytest.fixture(params=["terminal", "pipe"])
def output(request, monkeypatch):
    """Run the CLI with render() writing to a terminal or a pipe; measured=True swaps
    measured numbers for stand-ins. Returns (mode, run) where run(*args) -> stdout."""
    mode = request.param
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("LINES", "50")
    original = tables.render

    def run(*args, measured: bool = False) -> str:
        def render(rows, cols, fmt, **kw):
            if measured:
                rows = [
                    {k: stand_in(k, i) if isinstance(v, float) else v for k, v in r.items()} for i, r in enumerate(rows)
                ]
            if mode == "terminal" and kw.get("out") is None:
                import sys

                term = Terminal(sys.stdout)
                original(rows, cols, fmt, **{**kw, "out": term})
                sys.stdout.write(ANSI.sub("", "".join(term.text)))
            else:
                original(rows, cols, fmt, **kw)

        monkeypatch.setattr(tables, "render", render)
        result = cli(*args)
        monkeypatch.setattr(tables, "render", original)
        assert result.exit_code == 0, result.stderr
        return result.stdout

    return mode, run


def check(name: str, text: str, tmp: Path) -> None:
    text = text.replace(str(tmp), "<tmp>")
    golden = GOLDEN / f"{name}.txt"
    if UPDATE:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.is_file(), f"no golden file {golden}: run with MASKLAB_UPDATE_SNAPSHOTS=1 to write it"
    assert text == golden.read_text(), f"{name}: output changed; if intended, MASKLAB_UPDATE_SNAPSHOTS=1 rewrites it"
    if "terminal" in name:
        assert all(len(line) <= 80 for line in text.splitlines()), name


def frozen_run(root: Path, name: str, seed: int, acc: float, lr: float = 0.01) -> None:
    """A finished run folder with fixed numbers and times (no weights, no predictions)."""
    spec = spec_mod.resolve(
        tiny_spec(name=name, seeds=[seed], train={"lr": lr}, eval={"ops": [{"op": "gaussian", "sigma": [0.2]}]})
    )
    group = f"{name}-{spec.group_hash()}"
    folder = root / f"{group}-s{seed}"
    folder.mkdir(parents=True)
    (folder / "spec.yaml").write_text(spec_mod.dump_yaml(spec))
    classes = [str(k) for k in range(10)]
    info = {
        "id": folder.name,
        "name": name,
        "study": None,
        "variant": None,
        "group": group,
        "spec_hash": spec.group_hash(),
        "seed": seed,
        "status": "done",
        "created": f"2026-11-23T10:0{seed}:00.000+00:00",
        "device": "cpu",
        "threads": 2,
        "versions": {"python": "3.11.7", "torch": "2.13.0+cpu", "masklab": "0.1.0"},
        "data": {
            "dataset": "mnist-mini",
            "fingerprint": "7ca2a9cabbce0e23",
            "shape": [1, 28, 28],
            "classes": classes,
            "n_train": 300,
            "n_test": 200,
        },
        "epochs_done": 2,
        "started": f"2026-11-23T10:0{seed}:01.000+00:00",
        "parameters": 25450,
        "trainable": 25450,
        "n_val": 60,
        "compile": False,
        "finished": f"2026-11-23T10:0{seed}:05.000+00:00",
        "duration_s": 4.0,
    }
    (folder / "run.json").write_text(json.dumps(info, indent=2))
    epochs = [
        {"epoch": e, "train_loss": 2.0 / e, "train_acc": acc - 0.2 / e, "lr": 0.01 / e, "val_loss": 1.5 / e}
        | {"val_acc": acc - 0.1 / e, "seconds": 0.5}
        for e in (1, 2)
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in epochs))
    recall = {c: round(acc - 0.02 * (k - 5), 4) for k, c in enumerate(classes)}
    summary = {
        "schema_version": 1,
        "run_id": folder.name,
        "epochs": 2,
        "train_seconds": 1.0,
        "test_acc": acc,
        "test_macro_f1": round(acc - 0.005, 4),
        "test_loss": round(1.1 - acc, 4),
        "per_class_recall": recall,
        "robustness": [
            {"name": "gaussian(sigma=0.2)", "op": {"op": "gaussian", "sigma": 0.2}, "acc": acc - 0.1}
            | {"macro_f1": acc - 0.11}
        ],
        "acc@gaussian(sigma=0.2)": acc - 0.1,
        "robust_acc": acc - 0.1,
        "val_acc": acc - 0.05,
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))


@pytest.fixture(scope="module")
def frozen(tmp_path_factory):
    root = tmp_path_factory.mktemp("frozen")
    for seed, (a, b) in enumerate([(0.81, 0.835), (0.79, 0.81), (0.8, 0.84)]):  # gains .025, .02, .04
        frozen_run(root / "runs", "base", seed, a)
        frozen_run(root / "runs", "masked", seed, b, lr=0.003)
    return root


def test_runs_show_compare(frozen, output, monkeypatch):
    mode, run = output
    monkeypatch.chdir(frozen)
    check(f"runs-{mode}", run("runs", "--runs-dir", "runs"), frozen)
    check(f"show-{mode}", run("show", "masked-s1", "--runs-dir", "runs"), frozen)
    check(f"compare-{mode}", run("compare", "base", "masked", "--runs-dir", "runs"), frozen)


@pytest.fixture(scope="module")
def one_trained(tmp_path_factory):
    with trained_once(tmp_path_factory, "snap-train") as root:
        body = tiny_spec(seeds=[0, 1], eval={"ops": [{"op": "gaussian", "sigma": [0.2]}]})
        (root / "spec.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    return root


def test_train_and_eval(one_trained, output, monkeypatch, tmp_path):
    mode, run = output
    monkeypatch.chdir(one_trained)
    monkeypatch.setenv("MASKLAB_RUNS", str(tmp_path / "runs"))
    check(f"train-{mode}", run("train", "spec.yaml", "-q", measured=True), one_trained)
    check(f"eval-{mode}", run("eval", "tiny", "--op", "pixel:rate=0.25,0.5", measured=True), one_trained)
