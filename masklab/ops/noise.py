"""Where noise is drawn. Each function adds keyed noise to x (B, C, H, W) in [0, 1]
units; strengths are per-sample tensors (B,) so that ranges and schedules need no
special case. Clipping and `p` are applied by the pipeline."""

from __future__ import annotations

import torch

from masklab.ops import keyed
from masklab.ops.keyed import UNITS
from masklab.ops.masks import exact_count


def _bits(x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    return keyed.unit_bits(keyed.stream(keys, UNITS), x[0].numel()).view_as(x)


def _per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (x.dim() - 1)))


def gaussian(x: torch.Tensor, keys: torch.Tensor, sigma: torch.Tensor, mean: float = 0.0) -> torch.Tensor:
    return x + (mean + _per_sample(sigma, x) * keyed.normal(_bits(x, keys)))


def speckle(x: torch.Tensor, keys: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return x + x * _per_sample(sigma, x) * keyed.normal(_bits(x, keys))


def uniform(x: torch.Tensor, keys: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    return x + _per_sample(width, x) * (keyed.uniform(_bits(x, keys)) - 0.5)


def salt_pepper(x: torch.Tensor, keys: torch.Tensor, amount: torch.Tensor, salt_ratio: float) -> torch.Tensor:
    """Exactly round(amount * n) pixels hit per sample; round(salt_ratio * hits) of them
    set to 1, the rest to 0. Salt pixels are the lowest-ranked hits."""
    b, n = x.shape[0], x[0].numel()
    ranks = keyed.sortable(_bits(x, keys).view(b, n))
    hits = exact_count(amount, n)
    salts = torch.round(hits.to(torch.float32) * salt_ratio).to(torch.int64)
    ordered = ranks.sort(dim=1).values
    hit_thr = ordered.gather(1, (hits - 1).clamp(min=0)[:, None])
    salt_thr = ordered.gather(1, (salts - 1).clamp(min=0)[:, None])
    hit = (ranks <= hit_thr) & (hits[:, None] > 0)
    salt = (ranks <= salt_thr) & (salts[:, None] > 0)
    out = x.reshape(b, n).masked_fill(hit, 0.0).masked_fill(salt, 1.0)
    return out.view_as(x)


def shot(x: torch.Tensor, keys: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Poisson(c * x) / c, drawn exactly by inverting the Poisson CDF at a keyed uniform."""
    c = _per_sample(c, x).to(torch.float64)
    lam = x.to(torch.float64).clamp(min=0.0) * c
    u = keyed.uniform(_bits(x, keys)).to(torch.float64) + 2.0**-25  # in (0, 1)
    return (poisson_inverse(lam, u) / c).to(x.dtype)


def poisson_inverse(lam: torch.Tensor, u: torch.Tensor, max_steps: int = 200) -> torch.Tensor:
    """The smallest k with P(X <= k) >= u for X ~ Poisson(lam), elementwise.

    Starts from a Cornish-Fisher guess and steps up or down until exact; the guess is
    within one or two of the answer, so the loop runs a few times."""
    z = torch.special.ndtri(u)
    k = torch.floor(lam + lam.sqrt() * z + (z * z - 1.0) / 6.0 + 0.5).clamp(min=0.0)

    def cdf(k: torch.Tensor) -> torch.Tensor:
        return torch.where(k < 0, 0.0, torch.special.gammaincc((k + 1.0).clamp(min=1.0), lam))

    for _ in range(max_steps):
        down = cdf(k - 1.0) >= u
        up = cdf(k) < u
        if not bool((down | up).any()):
            break
        k = k - down.to(k.dtype) + up.to(k.dtype)
    return k
