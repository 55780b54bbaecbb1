"""Thread choice and wait policy (masklab/threads.py): usable cores from affinity and
cgroup quotas, the user's settings first, and the policy set before torch loads."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
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


def test_the_wait_policy_is_passive_unless_the_user_chose_one():
    env: dict = {}
    assert threads.set_wait_policy(env) == "OMP_WAIT_POLICY=PASSIVE" and env == {"OMP_WAIT_POLICY": "PASSIVE"}
    for name, value in (("OMP_WAIT_POLICY", "ACTIVE"), ("GOMP_SPINCOUNT", "300000"), ("KMP_BLOCKTIME", "200")):
        env = {name: value}
        assert threads.set_wait_policy(env) == f"{name}={value}" and env == {name: value}


def test_cli_sets_the_policy_before_torch_loads(tmp_path, write_spec):
    """In a fresh interpreter: the environment torch's OpenMP runtime sees when it loads."""
    spec = write_spec(tiny_spec(train={"epochs": 1}))
    probe = textwrap.dedent(
        f"""
        import os, sys, importlib.abc
        seen = {{}}
        class Probe(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "torch" and not seen:
                    seen["policy"] = os.environ.get("OMP_WAIT_POLICY")
                return None
        sys.meta_path.insert(0, Probe())
        from masklab.cli import app
        try:
            app(["train", {str(spec)!r}, "--threads", "1", "-q", "--format", "json"])
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        import torch
        print(seen["policy"], torch.get_num_threads(), file=sys.stderr)
        """
    )
    env = {k: v for k, v in __import__("os").environ.items() if k not in threads.WAIT_VARIABLES}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip().splitlines()[-1] == "PASSIVE 1"
    (run,) = run_dirs(tmp_path)
    assert json.loads((run / "run.json").read_text())["threads"] == 1


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
