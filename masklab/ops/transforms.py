"""Geometric and photometric corruptions as batched tensor ops: the MNIST-C family
(Mu & Gilmer, 2019) that maps onto tensors. Each draws its per-image randomness (a
direction, a line's end points) from the op's keys, like every other op.

Warps use `affine_grid` + bilinear `grid_sample` with zero padding, the tensor form of
scikit-image's `warp(order=1, mode="constant")` that MNIST-C used; transforms that keep
the image centre fixed are expressed about the centre, as MNIST-C does.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from masklab.ops.keyed import EXTRA

if TYPE_CHECKING:
    from masklab.ops.call import OpCall


def _sign(u: torch.Tensor) -> torch.Tensor:
    return torch.where(u < 0.5, -1.0, 1.0)


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Sample x at theta @ (output coordinates), in normalised coordinates. theta (B, 2, 3)."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _linear(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Warp about the image centre by the 2x2 inverse map a (B, 2, 2) in (col, row) order."""
    theta = torch.cat([a, torch.zeros(a.shape[0], 2, 1, device=a.device, dtype=a.dtype)], dim=2)
    return _warp(x, theta)


def rotate(call: OpCall) -> torch.Tensor:
    """Rotation by `degrees`, direction chosen per image."""
    x, keys, degrees = call.x, call.keys, call.op["degrees"]
    angle = math.radians(degrees) * _sign(keys.uniform(EXTRA))
    c, s = torch.cos(angle), torch.sin(angle)
    return _linear(x, torch.stack([torch.stack([c, -s], 1), torch.stack([s, c], 1)], 1))


def shear(call: OpCall) -> torch.Tensor:
    """Horizontal shear by `degrees`, direction chosen per image."""
    x, keys, degrees = call.x, call.keys, call.op["degrees"]
    angle = math.radians(degrees) * _sign(keys.uniform(EXTRA))
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    return _linear(
        x, torch.stack([torch.stack([one, -torch.sin(angle)], 1), torch.stack([zero, torch.cos(angle)], 1)], 1)
    )


def scale(call: OpCall) -> torch.Tensor:
    """Content scaled by `factor` about the centre (0.7 shrinks the digit to 70%)."""
    x, factor = call.x, call.op["factor"]
    b = x.shape[0]
    a = torch.eye(2, device=x.device).expand(b, 2, 2) / factor
    return _linear(x, a)


def translate(call: OpCall) -> torch.Tensor:
    """A shift of `pixels` along each axis, the directions chosen per image."""
    x, keys, pixels = call.x, call.keys, call.op["pixels"]
    b, _, h, w = x.shape
    u = keys.uniforms(EXTRA, 2)
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2] = -_sign(u[0]) * pixels * 2.0 / (w - 1)
    theta[:, 1, 2] = -_sign(u[1]) * pixels * 2.0 / (h - 1)
    return _warp(x, theta)


def brightness(call: OpCall) -> torch.Tensor:
    """x + delta (for grey images, MNIST-C's HSV value shift is exactly this)."""
    return call.x + call.op["delta"]


def inverse_stripe(call: OpCall) -> torch.Tensor:
    """Invert the leftmost and rightmost `fraction` of the columns (MNIST-C's stripe)."""
    x, fraction = call.x, call.op["fraction"]
    w = x.shape[-1]
    k = round(w * fraction)
    out = x.clone()
    out[..., :k] = 1.0 - x[..., :k]
    out[..., w - k :] = 1.0 - x[..., w - k :]
    return out


