"""When Ray declares the node of a study's driver dead, masklab says so in one line
(exit 1) and leaves every unfinished run interrupted at its last checkpoint, and the same
command continues them.

A real local Ray instance, started by masklab as a user's command starts it; its node is
made to look dead the way it looked in the flaky test (`Owner's node has crashed`): its
raylet stops answering Ray's health checks. The raylet is stopped (SIGSTOP) and Ray's
checks are made quick through Ray's own environment variables, which masklab leaves
to the user."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import cli, tiny_spec

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'masklab[ray]'")

RAY_LOG_LINE = re.compile(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z] \d+ \d+\] ")
EPOCHS = 30  # a few seconds a run: the node dies under a run in progress
STOPPED_S = 5.0  # long enough for Ray to declare the node dead, ten times over
QUICK_HEALTH_CHECKS = {  # the node is dead after 3 checks of 0.3 s fail, 0.2 s apart
    "RAY_health_check_initial_delay_ms": "0",
    "RAY_health_check_period_ms": "200",
    "RAY_health_check_timeout_ms": "300",
    "RAY_health_check_failure_threshold": "3",
}


def descendants(pid: int) -> dict[int, str]:
    """pid -> command line of every process under `pid` (read from /proc)."""
    parents: dict[int, int] = {}
    lines: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            lines[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = {}, [pid]
    while todo:
        parent = todo.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = lines[child]
                todo.append(child)
    return found


def statuses(runs: Path) -> dict[str, dict]:
    out = {}
    for path in runs.glob("*/run.json"):
        with contextlib.suppress(OSError, ValueError):  # a folder being committed this instant
            out[path.parent.name] = json.loads(path.read_text())
    return out


def wait_for(condition, timeout: float) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_dead_ray_node_is_one_line_and_leaves_the_runs_resumable(workdir):
    spec = workdir / "spec.yaml"
    body = tiny_spec(name="node", seeds=[0, 1], data={"train_limit": 600}, train={"epochs": EPOCHS})
    spec.write_text(yaml.safe_dump(body, sort_keys=False))
    runs = workdir / "runs"
    env = {**os.environ, **QUICK_HEALTH_CHECKS, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "masklab", "train", str(spec), "--executor", "ray"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    stopped: list[int] = []
    try:
        wait_for(
            lambda: any(i["status"] == "running" and i.get("epochs_done", 0) >= 1 for i in statuses(runs).values()),
            timeout=240,
        )
        stopped = [p for p, line in descendants(proc.pid).items() if "/raylet/raylet " in line]
        assert len(stopped) == 1
        os.kill(stopped[0], signal.SIGSTOP)  # the node stops answering Ray's health checks
        time.sleep(STOPPED_S)
        os.kill(stopped[0], signal.SIGCONT)
        out, err = proc.communicate(timeout=120)
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        proc.kill()
    assert proc.returncode == 1, err
    # Ray's C++ core writes its own log lines to stderr as it goes down ("[2026-... E ...]")
    lines = [x for x in err.splitlines() if not RAY_LOG_LINE.match(x)]
    assert "Token authentication" not in err and "Traceback" not in err and "internal error" not in err
    assert [x for x in lines if x.startswith("Error:")] == [lines[-1]]  # one line, masklab's last
    assert lines[-1].startswith(
        "Error: the Ray node running this study died or stopped answering Ray's health checks ("
    ), lines[-1]
    left = {rid: i for rid, i in statuses(runs).items() if i["status"] == "interrupted"}
    finished = len(statuses(runs)) - len(left)
    assert left and lines[-1].endswith(
        f"; {finished} run(s) finished, {len(left)} left interrupted at their last checkpoints: "
        "run the same command again to continue them"
    )
    assert all(i["error"].startswith("the Ray node running this study died") for i in left.values())
    resumed = [rid for rid, i in left.items() if (runs / rid / "checkpoint.pt").is_file()]
    assert resumed  # the driver held the checkpoint of every epoch shipped

    again = cli("train", spec, "--runs-dir", runs)  # the same study, in this process
    assert again.exit_code == 0, again.stderr
    for rid in resumed:
        said = rf"{rid}: training {EPOCHS} epochs x \d+ steps \(resuming after epoch {left[rid]['epochs_done']}\b"
        assert re.search(said, again.stderr), again.stderr
    assert {i["status"] for i in statuses(runs).values()} == {"done"} and len(statuses(runs)) == 2
    assert not [p for p in runs.iterdir() if p.name.startswith(".")]


def test_what_masklab_says_of_each_ray_error_that_reaches_the_driver():
    from ray.core.generated.common_pb2 import ActorDiedErrorContext

    from masklab.study.executors.ray_tasks import node_lost

    detail = (
        "The actor is dead because its owner has died. Owner Id: 01000000ffff Owner Ip address: 192.0.2.2 "
        "Owner worker exit type: SYSTEM_ERROR Worker exit detail: Owner's node has crashed."
    )
    died = ray.exceptions.ActorDiedError(
        ActorDiedErrorContext(error_message=detail, class_name="_Sink", actor_id=bytes(16))
    )
    assert node_lost(ray, died) == (
        "the Ray node running this study died or stopped answering Ray's health checks "
        "(ActorDiedError: Owner's node has crashed)"
    )
    oom = ray.exceptions.OutOfMemoryError("2 worker(s) were killed due to the node running low on memory.\nTop 10 ...")
    assert node_lost(ray, oom) == "Ray's memory monitor stopped this study's workers: the Ray node ran low on memory"
    gone = ray.exceptions.NodeDiedError("Task failed because the node it was running on is dead.\nNode IP: 192.0.2.2")
    assert node_lost(ray, gone).endswith("(NodeDiedError: Task failed because the node it was running on is dead)")
