"""Materialising ops over a dataset split, for `masklab mask` and `masklab noise`.

Copy k holds what training draws in epoch k with the same seed and op list: for a
dynamic op the draw of epoch k, for a `mode: static, copies: K` op its copy k mod K (the
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
from masklab.data.registry import Dataset, pixel_stats, validation_split
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
    images, masks, stats, measured = [], [], [], []
    for k in range(copies):
        plan = pipeline.plan(k, device=device)
        parts = [_per_sample(pipeline, xb, idx, plan) for xb, _, idx in data.batches(batch_size)]
        images.append(np.concatenate([p[0] for p in parts]))
        stats.append(np.concatenate([p[2] for p in parts]))
        if has_mask:
            masks.append(np.concatenate([p[1] for p in parts]))
        batches = [
            noise_measures(ops, seed, dataset.shape, (mean, std), k, xb, idx, epochs)
            for xb, _, idx in data.batches(batch_size)
        ]
        measured.append(batches)
    originals = x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)
    result = Corrupted(np.stack(images), np.stack(masks) if has_mask else None, y, np.stack(stats), originals)
    result.changed = np.stack([np.concatenate([b[1] for b in batches], 0) for batches in measured])
    for i in measured[0][0][0]:
        names = [name for name, _ in measured[0][0][0][i]]
        result.measures[i] = [
            (name, np.stack([np.concatenate([b[0][i][j][1] for b in batches]) for batches in measured]))
            for j, name in enumerate(names)
        ]
    return result


def training_fill(dataset: Dataset, val_fraction: float, seed: int) -> tuple[float, float]:
    """The fill statistics of a run with this seed: pixel mean and std of the training
    images left after its validation split (data.splits.build_data)."""
    kept, _ = validation_split(dataset.train_y, val_fraction, seed)
    return pixel_stats(dataset.train_x[kept])


def _per_sample(pipeline: OpPipeline, x: torch.Tensor, idx: torch.Tensor, plan) -> tuple:
    """Images, mask and per-sample realized stats of one batch, on the host."""
    out = pipeline(x, idx, plan)
    mask = out.mask.cpu().numpy() if out.mask is not None else None
    return out.images.cpu().numpy(), mask, out.per_sample.cpu().numpy()


def noise_measures(
    ops: list[dict], seed: int, shape, fill, view: int, x: torch.Tensor, idx: torch.Tensor, epochs: int = 1
) -> tuple:
    """For each noise op, the per-sample quantity its setting names, measured on what it
    drew: gaussian sigma -> the standard deviation of the noise before clipping, and of
    the change after clipping; speckle sigma -> the std of the relative noise; uniform
    width -> std x sqrt(12); salt_pepper amount -> the fraction of pixels hit; shot c ->
    mean / variance. Returns ({op: [(what, (B,))]}, changed (B, n_ops) bool).

    Each op is redrawn with the keys it has in the pipeline (same op index, view and
    sample indices), on the input it really gets (the earlier ops applied)."""

    def run(op_list: list[dict], images: torch.Tensor) -> torch.Tensor:
        if not op_list:
            return images
        p = OpPipeline(op_list, seed, shape, fill_mean=fill[0], fill_std=fill[1], epochs=epochs)
        return p(images.clone(), idx, p.plan(view, device=images.device)).images

    measures: dict[int, list[tuple[str, np.ndarray]]] = {}
    changed = []
    before = x
    for i, op in enumerate(ops):
        after = run(ops[: i + 1], x)
        changed.append((after != before).flatten(1).any(1))
        name = op["op"]
        if name in ("gaussian", "speckle", "uniform", "shot"):
            raw = run(ops[:i] + [dict(op, clip=False, p=1.0)], x) - before  # the noise as drawn
            measures[i] = _measure(name, raw, after - before, before)
        elif name == "salt_pepper":
            probe = torch.full_like(x, 0.5)  # a pixel hit by salt or pepper always leaves 0.5
            blanks = [dict(op, amount=0.0)] * i  # the same op indices, hence the same keys, and no hits
            hit = run(blanks + [dict(op, p=1.0)], probe) != 0.5
            measures[i] = [("fraction of pixels hit", _host(hit.flatten(1).float().mean(1)))]
        before = after
    return measures, torch.stack(changed, 1).cpu().numpy() if changed else np.zeros((len(x), 0), bool)


def _measure(name: str, raw: torch.Tensor, clipped: torch.Tensor, x: torch.Tensor) -> list[tuple[str, np.ndarray]]:
    raw, clipped = raw.flatten(1).double(), clipped.flatten(1).double()
    if name == "gaussian":
        return [
            ("noise std before clipping", _host(raw.std(1, correction=0))),
            ("noise std after clipping", _host(clipped.std(1, correction=0))),
        ]
    if name == "uniform":
        return [
            ("noise width (std x sqrt 12) before clipping", _host(raw.std(1, correction=0) * 12**0.5)),
            ("noise width (std x sqrt 12) after clipping", _host(clipped.std(1, correction=0) * 12**0.5)),
        ]
    base = x.flatten(1).double()
    if name == "speckle":  # x + x * N(0, sigma): the relative noise where there is signal
        lit = base > 0.05
        rel = torch.where(lit, raw / base.clamp(min=0.05), 0.0)
        n = lit.sum(1).clamp(min=1)
        m = rel.sum(1) / n
        var = torch.where(lit, (rel - m[:, None]) ** 2, 0.0).sum(1) / n
        return [("relative noise std before clipping (pixels > 0.05)", _host(var.sqrt()))]
    # shot: Poisson(c x) / c has variance x / c, so c = mean(x) / mean(noise^2)
    return [("photons per unit (mean / noise variance)", _host(base.sum(1) / (raw**2).sum(1).clamp(min=1e-12)))]


def _host(t: torch.Tensor) -> np.ndarray:
    return t.float().cpu().numpy()


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
        plan = pipeline.plan(view, device=split.device)
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
