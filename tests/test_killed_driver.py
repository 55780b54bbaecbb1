"""A study whose driver is SIGKILLed (issue 21): its `--jobs` workers stop at their next
step and leave their runs `interrupted`, never `failed`; a Ray task dies with its
driver and leaves its run `stale`; and running the same command again, without
--resume, continues every run to the numbers an unbroken study gives.

The driver is killed at one exact moment by tests/adversarial/driver_kill.py: before
any run is claimed, in the middle of a run's epochs, before its test evaluation, while
it is committed (a worker's phases for --jobs; the driver's own for Ray)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import cli, run_dirs, tiny_spec

HOOK = Path(__file__).parent / "adversarial" / "driver_kill.py"
SPEC = tiny_spec(seeds=[0, 1], train={"epochs": 3})
WAIT_S = 120  # a hang guard, not a timing claim
TIMES = ("seconds", "train_seconds", "samples_per_s")  # what differs between two trainings of one run


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory) -> dict[str, dict]:
    """The study trained in one piece by --jobs 2: each run's summary and per-epoch rows.
    (In process, with all the cores for one run, the last bits of a loss may differ: a
    sum over threads is taken in another order. A Ray task takes one core, as a worker.)"""
    from conftest import trained_once

    with trained_once(tmp_path_factory, "unbroken") as root:
        (root / "s.yaml").write_text(yaml.safe_dump(SPEC))
        assert cli("train", root / "s.yaml", "-q", "--jobs", "2").exit_code == 0
        return {p.name: outcome(p) for p in run_dirs(root)}


def outcome(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run / "summary.json").read_text())
    return {
        "rows": [{k: v for k, v in r.items() if k not in TIMES} for r in rows],
        "test_acc": summary["test_acc"],
        "test_loss": summary["test_loss"],
    }


def env_for(workdir: Path) -> dict:
    (workdir / "tmp").mkdir(exist_ok=True)
    return {
        **os.environ,
        "MASKLAB_RUNS": str(workdir / "runs"),
        "MASKLAB_CACHE": str(workdir / "cache"),
        "MASKLAB_FIGURES": "0",
        "MASKLAB_WORKER_PIDS": str(workdir / "pids"),
        "PYTHONUNBUFFERED": "1",
        # a killed Ray task's scratch folder stays: in this test's folder, not the system's
        # (Ray's own session stays where it was: its socket paths must be short)
        "TMPDIR": str(workdir / "tmp"),
        "RAY_TMPDIR": os.environ.get("RAY_TMPDIR", tempfile.gettempdir()),
    }


def kill_driver_at(workdir: Path, phase: str, *args: str) -> subprocess.CompletedProcess:
    (workdir / "pids").mkdir(exist_ok=True)
    (workdir / "s.yaml").write_text(yaml.safe_dump(SPEC))
    return subprocess.run(
        [sys.executable, str(HOOK), phase, "train", "s.yaml", "-q", *args],
        cwd=workdir, env=env_for(workdir), capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; only its parent's wait is missing


def wait_for_workers(workdir: Path) -> None:
    pids = [int(p.name) for p in (workdir / "pids").iterdir()]
    deadline = time.monotonic() + WAIT_S
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, f"workers {[p for p in pids if alive(p)]} still run"
        time.sleep(0.2)


def statuses(workdir: Path) -> dict[str, str]:
    """Each run's status as the store reads it (`running` with no process holding it: stale)."""
    from masklab.store.runs import Run

    return {p.name: Run(p).status for p in run_dirs(workdir)}


def rerun_continues_every_run(workdir: Path, unbroken: dict, *args: str) -> None:
    """The same command again (no --resume): every run done, no error left, the numbers
    of the unbroken study; nothing hidden left that the store would not sweep."""
    again = subprocess.run(
        [sys.executable, "-m", "masklab", "train", "s.yaml", "-q", *args],
        cwd=workdir, env=env_for(workdir), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert statuses(workdir) == dict.fromkeys(unbroken, "done")
    for run in run_dirs(workdir):
        assert "error" not in json.loads((run / "run.json").read_text())
        assert outcome(run) == unbroken[run.name], run.name
    hidden = [p.name for p in (workdir / "runs").iterdir() if p.name.startswith(".")]
    assert all(name.startswith(".tmp-") for name in hidden), hidden  # a dead driver's, unlocked
    from masklab.store import runs

    saved, runs.SWEEP_AFTER_S = runs.SWEEP_AFTER_S, 0.0  # as the next run created a minute later would
    try:
        runs.RunStore(workdir / "runs").sweep()
    finally:
        runs.SWEEP_AFTER_S = saved
    assert [p.name for p in (workdir / "runs").iterdir() if p.name.startswith(".")] == []


POOL = [  # worker-step in the default suite: main left both runs failed there
    pytest.param("worker-claim", marks=pytest.mark.slow),
    "worker-step",
    pytest.param("worker-test", marks=pytest.mark.slow),
    pytest.param("worker-commit", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("phase", POOL)
def test_a_killed_jobs_driver_leaves_its_runs_resumable_and_a_rerun_continues_them(workdir, unbroken, phase):
    killed = kill_driver_at(workdir, phase, "--jobs", "2")
    assert killed.returncode == -9, killed.stderr  # the driver, SIGKILLed by its worker
    wait_for_workers(workdir)  # each stops by itself
    left = statuses(workdir)
    assert set(left.values()) <= {"done", "interrupted"}, left  # never failed, never left running
    if phase == "worker-step":  # its next epoch's report finds the pipe broken: it stops there
        assert "interrupted" in left.values(), left
    for run in run_dirs(workdir):
        error = json.loads((run / "run.json").read_text()).get("error", "")
        assert "BrokenPipe" not in error
    rerun_continues_every_run(workdir, unbroken, "--jobs", "2")


RAY = [
    pytest.param("ray-claim", marks=pytest.mark.slow),
    "ray-epoch",
    pytest.param("ray-test", marks=pytest.mark.slow),
    pytest.param("ray-commit", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("phase", RAY)
def test_a_killed_ray_driver_leaves_its_runs_stale_and_a_rerun_continues_them(workdir, unbroken, phase):
    pytest.importorskip("ray")
    killed = kill_driver_at(workdir, phase, "--executor", "ray")
    assert killed.returncode == -9, killed.stderr
    left = statuses(workdir)
    assert set(left.values()) <= {"done", "stale"}, left  # claimed by the dead driver: stale, resumable
    if phase == "ray-epoch":
        assert "stale" in left.values(), left
    rerun_continues_every_run(workdir, unbroken, "--executor", "ray")
