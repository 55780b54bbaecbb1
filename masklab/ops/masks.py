"""Where a mask is drawn. Each function maps per-sample keys to a `Mask` (True = masked),
drawing only from `keyed`; `fill` then writes the masked pixels. Exact-count masks take
the round(rate * n) units with the smallest keyed uniforms, so masks are nested: a lower
rate masks a subset of a higher rate's units.

A rate is a float (the same for every sample) or a per-sample tensor (B,) when it is
drawn from a range or scheduled per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from masklab.ops import adaptive_spec, keyed
from masklab.ops.keyed import EXTRA, FILL, UNITS, Keys

if TYPE_CHECKING:
    from masklab.ops.call import OpCall

INT32_MAX = 2**31 - 1
CORNER_SUB = 300  # sub-streams of UNITS that order a box's tied corners
BLOCK_MAX_SHARE = 0.4  # the largest block proposal, as a share of the patch grid
Rate = float | torch.Tensor


@dataclass
class Mask:
    """A boolean mask on a grid of equal cells: (B, gh, gw), each cell size x size pixels."""

    grid: torch.Tensor
    size: int = 1

    def pixels(self) -> torch.Tensor:
        """The mask at pixel resolution. (B, gh*size, gw*size)"""
        if self.size == 1:
            return self.grid
        b, gh, gw = self.grid.shape
        s = self.size
        return self.grid[:, :, None, :, None].expand(b, gh, s, gw, s).reshape(b, gh * s, gw * s)

    def fraction(self) -> torch.Tensor:
        """The realized masked fraction of each sample. (B,)"""
        return self.grid.flatten(1).to(torch.float32).mean(1)

    def only(self, applied: torch.Tensor) -> Mask:
        """The mask kept only for samples where `applied` (B,) is True."""
        return Mask(self.grid & applied[:, None, None], self.size)


def exact_count(rate: Rate, n: int) -> int | torch.Tensor:
    """round(rate * n) (round half to even): an int, or per sample (B,) int64."""
    if isinstance(rate, float):
        return min(n, max(0, round(rate * n)))
    return torch.round(rate * n).to(torch.int64).clamp(0, n)


def select_smallest(values: torch.Tensor, counts: int | torch.Tensor) -> torch.Tensor:
    """True at the counts smallest entries of each row of distinct values. (B, n)"""
    if isinstance(counts, int):
        if counts <= 0:
            return torch.zeros_like(values, dtype=torch.bool)
        if counts >= values.shape[1]:
            return torch.ones_like(values, dtype=torch.bool)
        return values <= values.kthvalue(counts, dim=1, keepdim=True).values
    ordered = values.sort(dim=1).values
    threshold = ordered.gather(1, (counts - 1).clamp(min=0)[:, None])
    return (values <= threshold) & (counts[:, None] > 0)


def unit_mask(keys: Keys, rate: Rate, n: int, count: str = "exact") -> torch.Tensor:
    """Masks `rate` of n units per sample: exactly round(rate * n), or each unit
    independently with probability `rate` (bernoulli). (B, n)"""
    bits = keyed.unit_bits(keys.stream(UNITS), n)
    if count == "bernoulli":
        return keyed.uniform(bits) < (rate if isinstance(rate, float) else rate[:, None])
    return select_smallest(keyed.sortable(bits), exact_count(rate, n))


def pixel_mask(keys: Keys, rate: Rate, height: int, width: int, count: str) -> Mask:
    return Mask(unit_mask(keys, rate, height * width, count).view(-1, height, width))


def patch_mask(keys: Keys, rate: Rate, height: int, width: int, size: int) -> Mask:
    gh, gw = height // size, width // size
    return Mask(unit_mask(keys, rate, gh * gw).view(-1, gh, gw), size)


def keyed_preference(keys: Keys, score: torch.Tensor, highest: bool, sub: int = 0) -> torch.Tensor:
    """The units of each row ordered by score (highest or lowest first), ties in keyed
    random order. score (B, n) -> (B, n) unit indices. With all scores equal this is the
    order an exact-count random mask takes its units in (smallest keyed bits first)."""
    n = score.shape[1]
    first = keyed.sortable(keyed.unit_bits(keys.stream(UNITS, sub), n)).argsort(1)  # keyed order
    ranked = score.gather(1, first)
    second = (-ranked if highest else ranked).argsort(dim=1, stable=True)
    return first.gather(1, second)


def ranked_units(keys: Keys, rate: Rate, score: torch.Tensor, highest: bool) -> torch.Tensor:
    """Exactly round(rate * n) units per row: those of highest (or lowest) score, ties
    keyed. Nested across rates, like every exact-count mask. (B, n) bool"""
    order = keyed_preference(keys, score, highest)
    n = score.shape[1]
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(n, device=order.device).expand_as(order))
    count = exact_count(rate, n)
    return rank < (count if isinstance(count, int) else count[:, None])


def placed_patch_mask(keys: Keys, rate: Rate, size: int, saliency: torch.Tensor, placement: str) -> Mask:
    """Patches on the most (salient) or least (background) salient cells. saliency (B, gh, gw)"""
    b, gh, gw = saliency.shape
    chosen = ranked_units(keys, rate, saliency.reshape(b, gh * gw), placement == "salient")
    return Mask(chosen.view(b, gh, gw), size)


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
    """Height and width of a box of `area` cells and aspect exp(log_aspect), clamped to fit."""
    aspect = torch.exp(log_aspect)
    h = torch.round(torch.sqrt(area * aspect)).clamp(1, height).to(torch.int64)
    w = torch.round(torch.sqrt(area / aspect)).clamp(1, width).to(torch.int64)
    return h, w


def _place(
    u_top: torch.Tensor, u_left: torch.Tensor, h: torch.Tensor, w: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A uniformly random top-left corner for a box of size h x w."""
    top = torch.floor(u_top * (height - h + 1)).to(torch.int64)
    left = torch.floor(u_left * (width - w + 1)).to(torch.int64)
    return top, left


