"""What placement by saliency costs: seconds per training epoch of patch masking placed
at random, by saliency refreshed per epoch (from each training step's own gradient or
attention, cached per example) and by saliency refreshed per batch (an extra clean
forward and backward pass every step), in one invocation on the same data and threads.
Last line: `ratio: X` (batch refresh / random, per epoch).

    python bench/saliency.py [--limit 20000] [--epochs 3] [--arch cnn|vit] [--repeat 1]

Each side is a `masklab train` subprocess (fresh runs dir); the figure is the median of
its epochs' `train_seconds` (the optimisation loop, without validation and evaluation).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIDES = {
    "none": "[]",
    "random": "[{op: patch, rate: 0.25, size: 4}]",
    "salient, refresh epoch": "[{op: patch, rate: 0.25, size: 4, placement: salient, refresh: epoch}]",
    "salient, refresh batch": "[{op: patch, rate: 0.25, size: 4, placement: salient, refresh: batch}]",
}
MODELS = {
    "cnn": "{arch: cnn, width: 24, depth: 2, hidden: 256, norm: group}",
    "vit": "{arch: vit, patch: 4, dim: 64, depth: 4, heads: 4}",
}


def epoch_seconds(ops: str, args, runs: Path) -> list[float]:
    cmd = [
        sys.executable, "-m", "masklab", "train", str(ROOT / "experiments/fashion-cnn.yaml"), "-q", "--format", "json",
        "--runs-dir", str(runs), "--set", f"train_ops={ops}", "--set", f"model={MODELS[args.arch]}",
        "--set", f"data.train_limit={args.limit}", "--set", f"train.epochs={args.epochs}",
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"masklab train failed: {out.stderr.strip()[-400:]}")
    (row,) = json.loads(out.stdout)["rows"]
    folder = Path(row["path"])
    return [json.loads(line)["train_seconds"] for line in (folder / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=20000, help="stratified training images")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--arch", choices=tuple(MODELS), default="cnn")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    medians: dict[str, list[float]] = {k: [] for k in SIDES}
    for _ in range(args.repeat):
        for name, ops in SIDES.items():
            with tempfile.TemporaryDirectory() as tmp:
                medians[name].append(statistics.median(epoch_seconds(ops, args, Path(tmp))))
    base = statistics.median(medians["random"])
    print(f"{args.arch}, Fashion-MNIST {args.limit} images, {args.epochs} epochs, median of epochs and repeats")
    for name, values in medians.items():
        m = statistics.median(values)
        print(f"{name:24s} {m:7.2f} s/epoch  x{m / base:.2f} of random")
    print(f"ratio: {statistics.median(medians['salient, refresh batch']) / base:.2f}")


if __name__ == "__main__":
    main()
