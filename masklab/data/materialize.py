"""Materialising ops over a dataset split, for `masklab mask` and `masklab noise`.

Copy k holds what training draws in epoch k with the same seed and op list: for a
dynamic op the draw of epoch k, for a `mode: static, copies: K` op its copy k mod K (the
static copies have a key space of their own unless `share_views: true`). Static masks
need no storage; this is for users who want files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import masklab
from masklab.data import npz
from masklab.data.batches import DeviceSplit
from masklab.data.registry import Dataset, pixel_stats
from masklab.ops import registry
from masklab.ops.pipeline import OpPipeline


@dataclass
class Corrupted:
    images: np.ndarray  # (K, N, C, H, W) float32
    masks: np.ndarray | None  # (K, N, H, W) bool, True = masked; None without mask ops
    labels: np.ndarray  # (N,)
    stats: np.ndarray  # (K, N, n_ops): per-sample realized fraction or noise magnitude
    originals: np.ndarray  # (N, C, H, W) float32 in [0, 1]


def corrupt_split(
    dataset: Dataset, split: str, ops: list[dict], seed: int, copies: int, batch_size: int, device: torch.device
) -> Corrupted:
    x = dataset.train_x if split == "train" else dataset.test_x
    y = dataset.train_y if split == "train" else dataset.test_y
    data = DeviceSplit(x, y, np.arange(len(y)), device)
    mean, std = pixel_stats(x)
    pipeline = OpPipeline(ops, seed, dataset.shape, fill_mean=mean, fill_std=std)
    has_mask = any(registry.OPS[o["op"]].family == "mask" for o in ops)
    images, masks, stats = [], [], []
    for k in range(copies):
        plan = pipeline.plan(k, device=device)
        parts = [_per_sample(pipeline, xb, idx, plan) for xb, _, idx in data.batches(batch_size)]
        images.append(np.concatenate([p[0] for p in parts]))
        stats.append(np.concatenate([p[2] for p in parts]))
        if has_mask:
            masks.append(np.concatenate([p[1] for p in parts]))
    originals = x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)
    return Corrupted(np.stack(images), np.stack(masks) if has_mask else None, y, np.stack(stats), originals)


def _per_sample(pipeline: OpPipeline, x: torch.Tensor, idx: torch.Tensor, plan) -> tuple:
    """Images, mask and per-sample realized stats of one batch, on the host."""
    out = pipeline(x, idx, plan)
    mask = out.mask.cpu().numpy() if out.mask is not None else None
    return out.images.cpu().numpy(), mask, out.per_sample.cpu().numpy()


def realized_rows(c: Corrupted, ops: list[dict], classes: list[str]) -> list[dict]:
    """Requested vs realized per op, overall and per class (means over copies and samples)."""
    rows = []
    for i, op in enumerate(ops):
        definition = registry.OPS[op["op"]]
        what = "masked fraction" if definition.family == "mask" else "mean |change|"
        requested = op.get("rate", op.get(definition.strength or "", op.get("area")))
        groups = [("all", np.ones(len(c.labels), dtype=bool))] + [
            (name, c.labels == k) for k, name in enumerate(classes)
        ]
        for name, keep in groups:
            if not keep.any():
                continue
            values = c.stats[:, keep, i]
            rows.append(
                {
                    "op": registry.label(op),
                    "class": name,
                    "n": int(keep.sum()),
                    "measure": what,
                    "requested": requested,
                    "realized": round(float(values.mean()), 6),
                    "min": round(float(values.min()), 6),
                    "max": round(float(values.max()), 6),
                }
            )
    return rows


def write(path: Path, c: Corrupted, ops: list[dict], seed: int, split: str, dataset: Dataset) -> dict:
    """Write the .npz (copies axis squeezed when K = 1, channel axis when C = 1)."""
    images = c.images[:, :, 0] if c.images.shape[2] == 1 else c.images
    masks = c.masks
    if len(images) == 1:
        images = images[0]
        masks = masks[0] if masks is not None else None
    arrays = {"images": images.astype(np.float32), "labels": c.labels.astype(np.int64)}
    if masks is not None:
        arrays["masks"] = masks
    manifest = {
        "ops": ops,
        "seed": seed,
        "mode": "static",
        "copies": int(c.images.shape[0]),
        "split": split,
        "masklab_version": masklab.__version__,
        "source": {"dataset": dataset.name, "fingerprint": dataset.fingerprint()},
    }
    npz.write(path, arrays, manifest)
    return manifest