def _log_aspect(u: torch.Tensor, aspect: list[float]) -> torch.Tensor:
    lo, hi = math.log(aspect[0]), math.log(aspect[1])
    return lo + (hi - lo) * u


def rect_mask(
    keys: Keys,
    height: int,
    width: int,
    area: list[float] | torch.Tensor,
    aspect: list[float],
    n: int,
    saliency: torch.Tensor | None = None,
    placement: str = "random",
) -> Mask:
    """Random erasing: n boxes per sample, each of an area drawn from `area` (a fraction
    of the image; per sample (B,) when adaptive) and an aspect drawn log-uniformly from
    `aspect`. A box larger than the image is clamped to it, never skipped. Placed at a
    keyed uniform position, or (salient / background) where the box covers the most /
    least saliency (B, H/c, W/c), ties keyed; later boxes avoid what earlier ones cover."""
    u = keys.uniforms(EXTRA, 4 * n)  # (4n, B): area, aspect, top, left of each box
    pixels = None
    if saliency is not None:
        cell = height // saliency.shape[1]
        pixels = saliency.repeat_interleave(cell, 1).repeat_interleave(cell, 2).float()  # (B, H, W)
    mask = None
    for j in range(n):
        frac = area if isinstance(area, torch.Tensor) else area[0] + (area[1] - area[0]) * u[4 * j]
        h, w = _box_shape(frac * (height * width), _log_aspect(u[4 * j + 1], aspect), height, width)
        if pixels is None:
            top, left = _place(u[4 * j + 2], u[4 * j + 3], h, w, height, width)
        else:
            top, left = _place_by_saliency(keys, pixels, h, w, placement == "salient", j)
        box = _boxes(top, left, h, w, height, width)
        mask = box if mask is None else mask | box
        if pixels is not None:  # covered pixels: nothing left to hide (salient) or to keep (background)
            pixels = pixels.masked_fill(box, 0.0 if placement == "salient" else float(pixels.max()) + 1.0)
    return Mask(mask)


