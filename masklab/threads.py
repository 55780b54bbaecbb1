"""How many CPU threads a masklab process uses, and how its threads wait.

Two things make small PyTorch trainings collapse on a shared machine:

- **Spinning.** torch's OpenMP runtime keeps its worker threads busy-waiting between
  parallel regions (libgomp spins about 300,000 times; Intel's runtime 200 ms). Two
  such processes on two cores steal each other's cores to spin; the issue measured
  up to 25x slowdowns. `OMP_WAIT_POLICY=PASSIVE` makes idle workers sleep instead,
  but a process alone on its cores pays for it: every parallel region wakes its
  workers again. So masklab decides when it starts to train (`choose_wait`): spin
  when the machine's other processes leave this run's cores free (measured from
  /proc/stat between the command's start and its first torch import), sleep with
  --jobs, one thread, or a busy machine. The choice must be in the environment before
  torch is imported: the runtime reads it once, when its library loads.
- **More threads than cores.** `os.cpu_count()` counts the machine's cores, not the
  ones this process may run on: a CPU affinity mask (taskset, cpusets) or a cgroup
  CPU quota (containers, CI runners) can allow fewer, and a study running `--jobs N`
  workers must split the cores between them.

`begin()` (every command) and `configure()` (every command that trains or evaluates,
before the first torch import) do both; run.json records the wait chosen and why.
Anything the user set wins: `--threads N`, then `OMP_NUM_THREADS`, then the usable cores
divided by the jobs; an `OMP_WAIT_POLICY`, `GOMP_SPINCOUNT` or `KMP_BLOCKTIME` already in
the environment is left alone.

Importing this module does not import torch.
"""

from __future__ import annotations

import math
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# A wait variable the user set means they chose how threads wait: masklab keeps out.
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
# A brief spin when this process has the cores to itself: 1,000 spins were as fast alone
# as libgomp's default 300,000 (a 16-epoch quickstart 3.45 s, against 4.28 s spinning and
# 4.26 s PASSIVE on a quiet 2-core EPYC) and bound the loss when a neighbour arrives after
# the choice (8.7 s vs 27.9 s with the default spin, loaded): bench/README.md, "Speed III".
SPIN_COUNT = "1000"
PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE"}
SHARED_CORES = 0.5  # other processes busier than this beyond the cores we leave free: sleep
WINDOW_S = 0.1  # the shortest look at the machine's CPU counters (10 ms ticks) before deciding
CHOSEN_BY_MASKLAB = (
    "MASKLAB_WAIT_CHOSEN"  # the wait variables masklab set, so that its children tell them from the user's
)
PLAN: dict = {}  # what configure() decided in this process ("wait"), recorded in run.json


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


@dataclass(frozen=True)
class CpuSample:
    """The machine's busy CPU seconds (all processes, /proc/stat) and this process's own, at a moment."""

    at: float  # time.monotonic()
    busy: float
    ours: float


def cpu_sample(stat: Path = Path("/proc/stat")) -> CpuSample | None:
    """None where the platform has no /proc/stat."""
    try:
        fields = [int(v) for v in stat.read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    ticks = os.sysconf("SC_CLK_TCK")
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    ours = me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime
    return CpuSample(time.monotonic(), (user + nice + system + irq + softirq + steal) / ticks, ours)


def others_busy(since: CpuSample | None, until: CpuSample | None) -> float | None:
    """Cores other processes kept busy between two samples (steal counts: a VM's neighbours)."""
    if since is None or until is None or until.at - since.at <= 0:
        return None
    return max(0.0, ((until.busy - since.busy) - (until.ours - since.ours)) / (until.at - since.at))


@dataclass(frozen=True)
class WaitChoice:
    """How idle OpenMP threads wait, and why: the environment variables to set."""

    variables: dict
    why: str

    def __str__(self) -> str:
        setting = ", ".join(f"{k}={v}" for k, v in self.variables.items()) or "default"
        return f"{setting} ({self.why})"


def choose_wait(user: dict, threads: int, cores: int, jobs: int, others: float | None) -> WaitChoice:
    """Spin briefly when this process has the cores to itself, sleep when it shares them.

    A brief spinning wait saves the wake-up between a training step's parallel regions,
    which alone is worth 1.24x on a small model (bench/contention.py); on a shared
    core long spins take the time the other process needs, and both collapse. So:
    the user's setting first; sleep with --jobs (the workers share the cores), one thread
    (no pool to wait in) or when other processes used more of the machine than this run
    leaves free; spin otherwise."""
    if user:
        return WaitChoice(dict(user), "set by you")
    if jobs > 1:
        return WaitChoice(PASSIVE, f"--jobs {jobs}: the workers share the cores")
    if threads <= 1:
        return WaitChoice(PASSIVE, "one thread")
    if others is None:
        return WaitChoice(PASSIVE, "the machine's load cannot be read here")
    if others >= cores - threads + SHARED_CORES:
        return WaitChoice(PASSIVE, f"shared: other processes kept {others:.1f} cores busy")
    return WaitChoice({"GOMP_SPINCOUNT": SPIN_COUNT}, f"alone: other processes kept {others:.1f} cores busy")


_started: dict = {}  # what begin() saw: the user's wait variables and the first CPU sample


def begin(environ: dict | None = None) -> None:
    """At the start of every command: note the user's wait variables and the machine's
    CPU counters, and let idle threads sleep until configure() decides (a command that
    never trains keeps PASSIVE). Only works before torch is imported."""
    environ = os.environ if environ is None else environ
    found = {k: environ[k] for k in WAIT_VARIABLES if environ.get(k)}
    ours = environ.get(CHOSEN_BY_MASKLAB) == _as_text(found)  # inherited from a masklab parent (--jobs workers)
    _started["user"] = {} if ours else found
    _started["sample"] = cpu_sample()
    if not _started["user"]:
        _set_ours(environ, PASSIVE)


def settle_wait(threads: int, cores: int, jobs: int, environ: dict | None = None) -> WaitChoice:
    """Decide the wait policy from the CPU the machine's other processes used since
    begin() (at least WINDOW_S of it) and set it in the environment."""
    environ = os.environ if environ is None else environ
    if "user" not in _started:
        begin(environ)
    since = _started["sample"]
    if since is not None and time.monotonic() - since.at < WINDOW_S:
        time.sleep(WINDOW_S - (time.monotonic() - since.at))
    choice = choose_wait(_started["user"], threads, cores, jobs, others_busy(since, cpu_sample()))
    if not _started["user"]:
        _set_ours(environ, choice.variables)
    return choice


def _set_ours(environ: dict, variables: dict) -> None:
    """Replace the wait variables with masklab's choice, marked as masklab's."""
    for k in WAIT_VARIABLES:
        environ.pop(k, None)
    environ.update(variables)
    environ[CHOSEN_BY_MASKLAB] = _as_text(variables)


def _as_text(variables: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(variables.items()))


def configure(threads: int | None = None, jobs: int = 1) -> ThreadPlan:
    """Set the wait policy, import torch and set its intra-op threads (OpenMP and MKL).

    Call it before anything imports torch; if torch is already imported (a test, a
    notebook) the thread count still applies, the wait policy only if it was set before."""
    count, cores, source = choose_threads(threads, jobs)
    if "torch" not in sys.modules:
        wait = str(settle_wait(count, cores, max(1, jobs)))
    else:
        wait = ", ".join(f"{k}={os.environ[k]}" for k in WAIT_VARIABLES if os.environ.get(k)) or "default"
    import torch

    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    PLAN["wait"] = wait
    return ThreadPlan(count, cores, max(1, jobs), source, wait)
