"""What a `masklab train` costs beyond its training loop: wall time minus the runs'
`train_seconds`, for one quickstart and per run of a 10-run study (quickstart over
seeds 0-9), for this checkout and for an earlier commit (a temporary `git worktree`),
in one invocation. Last line: `ratio: X` (the before/after overhead of one quickstart).

    python bench/overhead.py [--before 6140bfb] [--repeat 3] [--runs 10]

Each invocation is a fresh process (`python -m masklab train ... --format json -q`)
in a fresh runs folder; the median of --repeat is reported. A warm-up invocation on
each side runs first, so both read the dataset and Python files from the page cache
and the dataset cache is filled: what a user's second and later runs pay. Overhead is
everything that is not the training loop: interpreter and imports, data loading and
fingerprinting, splits, model set-up, validation after each epoch, checkpoints, the
test evaluation and robustness grid, and the writes. Both sides run with
OMP_WAIT_POLICY=PASSIVE (the earlier commit's threads would otherwise spin on a busy
machine and slow its evaluation too): the comparison is of fixed costs alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC = "experiments/quickstart.yaml"


def invoke(source: Path, runs: Path, seeds: str) -> tuple[float, float, int]:
    """(wall seconds, summed train seconds, runs) of one `masklab train` from `source`."""
    # both sides sleep idle threads: this compares fixed costs, not wait policies (contention.py does that)
    env = dict(os.environ, PYTHONPATH=str(source), MASKLAB_RUNS=str(runs), OMP_WAIT_POLICY="PASSIVE")
    cmd = [sys.executable, "-m", "masklab", "train", str(source / SPEC), "--seeds", seeds, "-q", "--format", "json"]
    began = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=source)
    wall = time.perf_counter() - began
    if out.returncode != 0:
        raise SystemExit(f"{source}: masklab train failed ({out.returncode}): {out.stderr.strip()[-400:]}")
    rows = json.loads(out.stdout)["rows"]
    return wall, sum(r["train_seconds"] for r in rows), len(rows)


def measure(source: Path, seeds: str, repeat: int, tmp: Path, label: str) -> tuple[float, float]:
    """Median (overhead, wall) over repeats, each in a fresh runs folder."""
    over, walls = [], []
    for i in range(repeat):
        wall, trained, runs = invoke(source, tmp / f"{label}-{i}", seeds)
        over.append(wall - trained)
        walls.append(wall)
        print(
            f"  {label:24s} wall {wall:6.2f} s  training {trained:6.2f} s  overhead {wall - trained:5.2f} s", flush=True
        )
    return statistics.median(over), statistics.median(walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="6140bfb", help="the commit to compare with (default: before issue 15)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10, help="runs in the study (seeds 0..runs-1)")
    args = parser.parse_args()
    seeds = ",".join(str(s) for s in range(args.runs))
    print(f"load average {os.getloadavg()[0]:.2f}; {len(os.sched_getaffinity(0))} usable cores; spec {SPEC}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        before = tmp / "before"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(before), args.before], check=True
        )
        try:
            for side, source in (("before", before), ("after", ROOT)):
                invoke(source, tmp / f"warm-{side}", "0")  # page cache and dataset cache
                one, _ = measure(source, "0", args.repeat, tmp, f"{side} quickstart")
                study, _ = measure(source, seeds, max(1, args.repeat - 1), tmp, f"{side} {args.runs}-run study")
                results[side] = (one, study)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False)
    print(f"{'':8s} {'one quickstart':>15s} {f'{args.runs}-run study':>15s} {'per run':>9s} {'per extra run':>14s}")
    for side, (one, study) in results.items():
        extra = (study - one) / max(1, args.runs - 1)
        print(f"{side:8s} {one:13.2f} s {study:13.2f} s {study / args.runs:7.2f} s {extra:12.2f} s")
    print(f"ratio: {results['before'][0] / results['after'][0]:.2f}")


if __name__ == "__main__":
    main()
