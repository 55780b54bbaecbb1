"""Training time of one masklab run alone, next to a CPU-bound neighbour process, and
two masklab runs side by side (started together, or the second once the first has
trained an epoch: its threads' wait is chosen by then), in one invocation; with masklab's own choice of wait policy (spin when alone,
sleep when shared), with PASSIVE always (masklab before issue 24) and with the spinning
OpenMP wait that torch uses by default. Last line: `ratio: X` (the worst slowdown against
alone, masklab's settings); the line before it compares masklab alone with spinning alone.

    python bench/contention.py [--spec experiments/quickstart.yaml] [--epochs 3] [--repeat 3] [--mode LABEL:VAR=VALUE]

Each training is `masklab train SPEC --force` in its own process and runs folder; the
clock is the run's `train_seconds` (its training loop). The neighbour is a Python busy
loop (one core). "spinning" sets GOMP_SPINCOUNT=300000, libgomp's default when no wait
policy is set, which masklab respects as a user's choice. The load line says how busy
the machine was apart from this benchmark: on a shared machine read the ratios with it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODES = {"masklab": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "spinning": {"GOMP_SPINCOUNT": "300000"}}
PHASES = ("alone", "neighbour", "pair", "late-neighbour", "late-pair")
LATE_S = 0.5  # the late phases start the neighbour or second run this long after the first run's first epoch
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME", "MASKLAB_WAIT_CHOSEN")


def cpu_busy_seconds() -> float:
    """Seconds of CPU time all processes on the machine have used (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class LoadMeter:
    """Cores kept busy by other processes (not this benchmark's) while a phase ran."""

    def __enter__(self) -> LoadMeter:
        self.began, self.busy, self.ours = time.perf_counter(), cpu_busy_seconds(), children_cpu()
        return self

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self.began
        others = (cpu_busy_seconds() - self.busy) - (children_cpu() - self.ours)
        self.other_cores = max(0.0, others / max(wall, 1e-9))


def start_training(spec: Path, epochs: int, env: dict, runs: Path, seed: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "masklab", "train", str(spec), "--set", f"train.epochs={epochs}"]
    cmd += ["--seeds", str(seed), "--force", "--quiet", "--format", "json", "--runs-dir", str(runs)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def train_seconds(proc: subprocess.Popen) -> float:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"masklab train failed ({proc.returncode}): {err.strip()[-500:]}")
    return float(json.loads(out)["rows"][0]["train_seconds"])


def wait_for_first_epoch(runs: Path, proc: subprocess.Popen) -> None:
    """Until the run has written its first epoch (it is training, its threads' wait chosen), then LATE_S."""
    while proc.poll() is None and not any(p.stat().st_size for p in runs.glob("*/metrics.jsonl")):
        time.sleep(0.05)
    time.sleep(LATE_S)


def phase(kind: str, spec: Path, epochs: int, env: dict, tmp: Path) -> tuple[float, float]:
    """(train seconds, other processes' cores) of one phase: alone, a neighbour or a second
    run started before the run (neighbour, pair: both start together), or after its first
    epoch (late-neighbour, late-pair: the first run has already chosen how its threads wait)."""
    neighbour = None
    late = kind.startswith("late-")
    with LoadMeter() as load:
        if kind == "neighbour":
            neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(0.5)  # let it get going
        procs = [start_training(spec, epochs, env, tmp / f"{kind}-0", 0)]
        if late:
            wait_for_first_epoch(tmp / f"{kind}-0", procs[0])
        if kind in ("pair", "late-pair"):
            procs.append(start_training(spec, epochs, env, tmp / f"{kind}-1", 1))
        if kind == "late-neighbour":
            neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        seconds = max(train_seconds(p) for p in procs)
        if neighbour is not None:  # waited for inside the meter, so its CPU time counts as ours
            neighbour.kill()
            neighbour.wait()
    return seconds, load.other_cores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "experiments" / "quickstart.yaml")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3, help="repeats of each phase (the median is reported)")
    parser.add_argument(
        "--mode",
        action="append",
        default=[],
        metavar="LABEL:VAR=VALUE",
        help="another wait setting to measure, e.g. spin10k:GOMP_SPINCOUNT=10000 (repeatable)",
    )
    args = parser.parse_args()
    for text in args.mode:
        label, _, assignment = text.partition(":")
        name, _, value = assignment.partition("=")
        MODES[label] = {name: value}
    print(f"{os.cpu_count()} cores, {len(os.sched_getaffinity(0))} usable; load average {os.getloadavg()[0]:.2f}")
    print(f"spec {args.spec.name}, {args.epochs} epochs; median of {args.repeat} per cell (train seconds)")
    results: dict[tuple[str, str], float] = {}
    other: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeat):
            for mode, extra in MODES.items():
                env = {k: v for k, v in os.environ.items() if k not in WAIT_VARIABLES}
                env.update(extra)
                for kind in PHASES:
                    seconds, cores = phase(kind, args.spec, args.epochs, env, Path(tmp) / f"{rep}-{mode}")
                    results.setdefault((mode, kind), []).append(seconds)
                    other.append(cores)
                    print(f"  {mode:9s} {kind:9s} {seconds:6.2f} s  (others kept {cores:.2f} cores busy)", flush=True)
    median = {key: statistics.median(v) for key, v in results.items()}
    print(f"machine: other processes kept {statistics.mean(other):.2f} cores busy on average (max {max(other):.2f})")
    print(f"{'':9s} " + " ".join(f"{k:>14s}" for k in PHASES) + "   (train seconds; x: against masklab alone)")
    a = median[("masklab", "alone")]
    for mode in MODES:
        cells = [f"{median[(mode, k)]:6.2f} {median[(mode, k)] / a:5.2f}x" for k in PHASES]
        print(f"{mode:9s} " + " ".join(f"{c:>14s}" for c in cells))
    print(f"masklab alone / spinning alone: {a / median[('spinning', 'alone')]:.2f}")
    worst = max(median[("masklab", k)] for k in PHASES if k != "alone") / a
    print(f"ratio: {worst:.2f}")


if __name__ == "__main__":
    main()
