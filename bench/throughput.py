"""Samples per second to produce masked + noised training batches: masklab vs the
per-sample recipe, in one run, same data and machine. Last line: `ratio: X`.

    python bench/throughput.py [--quick] [--device cpu|cuda] [--batch-size 256]

masklab: the device-resident split, one randperm per epoch, one gather + conversion
per batch, then `patch(rate=0.25, size=4)` and `gaussian(sigma=0.1)` as keyed tensor ops
(the path `masklab train` takes). Peer: `bench/peer.py`'s per-sample Dataset drawing
the same ops in __getitem__, DataLoader batch 64, with 0 and 2 workers (the faster
counts). Each side is the median of 3 repeats. Fashion-MNIST's training images when
installed, else mnist-mini.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from masklab import threads

PLAN = threads.configure()  # before torch is imported, as every masklab command does (both sides run under it)

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from masklab.data import registry  # noqa: E402
from masklab.data.batches import DeviceSplit, epoch_shuffle_seed  # noqa: E402
from masklab.ops import registry as ops  # noqa: E402
from masklab.ops.pipeline import OpPipeline  # noqa: E402

from peer import per_sample_loader  # noqa: E402


def load_images():
    try:
        ds = registry.load("fashion-mnist")
    except Exception:
        ds = registry.load("mnist-mini")
    return ds.name, ds.train_x, ds.train_y


def masklab_rate(images, labels, batch_size: int, samples: int, device: torch.device, compile: bool = False) -> float:
    split = DeviceSplit(images, labels, np.arange(len(labels)), device)
    pipeline = OpPipeline(
        [
            ops.validate({"op": "patch", "rate": 0.25, "size": 4}, "bench"),
            ops.validate({"op": "gaussian", "sigma": 0.1}, "bench"),
        ],
        seed=0,
        image_shape=tuple(images.shape[1:]),
        compile=compile,
        stat_samples=32,  # as in training
    )

    def epoch(e: int, limit: int) -> int:
        plan = pipeline.epoch_keys(e, device=device)
        seen = 0
        for x, _, idx in split.batches(batch_size, epoch_shuffle_seed(0, e), drop_last=True):
            pipeline(x, idx, plan)
            seen += len(idx)
            if seen >= limit:
                break
        if device.type == "cuda":
            torch.cuda.synchronize()
        return seen

    epoch(0, 10 * batch_size)  # warm-up (and compilation, if any)
    began, seen, e = time.perf_counter(), 0, 1
    while seen < samples:
        seen += epoch(e, samples - seen)
        e += 1
    return seen / (time.perf_counter() - began)


def peer_rate(images, labels, samples: int, workers: int) -> float:
    loader = per_sample_loader(images, labels, workers=workers)
    began, seen = time.perf_counter(), 0
    while seen < samples:
        for x, _ in loader:
            seen += len(x)
            if seen >= samples:
                break
    return seen / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples; under a minute on a 2-core CPU")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--compile", action="store_true", help="also time masklab with torch.compile (CUDA)")
    args = parser.parse_args()
    device = torch.device(args.device)
    name, images, labels = load_images()
    peer_samples = 4_000 if args.quick else 30_000
    ours_samples = 40_000 if args.quick else 300_000
    print(
        f"data: {name} train {images.shape}; device {device}; torch {torch.__version__}; threads {torch.get_num_threads()}, wait {PLAN.wait_policy}; cores {os.cpu_count()}"
    )
    # the median of 3 repeats per side: this machine's speed drifts between runs
    peers = {w: statistics.median(peer_rate(images, labels, peer_samples, w) for _ in range(3)) for w in (0, 2)}
    for w, r in peers.items():
        print(f"peer per-sample Dataset, DataLoader batch 64, {w} workers: {r:12,.0f} samples/s")
    ours = statistics.median(masklab_rate(images, labels, args.batch_size, ours_samples, device) for _ in range(3))
    print(f"masklab keyed ops, batch {args.batch_size}, eager:              {ours:12,.0f} samples/s")
    if args.compile:
        compiled = masklab_rate(images, labels, args.batch_size, ours_samples, device, compile=True)
        print(f"masklab keyed ops, batch {args.batch_size}, torch.compile:      {compiled:12,.0f} samples/s")
        ours = max(ours, compiled)
    print(f"ratio: {ours / max(peers.values()):.1f}")


if __name__ == "__main__":
    main()
