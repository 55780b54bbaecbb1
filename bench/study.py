"""A small grid study several ways: in process (sequential), in process with each cell's
two seeds as one batched model (`train.seed_batch=2`), `--jobs 2`, and Ray tasks.

    python bench/study.py [--epochs 3] [--jobs 2]

Each way trains the same 2 x 2 grid x 2 seeds of a small CNN on mnist-mini into its own
fresh runs folder, as one `masklab train` command; the wall time includes starting the
command, its workers and (for Ray) a local Ray instance. The runs must come out with the
same ids on every path. Prints each wall time and the ratio to the sequential one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

SPEC = {
    "name": "bench-study",
    "seeds": [0, 1],
    "data": {"dataset": "mnist-mini", "val_fraction": 0.1},
    "train_ops": [{"op": "patch", "rate": 0.25, "size": 4}],
    "model": {"arch": "cnn", "width": 16},
    "train": {"epochs": 3, "batch_size": 128},
    "grid": {"train_ops[0].rate": [0.25, 0.5], "train_ops[0].mode": ["static", "dynamic"]},
}


def run(spec: Path, runs: Path, *options: str) -> tuple[float, list[str]]:
    began = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "masklab", "train", str(spec), "-q", "-f", "json", "--runs-dir", str(runs), *options],
        capture_output=True,
        text=True,
        env={**os.environ, "MASKLAB_DEBUG": "1"},
    )
    seconds = time.perf_counter() - began
    if out.returncode:
        raise SystemExit(f"masklab train {' '.join(options)} failed:\n{out.stderr}")
    return seconds, [r["run"] for r in json.loads(out.stdout)["rows"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "study.yaml"
        spec.write_text(yaml.safe_dump(SPEC | {"train": SPEC["train"] | {"epochs": args.epochs}}, sort_keys=False))
        ways = {
            "sequential": [],
            "seed_batch 2": ["--set", "train.seed_batch=2"],
            f"--jobs {args.jobs}": ["--jobs", str(args.jobs)],
        }
        try:
            import ray  # noqa: F401

            ways["ray"] = ["--executor", "ray"]
        except ImportError:
            print("ray: not installed (pip install 'masklab[ray]'), skipped")
        times, ids = {}, {}
        for name, options in ways.items():
            times[name], ids[name] = run(spec, Path(tmp) / name.replace(" ", ""), *options)
            print(f"{name:>12}: {times[name]:6.1f} s  ({len(ids[name])} runs)")
        assert all(v == ids["sequential"] for v in ids.values()), "the paths planned different runs"
        for name in list(ways)[1:]:
            print(f"ratio sequential / {name}: {times['sequential'] / times[name]:.2f}")


if __name__ == "__main__":
    main()
