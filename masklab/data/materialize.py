"""Materialising ops over a dataset split, for `masklab mask` and `masklab noise`.

Copy k holds what training draws in epoch index k (epoch k + 1 as users count) with the
same seed and op list: for a dynamic op that epoch's draw, for a `mode: static, copies: K`
op its copy k mod K (the
static copies have a key space of their own unless `share_views: true`). Static masks
need no storage; this is for users who want files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import masklab
from masklab.data import npz
from masklab.data.batches import DeviceSplit
from masklab.data.dataset import Dataset, pixel_stats
from masklab.data.stratified import validation_split
from masklab.ops import registry
from masklab.ops.pipeline import OpPipeline


@dataclass
class Corrupted:
    images: np.ndarray  # (K, N, C, H, W) float32
    masks: np.ndarray | None  # (K, N, H, W) bool, True = masked; None without mask ops
    labels: np.ndarray  # (N,)
    stats: np.ndarray  # (K, N, n_ops): per-sample realized fraction or noise magnitude
    originals: np.ndarray  # (N, C, H, W) float32 in [0, 1]
    measures: dict[int, list[tuple[str, np.ndarray]]] = field(default_factory=dict)  # op -> [(what, (K, N))]
    changed: np.ndarray | None = None  # (K, N, n_ops) bool: the op changed the image (p < 1 skips some)


def corrupt_split(
    dataset: Dataset,
    split: str,
    ops: list[dict],
    seed: int,
    copies: int,
    batch_size: int,
    device: torch.device,
    fill: tuple[float, float] | None = None,
    epochs: int = 1,
) -> Corrupted:
    """Every image of a split through the ops at views 0..copies-1. fill: the (mean, std)
    that fill: mean/gaussian use (default: the split's own); epochs: what epoch schedules span."""
    x = dataset.train_x if split == "train" else dataset.test_x
    y = dataset.train_y if split == "train" else dataset.test_y
    data = DeviceSplit(x, y, np.arange(len(y)), device)
    mean, std = fill or pixel_stats(x)
    pipeline = OpPipeline(ops, seed, dataset.shape, fill_mean=mean, fill_std=std, epochs=epochs)
    has_mask = any(registry.OPS[o["op"]].family == "mask" for o in ops)
    drawn = [_draw_copy(pipeline, data, k, batch_size, device) for k in range(copies)]
    originals = x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)
    result = Corrupted(
        _stacked(drawn, "images"), _stacked(drawn, "mask") if has_mask else None, y, _stacked(drawn, "stats"), originals
    )
    result.changed = _stacked(drawn, "changed")
    for i, measured in drawn[0]["measures"].items():
        result.measures[i] = [
            (what, np.stack([copy["measures"][i][j][1] for copy in drawn])) for j, (what, _) in enumerate(measured)
        ]
    return result


def _draw_copy(pipeline: OpPipeline, data: DeviceSplit, view: int, batch_size: int, device) -> dict:
    """One copy of the split (what training draws in epoch `view`), on the host: images,
    the union mask, per-op realized stats, what each op changed and its measures."""
    plan = pipeline.epoch_keys(view, device=device)
    parts = [pipeline(xb, idx, plan, measure=True) for xb, _, idx in data.batches(batch_size)]
    copy = {
        "images": _joined(parts, lambda p: p.images),
        "stats": _joined(parts, lambda p: p.per_sample),
        "changed": _joined(parts, lambda p: torch.stack(p.changed, 1)),
        "measures": {
            i: [(what, _joined(parts, lambda p, i=i, j=j: p.measures[i][j][1])) for j, (what, _) in enumerate(m)]
            for i, m in parts[0].measures.items()
        },
    }
    if parts[0].mask is not None:
        copy["mask"] = _joined(parts, lambda p: p.mask)
    return copy


def _joined(parts: list, pick) -> np.ndarray:
    """One tensor of every batch's result, concatenated on the host (floats as float32)."""
    host = [pick(p).detach().cpu() for p in parts]
    return np.concatenate([(t.float() if t.is_floating_point() else t).numpy() for t in host])


def _stacked(drawn: list[dict], key: str) -> np.ndarray:
    return np.stack([copy[key] for copy in drawn])  # (K, N, ...)


def training_fill(dataset: Dataset, val_fraction: float, seed: int) -> tuple[float, float]:
    """The fill statistics of a run with this seed: pixel mean and std of the training
    images left after its validation split (data.splits.build_data)."""
    kept, _ = validation_split(dataset.train_y, val_fraction, seed)
    return pixel_stats(dataset.train_x[kept])


