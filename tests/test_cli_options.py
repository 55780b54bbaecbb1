"""Every option that README and --help promise, through the command line: train, runs,
show, compare and eval on runs trained once for the module, then the options that
need their own folder (--runs-dir, --variant, --device, data lookup, broken pipes)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from masklab.data.idx import write_idx

from conftest import cli, run_dirs, tiny_spec, trained_once

ROOT = Path(__file__).resolve().parents[1]


def csv_rows(result) -> list[dict]:
    assert result.exit_code == 0, result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """base and other (lr 0.003), 2 seeds each, each with its own eval.ops grid; runs in
    a folder passed with --runs-dir (MASKLAB_RUNS points elsewhere)."""
    with trained_once(tmp_path_factory, "options") as root:
        grids = {"base": [{"op": "gaussian", "sigma": [0.2]}], "other": [{"op": "patch", "rate": [0.5], "size": 7}]}
        for name, lr in (("base", 0.01), ("other", 0.003)):
            body = tiny_spec(name=name, seeds=[0, 1], train={"lr": lr}, eval={"ops": grids[name]})
            (root / f"{name}.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
            result = cli("train", root / f"{name}.yaml", "-q", "--runs-dir", root / "store")
            assert result.exit_code == 0, result.stderr
        assert not (root / "runs").exists()  # --runs-dir beats MASKLAB_RUNS
    return root / "store"


def test_resume_and_force_exclude_each_other(workdir, write_spec):
    result = cli("train", write_spec(tiny_spec()), "--resume", "--force")
    assert result.exit_code == 2 and result.stderr == (
        "Error: --resume and --force exclude each other: resume continues a run, force starts it over\n"
    )
    assert run_dirs(workdir) == []


def test_runs_name_and_status_filters(trained, workdir):
    every = csv_rows(cli("runs", "--runs-dir", trained, "-f", "csv"))
    assert len(every) == 4 and {r["status"] for r in every} == {"done"}
    named = csv_rows(cli("runs", "--runs-dir", trained, "--name", "other", "-f", "csv"))
    assert [r["id"].rsplit("-", 2)[0] for r in named] == ["other", "other"]
    assert csv_rows(cli("runs", "--runs-dir", trained, "--status", "done", "-f", "csv")) == every
    none = cli("runs", "--runs-dir", trained, "--status", "failed", "-f", "json")
    assert none.exit_code == 0 and json.loads(none.stdout)["rows"] == []
    header = cli("runs", "--runs-dir", trained, "--name", "nothing", "-f", "csv").stdout
    assert header.startswith("id,status,name,") and header.count("\n") == 1  # the header row, no rows
    assert cli("runs", "-f", "json").stdout.count('"id"') == 0  # MASKLAB_RUNS (empty) without --runs-dir


def test_show_prints_tables_of_the_run(trained):
    """Without --format, show is four tables: the run, per-class recall, the grid, the epochs."""
    (run_id, *_) = [r["id"] for r in csv_rows(cli("runs", "--runs-dir", trained, "--name", "base", "-f", "csv"))]
    table = cli("show", run_id, "--runs-dir", trained)
    assert table.exit_code == 0, table.stderr
    body = json.loads(cli("show", run_id, "--runs-dir", trained, "-f", "json").stdout)
    blocks = [b.splitlines() for b in table.stdout.strip().split("\n\n")]
    assert [b[0].split()[:2] for b in blocks] == [
        ["key", "value"],
        ["class", "test_recall"],
        ["corruption", "acc"],
        ["epoch", "train_loss"],
    ]
    info = dict(line.split(None, 1) for line in blocks[0][1:] if len(line.split(None, 1)) == 2)
    assert (
        info["id"] == run_id
        and info["status"] == "done"
        and float(info["test_acc"]) == pytest.approx(body["summary"]["test_acc"], abs=5e-5)
    )
    assert [line.split()[0] for line in blocks[1][1:]] == [str(k) for k in range(10)]
    assert blocks[2][1].split()[0] == "gaussian(sigma=0.2)"
    assert [int(line.split()[0]) for line in blocks[3][1:]] == [row["epoch"] for row in body["metrics"]] == [1, 2]


def test_compare_all_per_run_and_sort(trained):
    keys = json.loads(cli("compare", "base", "other", "--runs-dir", trained, "-f", "json").stdout)["keys"]
    assert "train.lr" in keys and "train.epochs" not in keys  # only what differs
    every = json.loads(cli("compare", "base", "other", "--runs-dir", trained, "--all", "-f", "json").stdout)["keys"]
    assert {"train.lr", "train.epochs", "model.arch", "data.train_limit"} <= set(every) and len(every) > len(keys)

    groups = csv_rows(cli("compare", "base", "other", "--runs-dir", trained, "-f", "csv"))
    assert len(groups) == 2
    per_run = csv_rows(cli("compare", "base", "other", "--runs-dir", trained, "--per-run", "-f", "csv"))
    assert len(per_run) == 4
    accs = {r["run"] if "run" in r else r["group"]: float(r["mean"]) for r in per_run}
    assert len(accs) == 4

    up = csv_rows(cli("compare", "base", "other", "--runs-dir", trained, "--per-run", "--sort", "mean", "-f", "csv"))
    down = csv_rows(cli("compare", "base", "other", "--runs-dir", trained, "--per-run", "--sort", "-mean", "-f", "csv"))
    assert [float(r["mean"]) for r in up] == sorted(float(r["mean"]) for r in per_run)
    assert [float(r["mean"]) for r in down] == sorted((float(r["mean"]) for r in per_run), reverse=True)
    bad = cli("compare", "base", "other", "--runs-dir", trained, "--sort", "nope")
    assert bad.exit_code == 2 and "--sort" in bad.stderr


@pytest.mark.parametrize("field", ["mean", "p", "ci_low", "ci_high", "diff", "p_adj"])
def test_gates_on_every_field(trained, field):
    body = json.loads(cli("compare", "base", "other", "--runs-dir", trained, "-f", "json").stdout)
    (c,) = body["comparisons"]
    other = [g for g in body["groups"] if g["group"].startswith("other")][0]
    value = other["stats"]["test_acc"]["mean"] if field == "mean" else c["ci"][0] if field == "ci_low" else None
    value = c["ci"][1] if field == "ci_high" else value
    value = c[field] if value is None else value
    args = ("compare", "base", "other", "--runs-dir", trained, "-f", "csv")
    trips = cli(*args, "--fail-if", f"test_acc.{field} < {value + 1e-6}")  # JSON rounds to 12 digits
    assert trips.exit_code == 3 and f"test_acc {field} = " in trips.stderr, trips.stderr
    holds = cli(*args, "--fail-if", f"test_acc.{field} < {value - 1e-6}")
    assert holds.exit_code == 0, holds.stderr


def test_eval_ops_file_spec_grid_seed_and_missing_baseline_cells(trained, workdir):
    grid = workdir / "grid.yaml"
    grid.write_text(yaml.safe_dump({"eval": {"ops": [{"op": "gaussian", "sigma": [0.1, 0.3]}]}}))
    body = json.loads(cli("eval", "base-s0", "--runs-dir", trained, "--ops", grid, "-f", "json").stdout)
    assert [c["name"] for c in body["evals"][0]["cells"]] == ["gaussian(sigma=0.1)", "gaussian(sigma=0.3)"]

    own = json.loads(cli("eval", "other-s1", "--runs-dir", trained, "--spec-grid", "-f", "json").stdout)
    assert [c["name"] for c in own["evals"][0]["cells"]] == ["patch(rate=0.5,size=7)"]
    both = json.loads(cli("eval", "base-s1", "--runs-dir", trained, "--ops", grid, "--spec-grid", "-f", "json").stdout)
    assert [c["name"] for c in both["evals"][0]["cells"]] == [
        "gaussian(sigma=0.1)",
        "gaussian(sigma=0.3)",
        "gaussian(sigma=0.2)",
    ]

    seeded = {}
    for seed in (0, 1):
        result = cli("eval", "base-s0", "--runs-dir", trained, "--op", "pixel:rate=0.5", "--seed", seed, "-f", "json")
        (seeded[seed],) = json.loads(result.stdout)["evals"]
    assert seeded[0]["seed"] == 0 and seeded[1]["seed"] == 1 and seeded[0]["name"] != seeded[1]["name"]
    assert seeded[0]["clean"] == seeded[1]["clean"]
    stored = sorted(p.name for p in (next(trained.glob("base-*-s0")) / "eval").glob("*.json"))
    assert len(stored) == len(set(stored)) >= 3  # one file per evaluation, the seeds apart

    missing = cli("eval", "other-s0", "--runs-dir", trained, "--spec-grid", "--baseline", "base-s0")
    assert missing.exit_code == 2 and missing.stderr.startswith("Error: --baseline base-")
    assert "lacks the cells patch(rate=0.5,size=7); evaluate both runs on the same grid" in missing.stderr


def test_train_variant_trains_only_the_named_variants(workdir, write_spec):
    body = tiny_spec(name="study", train={"epochs": 1})
    body["variants"] = {"slow": {"train.lr": 0.001}, "fast": {"train.lr": 0.02}, "mid": {"train.lr": 0.005}}
    result = cli("train", write_spec(body), "-q", "--variant", "fast", "--variant", "slow", "-f", "csv")
    rows = csv_rows(result)
    assert sorted(r["run"].rsplit("-", 2)[0] for r in rows) == ["study-fast", "study-slow"]
    assert sorted(p.name.rsplit("-", 2)[0] for p in run_dirs(workdir)) == ["study-fast", "study-slow"]
    for folder in run_dirs(workdir):
        lr = yaml.safe_load((folder / "spec.yaml").read_text())["train"]["lr"]
        assert lr == {"study-fast": 0.02, "study-slow": 0.001}[folder.name.rsplit("-", 2)[0]]


def test_device_option_sets_the_device(workdir, write_spec):
    path = write_spec(tiny_spec(train={"epochs": 1}))
    result = cli("train", path, "-q", "--device", "cpu", "-f", "json")
    assert result.exit_code == 0, result.stderr
    (folder,) = run_dirs(workdir)
    assert json.loads((folder / "run.json").read_text())["device"] == "cpu"
    assert yaml.safe_load((folder / "spec.yaml").read_text())["train"]["device"] == "cpu"
    bad = cli("train", path, "--device", "tpu")
    assert bad.exit_code == 2 and bad.stderr.startswith("Error: train.device") and "tpu" in bad.stderr
    import torch

    if not torch.cuda.is_available():
        no_gpu = cli("train", path, "--device", "cuda")
        assert no_gpu.exit_code in (1, 2) and "cuda" in no_gpu.stderr.lower() and no_gpu.stderr.count("\n") == 1


def test_runs_dir_beats_the_environment_for_every_reading_command(trained, workdir):
    (first,) = [r["id"] for r in csv_rows(cli("runs", "--runs-dir", trained, "-f", "csv"))][:1]
    for args in (("show", first), ("compare", "base", "other"), ("eval", first)):
        assert cli(*args, "-f", "json").exit_code == 1  # MASKLAB_RUNS of this test is empty
        assert cli(*args, "--runs-dir", trained, "-f", "json").exit_code == 0, args


def idx_folder(folder: Path, n_train: int) -> None:
    import numpy as np

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", 20)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))


def test_data_lookup_order(workdir, monkeypatch):
    """data.root, then $MASKLAB_DATA/<name>, then ./data/<name>, then the download cache:
    the first folder holding the files wins (told apart by their sizes)."""
    idx_folder(workdir / "mine", 30)
    idx_folder(workdir / "env" / "mnist", 40)
    idx_folder(workdir / "data" / "mnist", 50)
    idx_folder(workdir / "cache" / "mnist", 60)

    def train_size(*spec_root) -> int:
        out = workdir / "x.npz"
        args = ["mask", "--dataset", "mnist", "--op", "pixel", "--rate", "0.1", "--out", out, "-f", "json"]
        if spec_root:
            spec = workdir / "spec.yaml"
            spec.write_text(
                yaml.safe_dump(tiny_spec(data={"dataset": "mnist", "root": spec_root[0], "train_limit": None}))
            )
            args = ["mask", spec, "--out", out, "--op", "pixel", "--rate", "0.1", "-f", "json"]
        result = cli(*args)
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)["rows"][0]["n"]

    monkeypatch.setenv("MASKLAB_DATA", str(workdir / "env"))
    assert train_size(str(workdir / "mine")) == 30
    assert train_size() == 40
    monkeypatch.delenv("MASKLAB_DATA")
    assert train_size() == 50
    (workdir / "data" / "mnist" / "train-images-idx3-ubyte.gz").unlink()  # incomplete: passed by
    assert train_size() == 60


def test_a_broken_pipe_exits_0_without_a_traceback(trained):
    """`masklab runs | head -1`: the reader goes away before masklab writes."""
    code = (
        "import os, sys; r, w = os.pipe(); os.close(r); os.dup2(w, 1);"
        "from masklab.cli import main; sys.argv = ['masklab', 'runs', '--runs-dir', sys.argv[1], '-f', 'jsonl'];"
        "main()"
    )
    result = subprocess.run([sys.executable, "-c", code, str(trained)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stderr == ""
    shell = subprocess.run(
        f"{sys.executable} -m masklab runs --runs-dir {trained} | head -c 1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shell.returncode == 0 and "Traceback" not in shell.stderr and "Error" not in shell.stderr


def test_the_quickstart_spec_trains_end_to_end(workdir):
    """experiments/quickstart.yaml itself, shortened: its ops, model, schedule and eval grid."""
    spec = ROOT / "experiments" / "quickstart.yaml"
    result = cli("train", spec, "-q", "--set", "train.epochs=1", "--set", "data.train_limit=600", "-f", "json")
    assert result.exit_code == 0, result.stderr
    (row,) = json.loads(result.stdout)["rows"]
    assert row["run"].startswith("quickstart-") and row["status"] == "done" and row["epochs"] == 1
    (folder,) = run_dirs(workdir)
    summary = json.loads((folder / "summary.json").read_text())
    assert [c["name"] for c in summary["robustness"]] == [
        "gaussian(sigma=0.2)",
        "gaussian(sigma=0.4)",
        "patch(rate=0.25)",
        "patch(rate=0.5)",
    ]
    (line,) = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    assert line["ops"] == [{"op": "patch", "realized": pytest.approx(12 / 49, abs=1e-6)}]  # round(0.25 * 49) patches
    assert summary["test_acc"] > 0.3  # a real CNN learnt something in one short epoch


def test_ctrl_c_from_the_command_line_exits_130_and_keeps_a_resumable_run(workdir, write_spec):
    """A user's Ctrl-C (SIGINT) to `masklab train`: 130, no traceback, the run marked interrupted."""
    import signal
    import time

    path = write_spec(tiny_spec(train={"epochs": 500}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "masklab", "train", str(path), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not any(
            (f / "metrics.jsonl").is_file() and (f / "metrics.jsonl").read_text().count("\n") >= 1
            for f in run_dirs(workdir)
        ):
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert out == "" and "Traceback" not in err and "--resume" in err
    (folder,) = run_dirs(workdir)
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "interrupted" and info["epochs_done"] >= 1
