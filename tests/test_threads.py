"""Thread choice and wait policy (masklab/threads.py): usable cores from affinity and
cgroup quotas, the user's settings first, and the policy set before torch loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from masklab import threads

from conftest import cli, run_dirs, tiny_spec


def mountinfo(*mounts: tuple[Path, str, str]) -> str:
    """/proc/self/mountinfo lines for (mount point, fstype, super options)."""
    return "".join(
        f"{30 + i} 25 0:{40 + i} / {point} rw,nosuid - {fstype} {fstype} {options}\n"
        for i, (point, fstype, options) in enumerate(mounts)
    )


def test_cgroup_v2_quota_is_the_tightest_up_the_tree(tmp_path):
    root = tmp_path / "unified"
    leaf = root / "user.slice" / "job"
    leaf.mkdir(parents=True)
    (root / "user.slice" / "cpu.max").write_text("150000 100000\n")  # 1.5 cores on the parent
    (leaf / "cpu.max").write_text("max 100000\n")  # no limit on the leaf itself
    info = mountinfo((root, "cgroup2", "rw,nsdelegate"))
    assert threads.cgroup_cpu_limit("0::/user.slice/job\n", info) == 1.5
    (leaf / "cpu.max").write_text("50000 100000\n")
    assert threads.cgroup_cpu_limit("0::/user.slice/job\n", info) == 0.5
    (leaf / "cpu.max").write_text("max 100000\n")
    (root / "user.slice" / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_limit("0::/user.slice/job\n", info) is None


def test_cgroup_v1_quota_and_unlimited(tmp_path):
    cpu = tmp_path / "cpu,cpuacct"
    group = cpu / "docker" / "abc"
    group.mkdir(parents=True)
    (group / "cpu.cfs_quota_us").write_text("300000\n")
    (group / "cpu.cfs_period_us").write_text("100000\n")
    info = mountinfo((tmp_path / "memory", "cgroup", "rw,memory"), (cpu, "cgroup", "rw,cpu,cpuacct"))
    proc = "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n"
    assert threads.cgroup_cpu_limit(proc, info) == 3.0
    (group / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_cpu_limit(proc, info) is None
    assert threads.cgroup_cpu_limit("garbage\n", "not a mountinfo line\n") is None


def test_usable_cores_caps_affinity_by_the_quota(monkeypatch):
    monkeypatch.setattr(threads, "affinity_cores", lambda: 8)
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda proc, info: 2.5)
    assert threads.usable_cores() == 3  # a partial core still runs a thread part of the time
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda proc, info: 0.2)
    assert threads.usable_cores() == 1
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda proc, info: None)
    assert threads.usable_cores() == 8


def test_threads_come_from_the_user_first_then_the_cores_shared_by_jobs(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    assert threads.choose_threads(None, 1, {}) == (8, 8, "cores")
    assert threads.choose_threads(None, 3, {}) == (2, 8, "cores")
    assert threads.choose_threads(None, 16, {}) == (1, 8, "cores")
    assert threads.choose_threads(None, 3, {"OMP_NUM_THREADS": "5"}) == (5, 8, "OMP_NUM_THREADS")
    assert threads.choose_threads(None, 1, {"OMP_NUM_THREADS": "zero"}) == (8, 8, "cores")
    assert threads.choose_threads(3, 4, {"OMP_NUM_THREADS": "5"}) == (3, 8, "--threads")


def test_threads_spin_alone_and_sleep_when_they_share_the_cores():
    spin, passive = {"GOMP_SPINCOUNT": threads.SPIN_COUNT}, {"OMP_WAIT_POLICY": "PASSIVE"}
    assert threads.choose_wait({}, 2, 2, 1, 0.1).variables == spin
    assert threads.choose_wait({}, 2, 2, 1, 0.5).variables == passive  # a neighbour on half a core
    assert threads.choose_wait({}, 4, 8, 1, 4.4).variables == spin  # 4 cores left free absorb it
    assert threads.choose_wait({}, 4, 8, 1, 4.5).variables == passive
    assert threads.choose_wait({}, 2, 2, 2, 0.0).variables == passive  # --jobs 2
    assert threads.choose_wait({}, 1, 2, 1, 0.0).variables == passive  # one thread: no pool to spin in
    assert threads.choose_wait({}, 2, 2, 1, None).variables == passive  # no /proc/stat
    for user in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "1000"}, {"KMP_BLOCKTIME": "0"}):
        choice = threads.choose_wait(user, 2, 2, 2, 9.0)
        assert (
            choice.variables == user and str(choice) == f"{next(iter(user))}={next(iter(user.values()))} (set by you)"
        )
    assert (
        str(threads.choose_wait({}, 2, 2, 1, 1.0))
        == "OMP_WAIT_POLICY=PASSIVE (shared: other processes kept 1.0 cores busy)"
    )


def test_other_processes_cpu_is_the_machines_less_our_own(tmp_path):
    stat = tmp_path / "stat"
    ticks = __import__("os").sysconf("SC_CLK_TCK")
    stat.write_text(f"cpu  {10 * ticks} 0 {2 * ticks} 500 3 0 0 0 0 0\ncpu0 1 2 3\n")
    first = threads.cpu_sample(stat)
    assert first is not None and first.busy == pytest.approx(12.0)
    later = threads.CpuSample(first.at + 0.5, first.busy + 1.0, first.ours + 0.4)  # 1 s busy in 0.5 s, 0.4 s ours
    assert threads.others_busy(first, later) == pytest.approx(1.2)
    assert threads.others_busy(first, threads.CpuSample(first.at + 1, first.busy, first.ours + 1)) == 0.0
    assert threads.others_busy(None, later) is None and threads.cpu_sample(tmp_path / "missing") is None
    stat.write_text("cpu  not numbers\n")
    assert threads.cpu_sample(stat) is None


def test_a_busy_neighbour_makes_the_threads_sleep_and_run_json_says_why(tmp_path, write_spec):
    """A busy process on every usable core beside `masklab train --threads 2`: the
    environment torch's OpenMP runtime sees is PASSIVE, whatever the machine's size."""
    spec = write_spec(tiny_spec(train={"epochs": 1}))
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(threads.usable_cores())]
    try:
        out = subprocess.run(
            [sys.executable, "-c", PROBE.format(spec=str(spec), args='"--threads", "2"', patch="")],
            capture_output=True,
            text=True,
            env=without_wait_variables(),
            cwd=tmp_path,
        )
    finally:
        for b in burners:
            b.kill()
            b.wait()
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip().splitlines()[-1] == "PASSIVE None 2"
    (run,) = run_dirs(tmp_path)
    assert json.loads((run / "run.json").read_text())["thread_wait"].startswith("OMP_WAIT_POLICY=PASSIVE (shared: ")


@pytest.mark.skipif(threads.usable_cores() < 2, reason="two threads need two usable cores to spin")
def test_alone_the_threads_spin_and_jobs_workers_sleep(tmp_path, write_spec):
    """The machine read as idle (the sample patched): spinning in the process, PASSIVE in
    --jobs workers, which inherit masklab's own setting and do not take it for the user's."""
    spec = write_spec(tiny_spec(train={"epochs": 1}))
    patch = "from masklab import threads; threads.others_busy = lambda since, until: 0.0"
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(spec=str(spec), args='"--threads", "2"', patch=patch)],
        capture_output=True,
        text=True,
        env=without_wait_variables(),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip().splitlines()[-1] == f"None {threads.SPIN_COUNT} 2"
    (run,) = run_dirs(tmp_path)
    info = json.loads((run / "run.json").read_text())
    assert info["thread_wait"] == f"GOMP_SPINCOUNT={threads.SPIN_COUNT} (alone: other processes kept 0.0 cores busy)"
    jobs = subprocess.run(
        [sys.executable, "-m", "masklab", "train", str(spec), "--seeds", "5-6", "--jobs", "2", "-q"],
        capture_output=True,
        text=True,
        env=without_wait_variables(),
        cwd=tmp_path,
    )
    assert jobs.returncode == 0, jobs.stderr
    waits = {
        json.loads((r / "run.json").read_text())["thread_wait"]
        for r in run_dirs(tmp_path)
        if r.name.endswith(("-s5", "-s6"))
    }
    assert waits == {"OMP_WAIT_POLICY=PASSIVE (--jobs 2: the workers share the cores)"}


PROBE = """
import os, sys, importlib.abc
seen = {{}}
class Probe(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" and not seen:
            seen["policy"] = (os.environ.get("OMP_WAIT_POLICY"), os.environ.get("GOMP_SPINCOUNT"))
        return None
sys.meta_path.insert(0, Probe())
{patch}
from masklab.cli import app
try:
    app(["train", {spec!r}, {args}, "-q", "--format", "json"])
except SystemExit as exc:
    assert exc.code == 0, exc.code
import torch
print(*seen["policy"], torch.get_num_threads(), file=sys.stderr)
"""


def without_wait_variables() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k not in (*threads.WAIT_VARIABLES, threads.CHOSEN_BY_MASKLAB)}


def test_cli_sets_the_policy_before_torch_loads(tmp_path, write_spec):
    """In a fresh interpreter: the environment torch's OpenMP runtime sees when it loads."""
    spec = write_spec(tiny_spec(train={"epochs": 1}))
    probe = PROBE.format(spec=str(spec), args='"--threads", "1"', patch="")
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=without_wait_variables(), cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip().splitlines()[-1] == "PASSIVE None 1"
    (run,) = run_dirs(tmp_path)
    info = json.loads((run / "run.json").read_text())
    assert info["threads"] == 1 and info["thread_wait"] == "OMP_WAIT_POLICY=PASSIVE (one thread)"


@pytest.fixture
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_option_is_recorded_and_validated(workdir, write_spec, keep_threads):
    spec = write_spec(tiny_spec(train={"epochs": 1}))
    result = cli("train", spec, "--threads", "1", "-q")
    assert result.exit_code == 0, result.stderr
    (run,) = run_dirs(workdir)
    assert json.loads((run / "run.json").read_text())["threads"] == 1
    bad = cli("train", spec, "--threads", "0")
    assert bad.exit_code == 2 and "--threads" in bad.stderr


def test_eval_takes_threads_too(workdir, write_spec, keep_threads):
    assert cli("train", write_spec(tiny_spec(train={"epochs": 1})), "-q").exit_code == 0
    result = cli("eval", "tiny", "--threads", "1", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert torch.get_num_threads() == 1
    assert json.loads(result.stdout)["evals"][0]["clean"]["acc"] >= 0