def realized_rows(c: Corrupted, ops: list[dict], classes: list[str]) -> list[dict]:
    """Per op, overall and per class (means over copies and the images the op changed):
    the quantity its setting names as requested vs realized (mask ops: the masked
    fraction; noise: see noise_measures), or the mean |change| where no setting
    corresponds (transforms); with p < 1, the share of images changed as well."""
    rows = []
    groups = [("all", np.ones(len(c.labels), dtype=bool))] + [(name, c.labels == k) for k, name in enumerate(classes)]
    for i, op in enumerate(ops):
        definition = registry.OPS[op["op"]]
        setting = op.get("rate", op.get(definition.strength or "width", op.get("area")))
        if definition.family == "mask":
            measures = [("masked fraction", c.stats[:, :, i], setting)]
        elif definition.family == "soft":
            setting = op["strength"]
            if isinstance(setting, float):  # the expected share: E[strength * u]
                setting = setting * (0.5 if op["dist"] == "uniform" else 1.0)
            measures = [("share taken away (1 - mean m)", c.stats[:, :, i], setting)]
        elif i in c.measures:
            measures = [(what, values, setting) for what, values in c.measures[i]]
        else:
            measures = [("mean |change| (no setting to compare)", c.stats[:, :, i], None)]
        if op.get("p", 1.0) < 1.0:
            measures.append(("share of images changed", c.changed[:, :, i].astype(np.float64), op["p"]))
        for what, values, requested in measures:
            only_changed = definition.family not in ("mask", "soft") and what != "share of images changed"
            for name, keep in groups:
                counted = keep[None, :] & c.changed[:, :, i] if only_changed else np.broadcast_to(keep, values.shape)
                if not counted.any():
                    continue
                picked = values[counted]
                rows.append(
                    {
                        "op": registry.label(op),
                        "measure": what,
                        "class": name,
                        "n": int(keep.sum()),
                        "requested": requested,
                        "realized": round(float(picked.mean()), 6),
                        "min": round(float(picked.min()), 6),
                        "max": round(float(picked.max()), 6),
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


def preview_indices(labels: np.ndarray, n: int = 8) -> np.ndarray:
    """n positions spread over the classes, in class order: the first image of each class,
    then the second, and so on."""
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    picks: list[int] = []
    rank = 0
    while len(picks) < min(n, len(labels)):
        picks += [int(members[rank]) for members in by_class if rank < len(members)][: n - len(picks)]
        rank += 1
    return np.array(picks, dtype=np.int64)


def draw_views(split: DeviceSplit, pipeline: OpPipeline, views: list[int], n: int = 8) -> tuple:
    """What the ops do to n images of a split at each view (an epoch, or a static copy):
    (positions, originals (N, C, H, W), changed (V, N, C, H, W), masks (V, N, H, W) or None),
    arrays in [0, 1] on the host. Token masks are shown at pixel resolution."""
    from masklab.data.batches import to_float

    pos = preview_indices(split.y.cpu().numpy(), n)
    at = torch.from_numpy(pos).to(split.device)
    x, index = to_float(split.x.index_select(0, at)), split.index.index_select(0, at)
    changed, masks = [], []
    for view in views:
        plan = pipeline.epoch_keys(view, device=split.device)
        out = pipeline._apply(
            x.clone(), index, plan.bases, plan.values
        )  # eager: a compiled pipeline would recompile for n
        changed.append(out.images.float().cpu().numpy())
        mask = out.mask
        if mask is None and out.token_mask is not None:
            mask = _token_pixels(out.token_mask, x.shape[-2], x.shape[-1])
        masks.append(None if mask is None else mask.cpu().numpy())
    has_mask = any(m is not None for m in masks)
    stacked = (
        np.stack([m if m is not None else np.zeros((len(pos), *x.shape[-2:]), bool) for m in masks])
        if has_mask
        else None
    )
    return pos, x.cpu().numpy(), np.stack(changed), stacked


def _token_pixels(tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, T) chosen patch tokens of a square grid -> (B, H, W) pixels."""
    side = round(tokens.shape[1] ** 0.5)
    grid = tokens.view(-1, side, side)
    return grid.repeat_interleave(height // side, 1).repeat_interleave(width // side, 2)
