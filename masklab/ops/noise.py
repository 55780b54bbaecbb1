"""Where noise is drawn. Each function adds keyed noise to x (B, C, H, W) in [0, 1]
units. A strength is a float, or a per-sample tensor (B,) when drawn from a range or
scheduled per step. Clipping and `p` are applied by the pipeline."""

from __future__ import annotations

import torch

from masklab.ops import keyed
from masklab.ops.keyed import UNITS, Keys
from masklab.ops.masks import Rate, exact_count, select_smallest


def _per_sample(v: Rate, x: torch.Tensor) -> float | torch.Tensor:
    return v if isinstance(v, float) else v.view(-1, *([1] * (x.dim() - 1)))


def _normal(x: torch.Tensor, keys: Keys) -> torch.Tensor:
    return keyed.normal(keys.stream(UNITS), x[0].numel()).view_as(x)


def _bits(x: torch.Tensor, keys: Keys) -> torch.Tensor:
    return keyed.unit_bits(keys.stream(UNITS), x[0].numel()).view(x.shape[0], -1)


def gaussian(x: torch.Tensor, keys: Keys, sigma: Rate, mean: float = 0.0) -> torch.Tensor:
    noise = _normal(x, keys).mul_(_per_sample(sigma, x))
    if mean:
        noise += mean
    return noise.add_(x)


def speckle(x: torch.Tensor, keys: Keys, sigma: Rate) -> torch.Tensor:
    return _normal(x, keys).mul_(_per_sample(sigma, x)).mul_(x).add_(x)


def uniform(x: torch.Tensor, keys: Keys, width: Rate) -> torch.Tensor:
    u = keyed.uniform(_bits(x, keys)).view_as(x)
    return u.sub_(0.5).mul_(_per_sample(width, x)).add_(x)


def salt_pepper(x: torch.Tensor, keys: Keys, amount: Rate, salt_ratio: float, count: str = "exact") -> torch.Tensor:
    """Impulse noise. exact: round(amount * n) pixels hit per sample, round(salt_ratio *
    hits) of them set to 1 (the lowest-ranked hits), the rest to 0. bernoulli: each pixel
    hit with probability amount and, when hit, set to 1 with probability salt_ratio, else
    0, two independent draws per pixel as scikit-image's random_noise(mode="s&p") makes."""
    b, n = x.shape[0], x[0].numel()
    if count == "bernoulli":
        hit = keyed.uniform(_bits(x, keys)) < _per_sample(amount, x.view(b, n))
        salt = keyed.uniform(keyed.unit_bits(keys.stream(UNITS, 1), n)) < salt_ratio
        flat = x.reshape(b, n)
        return torch.where(hit, salt.to(x.dtype), flat).view_as(x)
    ranks = keyed.sortable(_bits(x, keys))
    hits = exact_count(amount, n)
    if isinstance(hits, int):
        salts: int | torch.Tensor = round(hits * salt_ratio)
    else:
        salts = torch.round(hits.to(torch.float32) * salt_ratio).to(torch.int64)
    hit, salt = select_smallest(ranks, hits), select_smallest(ranks, salts)
    return x.reshape(b, n).masked_fill(hit, 0.0).masked_fill(salt, 1.0).view_as(x)


def shot(x: torch.Tensor, keys: Keys, c: Rate) -> torch.Tensor:
    """Poisson(c * x) / c, drawn exactly by inverting the Poisson CDF at a keyed uniform."""
    scale = _per_sample(c, x)
    scale = scale.to(torch.float64) if isinstance(scale, torch.Tensor) else scale
    lam = x.to(torch.float64).clamp(min=0.0) * scale
    u = keyed.uniform(_bits(x, keys)).view_as(x).to(torch.float64) + 2.0**-25  # in (0, 1)
    return (poisson_inverse(lam, u) / scale).to(x.dtype)


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
