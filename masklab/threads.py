"""How many CPU threads a masklab process uses, and how its threads wait.

Two things make small PyTorch trainings collapse on a shared machine:

- **Spinning.** torch's OpenMP runtime keeps its worker threads busy-waiting between
  parallel regions (libgomp spins about 300,000 times; Intel's runtime 200 ms). Two
  such processes on two cores steal each other's cores to spin; the issue measured
  up to 25x slowdowns. `OMP_WAIT_POLICY=PASSIVE` makes idle workers sleep instead.
  It must be in the environment before torch is imported: the runtime reads it once,
  when its library loads.
- **More threads than cores.** `os.cpu_count()` counts the machine's cores, not the
  ones this process may run on: a CPU affinity mask (taskset, cpusets) or a cgroup
  CPU quota (containers, CI runners) can allow fewer, and a study running `--jobs N`
  workers must split the cores between them.

`configure()` does both, at the start of every command that trains or evaluates,
before the first torch import. Anything the user set wins: `--threads N`, then
`OMP_NUM_THREADS`, then the usable cores divided by the jobs; an `OMP_WAIT_POLICY`,
`GOMP_SPINCOUNT` or `KMP_BLOCKTIME` already in the environment is left alone.

Importing this module does not import torch.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

# A wait variable the user set means they chose how threads wait: masklab keeps out.
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


@dataclass(frozen=True)
class ThreadPlan:
    """What configure() decided, and why (recorded in run.json)."""

    threads: int
    cores: int  # usable cores: affinity, cgroup quota
    jobs: int
    source: str  # "--threads", "OMP_NUM_THREADS" or "cores"
    wait_policy: str  # the wait setting in effect, e.g. "OMP_WAIT_POLICY=PASSIVE"

    def as_dict(self) -> dict:
        return {
            "threads": self.threads,
            "cores": self.cores,
            "jobs": self.jobs,
            "source": self.source,
            "wait": self.wait_policy,
        }


def affinity_cores() -> int:
    """CPUs this process may be scheduled on (taskset, cpusets); os.cpu_count() where
    the platform has no affinity call."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _mounts(mountinfo: str) -> list[tuple[str, str, set[str]]]:
    """(mount point, fstype, super options) of the cgroup file systems in /proc/self/mountinfo."""
    found = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        mount_point = fields[4].replace("\\040", " ")
        found.append((mount_point, tail[0], set(tail[2].split(","))))
    return found


def _quota_v2(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def _quota_v1(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def cgroup_cpu_limit(proc_cgroup: str, mountinfo: str) -> float | None:
    """The tightest CPU quota (in cores) on this process's cgroup and its ancestors,
    cgroup v2 (`cpu.max`) or v1 (`cpu.cfs_quota_us / cpu.cfs_period_us`); None if none."""
    limits = []
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        version = "cgroup2" if controllers == "" else "cgroup"
        if version == "cgroup" and "cpu" not in controllers.split(","):
            continue
        for mount_point, fstype, options in _mounts(mountinfo):
            if fstype != version or (version == "cgroup" and "cpu" not in options):
                continue
            read = _quota_v2 if version == "cgroup2" else _quota_v1
            folder = Path(mount_point) / path.lstrip("/")
            while True:  # a quota anywhere up the tree applies
                limit = read(folder)
                if limit is not None:
                    limits.append(limit)
                if folder == Path(mount_point) or folder == folder.parent:
                    break
                folder = folder.parent
    return min(limits) if limits else None


def usable_cores() -> int:
    """Cores this process may really use: its affinity mask, capped by a cgroup quota."""
    cores = affinity_cores()
    try:
        limit = cgroup_cpu_limit(Path("/proc/self/cgroup").read_text(), Path("/proc/self/mountinfo").read_text())
    except OSError:
        limit = None
    if limit is not None:
        cores = min(cores, max(1, math.ceil(limit - 1e-9)))
    return max(1, cores)


def choose_threads(requested: int | None, jobs: int = 1, environ: dict | None = None) -> tuple[int, int, str]:
    """(threads, usable cores, where the number came from): --threads, else
    OMP_NUM_THREADS, else the usable cores shared among `jobs` processes."""
    environ = os.environ if environ is None else environ
    cores = usable_cores()
    if requested is not None:
        return max(1, int(requested)), cores, "--threads"
    text = environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if text.isdigit() and int(text) > 0:
        return int(text), cores, "OMP_NUM_THREADS"
    return max(1, cores // max(1, jobs)), cores, "cores"


def set_wait_policy(environ: dict | None = None) -> str:
    """Make idle OpenMP threads sleep (PASSIVE) unless the user chose a wait setting.
    Returns the setting in effect. Only works before torch is imported."""
    environ = os.environ if environ is None else environ
    chosen = [f"{k}={environ[k]}" for k in WAIT_VARIABLES if environ.get(k)]
    if chosen:
        return ", ".join(chosen)
    environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return "OMP_WAIT_POLICY=PASSIVE"


def configure(threads: int | None = None, jobs: int = 1) -> ThreadPlan:
    """Set the wait policy, import torch and set its intra-op threads (OpenMP and MKL).

    Call it before anything imports torch; if torch is already imported (a test, a
    notebook) the thread count still applies, the wait policy only if it was set before."""
    if "torch" not in sys.modules:
        wait = set_wait_policy()
    else:
        wait = ", ".join(f"{k}={os.environ[k]}" for k in WAIT_VARIABLES if os.environ.get(k)) or "default"
    count, cores, source = choose_threads(threads, jobs)
    import torch

    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return ThreadPlan(count, cores, max(1, jobs), source, wait)