def _place_by_saliency(
    keys: Keys, pixels: torch.Tensor, h: torch.Tensor, w: torch.Tensor, highest: bool, box: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The top-left corner where an h x w box covers the most (or least) saliency, from a
    summed-area table over every corner; corners where the box does not fit are never chosen."""
    b, height, width = pixels.shape
    table = F.pad(pixels.double().cumsum(1).cumsum(2), (1, 0, 1, 0))  # (B, H+1, W+1): exact sums of float32
    rows = torch.arange(height, device=pixels.device)[None, :, None]  # candidate tops
    cols = torch.arange(width, device=pixels.device)[None, None, :]
    bottom = (rows + h[:, None, None]).clamp(max=height)
    right = (cols + w[:, None, None]).clamp(max=width)
    flat = table.flatten(1)
    stride = width + 1

    def at(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return flat.gather(1, (r * stride + c).expand(b, height, width).reshape(b, -1)).view(b, height, width)

    sums = at(bottom, right) - at(rows, right) - at(bottom, cols) + at(rows, cols)  # (B, H, W)
    fits = (rows <= height - h[:, None, None]) & (cols <= width - w[:, None, None])
    sums = sums.masked_fill(~fits, float("-inf") if highest else float("inf")).flatten(1)
    best = keyed_preference(keys, sums, highest, sub=CORNER_SUB + box)[:, 0]  # each box its own tie order
    return best // width, best % width


def block_mask(
    keys: Keys, rate: Rate, height: int, width: int, size: int, min_patches: int, aspect: list[float], rounds: int = 16
) -> Mask:
    """BEiT-style blockwise masking: an exact count of patches per sample, nested across rates.

    Every sample's patches are put in one keyed order that does not depend on the rate.
    Each of `rounds` proposals draws a block (area between min_patches and the smaller of
    the patches not yet ordered and 40% of the grid, BEiT's 75 of 196; aspect log-uniform;
    uniform position) and appends its not-yet-ordered
    patches row by row; patches no block reached follow in keyed random order. A rate
    masks the first round(rate * n) patches of that order: a lower rate masks a subset of
    a higher rate's patches, and the last block is cut to meet the count exactly."""
    gh, gw = height // size, width // size
    n = gh * gw
    units = keys.stream(UNITS)
    b, device = units.shape[0], units.device
    order = torch.full((b, n), n, dtype=torch.int64, device=device)  # place in the order; n = not yet placed
    placed = torch.zeros(b, dtype=torch.int64, device=device)
    u = keys.uniforms(EXTRA, 4 * rounds)  # (4 * rounds, B): area, aspect, top, left per round
    for r in range(rounds):
        upper = (n - placed).clamp(max=round(BLOCK_MAX_SHARE * n)).clamp(min=min_patches).to(torch.float32)
        area = min_patches + (upper - min_patches) * u[4 * r]
        h, w = _box_shape(area, _log_aspect(u[4 * r + 1], aspect), gh, gw)
        top, left = _place(u[4 * r + 2], u[4 * r + 3], h, w, gh, gw)
        new = _boxes(top, left, h, w, gh, gw).flatten(1) & (order == n)  # (B, n), row-major
        order = torch.where(new, placed[:, None] + new.cumsum(1) - 1, order)
        placed = placed + new.sum(1)
    rest = order == n
    ranks = torch.where(rest, keyed.sortable(keyed.unit_bits(units, n)).clamp(max=INT32_MAX - 1), INT32_MAX)
    order = torch.where(rest, placed[:, None] + ranks.argsort(1).argsort(1), order)
    target = exact_count(rate, n)
    return Mask((order < (target if isinstance(target, int) else target[:, None])).view(-1, gh, gw), size)


def band_mask(keys: Keys, rate: Rate, length: int, max_width: int, sub: int) -> torch.Tensor:
    """Bands along one axis covering exactly round(rate * length) lines. (B, length)

    The axis is cut into consecutive bands of random width 1..max_width; bands are
    taken in keyed random order until the target is met, the last one trimmed."""
    target = exact_count(rate, length)
    target = target[:, None] if isinstance(target, torch.Tensor) else target
    width_bits = keyed.unit_bits(keys.stream(EXTRA, 200 + sub), length)
    widths = 1 + torch.floor(keyed.uniform(width_bits) * max_width).to(torch.int64)  # (B, L) bands
    starts = torch.cumsum(widths, dim=1) - widths
    widths = (length - starts).clamp(min=0).minimum(widths)  # bands past the end are empty
    order_bits = keyed.sortable(keyed.unit_bits(keys.stream(UNITS, sub), length))
    order = torch.where(widths > 0, order_bits, INT32_MAX).argsort(dim=1)
    ranked = widths.gather(1, order)
    take_ranked = (target - (torch.cumsum(ranked, dim=1) - ranked)).clamp(min=0).minimum(ranked)
    take = torch.zeros_like(take_ranked).scatter(1, order, take_ranked)
    lines = torch.arange(length, device=order.device)
    band_of_line = (starts[:, None, :] <= lines[None, :, None]).sum(2) - 1  # (B, L)
    offset = lines[None, :] - starts.gather(1, band_of_line)
    return offset < take.gather(1, band_of_line)


def stripes_mask(keys: Keys, rate: Rate, height: int, width: int, axis: str, max_width: int) -> Mask:
    rows = band_mask(keys, rate, height, max_width, 0)[:, :, None] if axis in ("rows", "both") else None
    cols = band_mask(keys, rate, width, max_width, 1)[:, None, :] if axis in ("cols", "both") else None
    if rows is not None and cols is not None:
        return Mask(rows | cols)
    lines = rows if rows is not None else cols
    return Mask(lines.expand(-1, height, width))


def region_mask(batch: int, height: int, width: int, box: list[int], device: torch.device) -> Mask:
    top, left, h, w = box
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    mask[top : top + h, left : left + w] = True
    return Mask(mask.expand(batch, height, width))


def fill(x: torch.Tensor, mask: Mask, policy: str | float, keys: Keys, mean: float, std: float) -> torch.Tensor:
    """Write the masked pixels of x (B, C, H, W) by the fill policy."""
    if policy in ("zero", "mean") or isinstance(policy, float):
        value = 0.0 if policy == "zero" else mean if policy == "mean" else policy
        if mask.size == 1:
            return x.masked_fill(mask.grid[:, None], value)
        # patches: broadcast the cell mask over each cell instead of building a pixel mask
        b, c, h, w = x.shape
        gh, gw, s = h // mask.size, w // mask.size, mask.size
        keep = (~mask.grid).to(x.dtype)[:, None, :, None, :, None]
        out = x.reshape(b, c, gh, s, gw, s) * keep
        if value:
            out += (1.0 - keep) * value
        return out.view(b, c, h, w)
    m = mask.pixels()[:, None]
    n = x[0].numel()
    if policy == "uniform":
        return torch.where(m, keyed.uniform(keyed.unit_bits(keys.stream(FILL), n)).view_as(x), x)
    z = keyed.normal(keys.stream(FILL), n).view_as(x)
    return torch.where(m, (mean + std * z).clamp(0.0, 1.0), x)  # gaussian


def soft_mask(keys: Keys, strength: Rate, height: int, width: int, size: int, dist: str) -> torch.Tensor:
    """A soft mask m in [0, 1] per size x size unit: 1 - strength * u with u keyed
    uniform per unit (dist uniform), or 1 - strength everywhere (constant). (B, H, W)"""
    b = keys.table.shape[1]
    gh, gw = height // size, width // size
    s = strength if isinstance(strength, float) else strength[:, None, None]
    if dist == "constant":
        m = (1.0 - s) * torch.ones(b, gh, gw, device=keys.table.device)
    else:
        m = 1.0 - s * keyed.uniform(keyed.unit_bits(keys.stream(UNITS), gh * gw)).view(b, gh, gw)
    return m.repeat_interleave(size, 1).repeat_interleave(size, 2) if size > 1 else m


def blend(x: torch.Tensor, m: torch.Tensor, value: float) -> torch.Tensor:
    """x * m + (1 - m) * value, m (B, H, W) broadcast over channels."""
    m = m[:, None]
    return x * m + (1.0 - m) * value if value else x * m


# --- the op table's apply functions (ops/registry.py): each reads its parameters from the call


def pixel(call: OpCall) -> Mask:
    return pixel_mask(call.keys, call.value("rate"), call.height, call.width, call.op["count"])


def patch(call: OpCall) -> Mask:
    op = call.op
    if call.saliency is not None:
        return placed_patch_mask(call.keys, call.value("rate"), op["size"], call.saliency, op["placement"])
    return patch_mask(call.keys, call.value("rate"), call.height, call.width, op["size"])


def block(call: OpCall) -> Mask:
    op = call.op
    return block_mask(
        call.keys, call.value("rate"), call.height, call.width, op["size"], op["min_patches"], op["aspect"]
    )


def rect(call: OpCall) -> Mask:
    op = call.op
    area = call.value("area") if adaptive_spec.is_adaptive(op["area"]) else op["area"]  # a range is drawn per box
    placement = op.get("placement", "random")
    return rect_mask(call.keys, call.height, call.width, area, op["aspect"], op["n"], call.saliency, placement)


def stripes(call: OpCall) -> Mask:
    op = call.op
    return stripes_mask(call.keys, call.value("rate"), call.height, call.width, op["axis"], op["max_width"])


def region(call: OpCall) -> Mask:
    return region_mask(call.keys.table.shape[1], call.height, call.width, call.op["box"], call.keys.table.device)


def soft(call: OpCall) -> torch.Tensor:
    op = call.op
    return soft_mask(call.keys, call.value("strength"), call.height, call.width, op["size"], op["dist"])
