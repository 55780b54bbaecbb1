"""Shared fixtures: an isolated working folder (runs, cache, data env) and a CLI runner."""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from masklab.cli import app

# A spec that trains a real model in about a second on the embedded digits.
TINY = {
    "name": "tiny",
    "seeds": [0],
    "data": {"dataset": "mnist-mini", "train_limit": 300, "test_limit": 200, "val_fraction": 0.2},
    "model": {"arch": "mlp", "hidden": [32], "dropout": 0.0},
    "train": {"epochs": 2, "batch_size": 32, "lr": 0.01},
}


def isolate(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in root: runs, cache and data looked up there only, no figures."""
    monkeypatch.chdir(root)
    monkeypatch.setenv("MASKLAB_RUNS", str(root / "runs"))
    monkeypatch.setenv("MASKLAB_CACHE", str(root / "cache"))
    monkeypatch.delenv("MASKLAB_DATA", raising=False)
    monkeypatch.delenv("MASKLAB_MIRROR", raising=False)
    monkeypatch.setenv(
        "MASKLAB_FIGURES", "0"
    )  # 0.5 s a run; the tests of figures (and of what carries them) turn them on
    return root


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return isolate(tmp_path, monkeypatch)


@contextlib.contextmanager
def trained_once(tmp_path_factory: pytest.TempPathFactory, name: str):
    """For a module-scoped fixture: an isolated folder to train runs in once, shared by
    the module's tests (which must not change them; copy the runs folder to change it)."""
    root = tmp_path_factory.mktemp(name)
    with pytest.MonkeyPatch.context() as mp:
        yield isolate(root, mp)


@pytest.fixture
def runs_from(workdir: Path, monkeypatch: pytest.MonkeyPatch):
    """Point MASKLAB_RUNS of this test at a module's trained runs: runs_from(root)."""

    def use(root: Path) -> Path:
        monkeypatch.setenv("MASKLAB_RUNS", str(root / "runs"))
        return root

    return use


@pytest.fixture
def figures(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """workdir, with the per-run figures drawn."""
    monkeypatch.setenv("MASKLAB_FIGURES", "1")
    return workdir


def tiny_spec(**changes) -> dict:
    """TINY with section-level changes: tiny_spec(train={"epochs": 3})."""
    body = copy.deepcopy(TINY)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict) and key != "model":  # a model is replaced whole
            body[key].update(value)
        else:
            body[key] = value
    return body


@pytest.fixture
def write_spec(workdir: Path):
    def write(body: dict | str, name: str = "spec.yaml") -> Path:
        path = workdir / name
        path.write_text(body if isinstance(body, str) else yaml.safe_dump(body, sort_keys=False))
        return path

    return write


def cli(*args: str):
    """Run the masklab CLI in-process; result has exit_code, stdout and stderr apart."""
    return CliRunner().invoke(app, [str(a) for a in args])


def run_dirs(root: Path) -> list[Path]:
    runs = root / "runs"
    return sorted(p for p in runs.iterdir() if not p.name.startswith(".")) if runs.is_dir() else []


def fake_run(
    root: Path,
    name: str = "fake",
    seed: int = 0,
    status: str = "done",
    summary: dict | None = None,
    group_hash: str = "0123abcd",
    **info,
) -> Path:
    """A run folder written by hand, as the store writes it (no training): spec.yaml,
    run.json, one metrics line and, for a finished run, summary.json."""
    folder = Path(root) / f"{name}-{group_hash}-s{seed}"
    folder.mkdir(parents=True)
    spec = tiny_spec(name=name, seeds=[seed])
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    body = {
        "id": folder.name,
        "name": name,
        "group": f"{name}-{group_hash}",
        "seed": seed,
        "status": status,
        "created": f"2026-01-01T00:00:{seed:02d}",
        "data": {"dataset": "mnist-mini", "fingerprint": "f"},
        "epochs_done": 1,
        **info,
    }
    (folder / "run.json").write_text(json.dumps(body))
    (folder / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train_loss": 1.0, "val_acc": 0.5}) + "\n")
    if status == "done":
        (folder / "summary.json").write_text(json.dumps({"test_acc": 0.9} if summary is None else summary))
    return folder
