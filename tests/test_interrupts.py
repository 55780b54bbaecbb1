"""Interruption means interruption: a real SIGINT or SIGTERM at every phase of a command
ends it with exit 130 and one line, and leaves every run in a true state.

The child process is the real CLI (`masklab.__main__.main`); a phase is hit exactly by
wrapping one function so that the process signals itself there (adversarial/phase_hook.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli, run_dirs, tiny_spec

HOOK = Path(__file__).parent / "adversarial" / "phase_hook.py"


def interrupt(workdir: Path, phase: str, sig: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, str(HOOK), phase, sig, *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_one_line_130(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last == "Interrupted." or last.startswith("Error: "), result.stderr
    return last


def statuses(workdir: Path) -> dict[str, str]:
    return {p.name.rsplit("-", 1)[1]: json.loads((p / "run.json").read_text())["status"] for p in run_dirs(workdir)}


def no_leftovers(workdir: Path) -> None:
    runs = workdir / "runs"
    hidden = [p.name for p in runs.iterdir() if p.name.startswith(".")] if runs.is_dir() else []
    temps = [str(p) for p in runs.rglob("*.tmp")] if runs.is_dir() else []
    assert hidden == [] and temps == []


def spec(write_spec, **changes) -> Path:
    return write_spec(tiny_spec(**{"seeds": [0, 1], **changes}))


PHASES = [
    ("spec", "SIGINT", {}),
    ("data", "SIGTERM", {}),
    ("create", "SIGTERM", {"s0": "interrupted"}),
    ("step", "SIGINT", {"s0": "interrupted"}),
    ("test", "SIGINT", {"s0": "interrupted"}),
    ("between", "SIGTERM", {"s0": "done"}),
]
FAST = {"between"}  # the test phase runs by default below, with a resume to the same result


@pytest.mark.parametrize(
    ("phase", "sig", "expected"),
    [pytest.param(*p, marks=() if p[0] in FAST else pytest.mark.slow, id=f"{p[0]}-{p[1]}") for p in PHASES]
    + [
        pytest.param(
            p[0], "SIGTERM" if p[1] == "SIGINT" else "SIGINT", p[2], marks=pytest.mark.slow, id=f"{p[0]}-other"
        )
        for p in PHASES
    ],
)
def test_train_interrupted_at_every_phase(workdir, write_spec, phase, sig, expected):
    path = spec(write_spec, eval={"ops": [{"op": "gaussian", "sigma": [0.2]}]})
    result = interrupt(workdir, phase, sig, "train", str(path), "-q")
    assert_one_line_130(result)
    assert statuses(workdir) == expected
    no_leftovers(workdir)
    if "interrupted" in expected.values():  # resumable, and once finished no stale error remains
        resumed = cli("train", path, "--resume", "-q")
        assert resumed.exit_code == 0, resumed.stderr
        infos = [json.loads((p / "run.json").read_text()) for p in run_dirs(workdir)]
        assert [i["status"] for i in infos] == ["done", "done"] and all("error" not in i for i in infos)


def test_an_interrupted_test_evaluation_is_resumed_to_the_same_result(workdir, write_spec):
    path = spec(write_spec, seeds=[0])
    assert cli("train", path, "-q", "--runs-dir", workdir / "reference").exit_code == 0
    (reference,) = (workdir / "reference").iterdir()
    assert_one_line_130(interrupt(workdir, "test", "SIGTERM", "train", str(path), "-q"))
    (run,) = run_dirs(workdir)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "interrupted" and info["epochs_done"] == 2 and not (run / "summary.json").exists()
    assert cli("train", path, "--resume", "-q").exit_code == 0
    mine, theirs = (json.loads((d / "summary.json").read_text()) for d in (run, reference))
    assert mine["test_acc"] == theirs["test_acc"] and mine["test_loss"] == theirs["test_loss"]


@pytest.mark.parametrize(
    ("phase", "sig", "force"),
    [
        pytest.param("test", "SIGINT", False, id="test"),
        pytest.param("group-step", "SIGTERM", False, id="step", marks=pytest.mark.slow),
        pytest.param("create", "SIGINT", False, id="create", marks=pytest.mark.slow),  # before any run started
        pytest.param("group-step", "SIGINT", True, id="force", marks=pytest.mark.slow),
    ],
)
def test_seeds_trained_batched_end_in_true_states(workdir, write_spec, phase, sig, force):
    """train.seed_batch: the seeds' runs share one process and one model, and each ends
    as a separate run would: interrupted at its checkpoint, then resumed to done; a
    forced replacement leaves the old runs untouched."""
    path = spec(write_spec, train={**tiny_spec()["train"], "seed_batch": 2})
    if force:
        assert cli("train", path, "-q").exit_code == 0
        before = {p.name: (p / "model.pt").read_bytes() for p in run_dirs(workdir)}
    result = interrupt(workdir, phase, sig, "train", str(path), "-q", *(["--force"] if force else []))
    assert_one_line_130(result)
    no_leftovers(workdir)
    if force:
        assert statuses(workdir) == {"s0": "done", "s1": "done"}
        assert {p.name: (p / "model.pt").read_bytes() for p in run_dirs(workdir)} == before
        return
    if phase == "create":  # the group's folders are claimed all or none: none, and nothing trained
        assert statuses(workdir) == {}
        return
    assert statuses(workdir) == {"s0": "interrupted", "s1": "interrupted"}
    assert cli("train", path, "--resume", "-q").exit_code == 0
    infos = [json.loads((p / "run.json").read_text()) for p in run_dirs(workdir)]
    assert [i["status"] for i in infos] == ["done", "done"] and all("error" not in i for i in infos)
    assert all(i["seed_batch"] == {"seeds": [0, 1], "size": 2} for i in infos)


@pytest.mark.slow
def test_a_forced_replacement_interrupted_at_its_commit_still_lands_whole(workdir, write_spec):
    path = spec(write_spec, seeds=[0])
    assert cli("train", path, "-q").exit_code == 0
    (before,) = run_dirs(workdir)
    created = json.loads((before / "run.json").read_text())["created"]
    last = assert_one_line_130(interrupt(workdir, "commit", "SIGINT", "train", str(path), "--force", "-q"))
    assert "finished" in last  # the commit completed: the signal waited for it
    (after,) = run_dirs(workdir)
    info = json.loads((after / "run.json").read_text())
    assert info["status"] == "done" and info["created"] != created
    no_leftovers(workdir)


def test_eval_interrupted_writes_nothing_half(workdir, write_spec):
    path = spec(write_spec, seeds=[0])
    assert cli("train", path, "-q").exit_code == 0
    assert_one_line_130(interrupt(workdir, "eval", "SIGINT", "eval", "tiny", "--op", "gaussian:sigma=0.1,0.2"))
    (run,) = run_dirs(workdir)
    assert not (run / "eval").exists() or list((run / "eval").iterdir()) == []
    assert statuses(workdir) == {"s0": "done"}