def motion_blur(call: OpCall) -> torch.Tensor:
    """MNIST-C's motion blur as ImageMagick's MotionBlurImage computes it: 2 * radius + 1
    taps at integer offsets (i cos a, i sin a), each rounded half down, i = 0..2 * radius,
    along a direction a drawn per image from the `angle` range (degrees); Gaussian weights
    exp(-i^2 / (2 sigma^2)) normalised to sum 1; pixels beyond the edge replicated (the
    edge virtual-pixel method). MNIST-C then stores the result as 8-bit; this keeps floats."""
    x, keys, radius, sigma, angle = call.x, call.keys, call.op["radius"], call.op["sigma"], call.op["angle"]
    b, c, h, w = x.shape
    taps = 2 * math.ceil(radius) + 1
    u = keys.uniform(EXTRA).to(torch.float64)
    direction = torch.deg2rad(angle[0] + (angle[1] - angle[0]) * u)  # (B,)
    steps = torch.arange(taps, device=x.device, dtype=torch.float64)
    col_shift = torch.ceil(steps[None] * torch.cos(direction)[:, None] - 0.5).to(torch.int64)  # (B, taps)
    row_shift = torch.ceil(steps[None] * torch.sin(direction)[:, None] - 0.5).to(torch.int64)
    weights = torch.exp(-(steps**2) / (2.0 * sigma * sigma))
    weights = (weights / weights.sum()).to(x.dtype)
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    flat = x.reshape(b, c, h * w)
    out = torch.zeros_like(flat)
    for k in range(taps):
        r = (rows[None, :] + row_shift[:, k, None]).clamp(0, h - 1)  # (B, H)
        q = (cols[None, :] + col_shift[:, k, None]).clamp(0, w - 1)  # (B, W)
        index = (r[:, :, None] * w + q[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
        out += weights[k] * flat.gather(2, index)
    return out.view(b, c, h, w)


def _line(rows: torch.Tensor, cols: torch.Tensor, c0, r0, c1, r1) -> torch.Tensor:
    """MNIST-C's anti-aliased line through (c0, r0) and (c1, r1), between columns
    floor(c0) and ceil(c1): intensity log(1 - d / 2.3) + 1 at vertical distance d."""
    slope = (r1 - r0) / (c1 - c0)
    fit = slope[:, None, None] * (cols - c0[:, None, None]) + r0[:, None, None]
    dist = (rows - fit).abs().clamp(max=2.3 - 1e-6)
    value = (torch.log1p(-dist / 2.3) + 1.0).clamp(0.0, 1.0)
    inside = (cols >= torch.floor(c0)[:, None, None]) & (cols < torch.ceil(c1)[:, None, None])
    return value * inside


def _grid(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = x.shape[-2:]
    rows = torch.arange(h, device=x.device, dtype=x.dtype)[None, :, None]
    cols = torch.arange(w, device=x.device, dtype=x.dtype)[None, None, :]
    return rows, cols


def dotted_line(call: OpCall) -> torch.Tensor:
    """A dashed line across the image between two random rows, added and clipped."""
    x, keys = call.x, call.keys
    h, w = x.shape[-2:]
    u = keys.uniforms(EXTRA, 2)
    r0, r1 = torch.floor(u[0] * (h - 1)), torch.floor(u[1] * (h - 1))
    rows, cols = _grid(x)
    zeros = torch.zeros_like(r0)
    line = _line(rows, cols, zeros, r0, zeros + (w - 1), r1)
    dashes = (torch.div(cols, 2, rounding_mode="floor") % 2 == 1).to(x.dtype)  # columns 0-1 off, 2-3 on, ...
    return x + (line * dashes)[:, None]


def zigzag(call: OpCall, amplitude: float = 2.0, length: float = 2.0) -> torch.Tensor:
    """A zigzag from column 2 to 25 at a random height and tilt, added and clipped."""
    x, keys = call.x, call.keys
    h, w = x.shape[-2:]
    u = keys.uniforms(EXTRA, 2)
    c0, c1 = 2.0, float(w - 3)
    r0 = torch.floor(u[0] * (h - 1))
    r1 = r0 + torch.floor(u[1] * 10.0) - 5.0
    tilt = torch.atan((r1 - r0) / (c1 - c0))
    d = (c1 - c0) / torch.cos(tilt)  # length of the straight line, (B,)
    n = int(((c1 - c0) - length) // (2 * length)) + 1  # segments before the last: the same for all tilts here
    along = [torch.zeros_like(d)] + [torch.full_like(d, (2 * i + 1) * length) for i in range(n)]
    across = [torch.zeros_like(d)] + [torch.full_like(d, (-1) ** i * amplitude) for i in range(n)]
    last = 2 * length * torch.floor(d / (2 * length))
    along.append(d)
    across.append(across[-1] / (2 * (d - last)).clamp(min=1e-6))
    cos, sin = torch.cos(tilt), torch.sin(tilt)
    cs = [c0 + a * cos - b * sin for a, b in zip(along, across)]
    rs = [r0 + a * sin + b * cos for a, b in zip(along, across)]
    rows, cols = _grid(x)
    out = x[:, 0]
    for i in range(1, len(cs)):
        out = (out + _line(rows, cols, cs[i - 1], rs[i - 1], cs[i], rs[i])).clamp(0.0, 1.0)
    return out[:, None]
