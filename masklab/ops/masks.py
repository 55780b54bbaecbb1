"""Where a mask is drawn. Each function maps per-sample keys to a boolean mask
(B, H, W), True = masked, drawing only from `keyed`; `fill` then writes the masked
pixels. Exact-count masks take the round(rate * n) units with the smallest keyed
uniforms, so masks are nested: a lower rate masks a subset of a higher rate's units.
"""

from __future__ import annotations

import math

import torch

from masklab.ops import keyed
from masklab.ops.keyed import EXTRA, FILL, UNITS

INT32_MAX = 2**31 - 1


def exact_count(rate: torch.Tensor, n: int) -> torch.Tensor:
    """round(rate * n) per sample (round half to even), as int64. (B,)"""
    return torch.round(rate * n).to(torch.int64).clamp(0, n)


def select_smallest(values: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """True at the counts[b] smallest entries of each row of distinct values. (B, n)"""
    ordered = values.sort(dim=1).values
    threshold = ordered.gather(1, (counts - 1).clamp(min=0)[:, None])
    return (values <= threshold) & (counts[:, None] > 0)


def unit_mask(keys: torch.Tensor, rate: torch.Tensor, n: int, count: str = "exact") -> torch.Tensor:
    """Masks `rate` of n units per sample: exactly round(rate * n), or each unit
    independently with probability `rate` (bernoulli). (B, n)"""
    bits = keyed.unit_bits(keyed.stream(keys, UNITS), n)
    if count == "bernoulli":
        return keyed.uniform(bits) < rate[:, None]
    return select_smallest(keyed.sortable(bits), exact_count(rate, n))


def pixel_mask(keys: torch.Tensor, rate: torch.Tensor, height: int, width: int, count: str) -> torch.Tensor:
    return unit_mask(keys, rate, height * width, count).view(-1, height, width)


def upsample(grid: torch.Tensor, size: int) -> torch.Tensor:
    """A patch-level mask (B, gh, gw) as a pixel mask (B, gh*size, gw*size)."""
    b, gh, gw = grid.shape
    return grid[:, :, None, :, None].expand(b, gh, size, gw, size).reshape(b, gh * size, gw * size)


def patch_mask(keys: torch.Tensor, rate: torch.Tensor, height: int, width: int, size: int) -> torch.Tensor:
    gh, gw = height // size, width // size
    return upsample(unit_mask(keys, rate, gh * gw).view(-1, gh, gw), size)


def _boxes(
    top: torch.Tensor, left: torch.Tensor, h: torch.Tensor, w: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Boolean boxes (B, height, width) from per-sample top, left, h, w."""
    rows = torch.arange(height, device=top.device)[None, :, None]
    cols = torch.arange(width, device=top.device)[None, None, :]
    t, l_ = top[:, None, None], left[:, None, None]
    return (rows >= t) & (rows < t + h[:, None, None]) & (cols >= l_) & (cols < l_ + w[:, None, None])


def _box_shape(
    area: torch.Tensor, log_aspect: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Height and width of a box of `area` units and aspect exp(log_aspect), clamped to fit."""
    aspect = torch.exp(log_aspect)
    h = torch.round(torch.sqrt(area * aspect)).clamp(1, height).to(torch.int64)
    w = torch.round(torch.sqrt(area / aspect)).clamp(1, width).to(torch.int64)
    return h, w


def _place(
    keys: torch.Tensor, sub: int, h: torch.Tensor, w: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A uniformly random top-left corner for a box of size h x w."""
    u_top = keyed.sample_uniform(keys, EXTRA, sub)
    u_left = keyed.sample_uniform(keys, EXTRA, sub + 1)
    top = torch.floor(u_top * (height - h + 1)).to(torch.int64)
    left = torch.floor(u_left * (width - w + 1)).to(torch.int64)
    return top, left


def _log_aspect(keys: torch.Tensor, sub: int, aspect: list[float]) -> torch.Tensor:
    lo, hi = math.log(aspect[0]), math.log(aspect[1])
    return lo + (hi - lo) * keyed.sample_uniform(keys, EXTRA, sub)


def rect_mask(
    keys: torch.Tensor, height: int, width: int, area: list[float], aspect: list[float], n: int
) -> torch.Tensor:
    """Random erasing: n boxes per sample, each of an area drawn from `area` (a fraction
    of the image) and an aspect drawn log-uniformly from `aspect`. A box larger than
    the image is clamped to it, never skipped."""
    mask = torch.zeros(keys.shape[0], height, width, dtype=torch.bool, device=keys.device)
    for j in range(n):
        frac = area[0] + (area[1] - area[0]) * keyed.sample_uniform(keys, EXTRA, 4 * j)
        h, w = _box_shape(frac * (height * width), _log_aspect(keys, 4 * j + 1, aspect), height, width)
        top, left = _place(keys, 4 * j + 2, h, w, height, width)
        mask |= _boxes(top, left, h, w, height, width)
    return mask


def block_mask(
    keys: torch.Tensor,
    rate: torch.Tensor,
    height: int,
    width: int,
    size: int,
    min_patches: int,
    aspect: list[float],
    rounds: int = 16,
) -> torch.Tensor:
    """BEiT-style blockwise masking with an exact count of patches per sample.

    Each round proposes one block per sample (area in [min_patches, remaining], aspect
    log-uniform) and keeps it when it adds at least one patch and does not overshoot
    the target. The defined stop: after `rounds` proposals, any shortfall is filled with
    single patches of lowest keyed rank, so every sample ends with round(rate * n)."""
    gh, gw = height // size, width // size
    n = gh * gw
    target = exact_count(rate, n)
    mask = torch.zeros(keys.shape[0], gh, gw, dtype=torch.bool, device=keys.device)
    count = torch.zeros_like(target)
    for r in range(rounds):
        remaining = target - count
        upper = remaining.clamp(min=min_patches).to(torch.float32)
        area = min_patches + (upper - min_patches) * keyed.sample_uniform(keys, EXTRA, 4 * r)
        h, w = _box_shape(area, _log_aspect(keys, 4 * r + 1, aspect), gh, gw)
        top, left = _place(keys, 4 * r + 2, h, w, gh, gw)
        box = _boxes(top, left, h, w, gh, gw)
        new = (box & ~mask).flatten(1).sum(1)
        keep = (new > 0) & (new <= remaining)
        mask |= box & keep[:, None, None]
        count = count + new * keep
    rest = keyed.sortable(keyed.unit_bits(keyed.stream(keys, UNITS), n)).clamp(max=INT32_MAX - 1)
    rest = torch.where(mask.flatten(1), INT32_MAX, rest)
    mask |= select_smallest(rest, target - count).view(-1, gh, gw)
    return upsample(mask, size)


def band_mask(keys: torch.Tensor, rate: torch.Tensor, length: int, max_width: int, sub: int) -> torch.Tensor:
    """Bands along one axis covering exactly round(rate * length) lines. (B, length)

    The axis is cut into consecutive bands of random width 1..max_width; bands are
    taken in keyed random order until the target is met, the last one trimmed."""
    target = exact_count(rate, length)
    width_bits = keyed.unit_bits(keyed.stream(keys, EXTRA, 200 + sub), length)
    widths = 1 + torch.floor(keyed.uniform(width_bits) * max_width).to(torch.int64)  # (B, L) bands
    starts = torch.cumsum(widths, dim=1) - widths
    widths = (length - starts).clamp(min=0).minimum(widths)  # bands past the end are empty
    order_bits = keyed.sortable(keyed.unit_bits(keyed.stream(keys, UNITS, sub), length))
    order = torch.where(widths > 0, order_bits, INT32_MAX).argsort(dim=1)
    ranked = widths.gather(1, order)
    take_ranked = (target[:, None] - (torch.cumsum(ranked, dim=1) - ranked)).clamp(min=0).minimum(ranked)
    take = torch.zeros_like(take_ranked).scatter(1, order, take_ranked)
    lines = torch.arange(length, device=keys.device)
    band_of_line = (starts[:, None, :] <= lines[None, :, None]).sum(2) - 1  # (B, L)
    offset = lines[None, :] - starts.gather(1, band_of_line)
    return offset < take.gather(1, band_of_line)


def stripes_mask(
    keys: torch.Tensor, rate: torch.Tensor, height: int, width: int, axis: str, max_width: int
) -> torch.Tensor:
    b = keys.shape[0]
    mask = torch.zeros(b, height, width, dtype=torch.bool, device=keys.device)
    if axis in ("rows", "both"):
        mask |= band_mask(keys, rate, height, max_width, 0)[:, :, None]
    if axis in ("cols", "both"):
        mask |= band_mask(keys, rate, width, max_width, 1)[:, None, :]
    return mask


def region_mask(batch: int, height: int, width: int, box: list[int], device: torch.device) -> torch.Tensor:
    top, left, h, w = box
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    mask[top : top + h, left : left + w] = True
    return mask.expand(batch, height, width)


def fill(
    x: torch.Tensor, mask: torch.Tensor, policy: str | float, keys: torch.Tensor, mean: float, std: float
) -> torch.Tensor:
    """Write the masked pixels of x (B, C, H, W) by the fill policy."""
    m = mask[:, None]
    if policy == "zero":
        return x.masked_fill(m, 0.0)
    if policy == "mean":
        return x.masked_fill(m, mean)
    if isinstance(policy, float):
        return x.masked_fill(m, policy)
    bits = keyed.unit_bits(keyed.stream(keys, FILL), x[0].numel()).view_as(x)
    if policy == "uniform":
        return torch.where(m, keyed.uniform(bits), x)
    return torch.where(m, (mean + std * keyed.normal(bits)).clamp(0.0, 1.0), x)  # gaussian
