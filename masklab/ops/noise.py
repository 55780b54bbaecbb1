"""Where noise is drawn. Each op function (named by the op table, ops/registry.py) adds
keyed noise to the call's batch x (B, C, H, W) in [0, 1] units. A strength is a float,
or a per-sample tensor (B,) when drawn from a range or scheduled per step. Clipping and
`p` are applied by the pipeline.

The `measure_*` functions give the quantity an op's setting names, measured on what it
drew (`masklab noise` prints it beside the setting): `drawn` is the noise before clipping
and `p`, `kept` the change that remains after them, both (B, C, H, W)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from masklab.ops import keyed
from masklab.ops.keyed import UNITS, Keys
from masklab.ops.masks import Rate, exact_count, select_smallest

if TYPE_CHECKING:
    from masklab.ops.call import OpCall


def _per_sample(v: Rate, x: torch.Tensor) -> float | torch.Tensor:
    return v if isinstance(v, float) else v.view(-1, *([1] * (x.dim() - 1)))


def _normal(x: torch.Tensor, keys: Keys) -> torch.Tensor:
    return keyed.normal(keys.stream(UNITS), x[0].numel()).view_as(x)


def _bits(x: torch.Tensor, keys: Keys) -> torch.Tensor:
    return keyed.unit_bits(keys.stream(UNITS), x[0].numel()).view(x.shape[0], -1)


def gaussian(call: OpCall) -> torch.Tensor:
    """x + N(mean, sigma)."""
    x = call.x
    noise = _normal(x, call.keys).mul_(_per_sample(call.value("sigma"), x))
    if call.op["mean"]:
        noise += call.op["mean"]
    return noise.add_(x)


def speckle(call: OpCall) -> torch.Tensor:
    """x + x * N(0, sigma)."""
    x = call.x
    return _normal(x, call.keys).mul_(_per_sample(call.value("sigma"), x)).mul_(x).add_(x)


def uniform(call: OpCall) -> torch.Tensor:
    """x + U(-width/2, width/2)."""
    x = call.x
    u = keyed.uniform(_bits(x, call.keys)).view_as(x)
    return u.sub_(0.5).mul_(_per_sample(call.value("width"), x)).add_(x)


def salt_pepper(call: OpCall) -> torch.Tensor:
    """Impulse noise. exact: round(amount * n) pixels hit per sample, round(salt_ratio *
    hits) of them set to 1 (the lowest-ranked hits), the rest to 0. bernoulli: each pixel
    hit with probability amount and, when hit, set to 1 with probability salt_ratio, else
    0, two independent draws per pixel as scikit-image's random_noise(mode="s&p") makes."""
    x = call.x
    b, n = x.shape[0], x[0].numel()
    hit, salt = impulses(call)
    if call.op["count"] == "bernoulli":
        return torch.where(hit, salt.to(x.dtype), x.reshape(b, n)).view_as(x)
    return x.reshape(b, n).masked_fill(hit, 0.0).masked_fill(salt, 1.0).view_as(x)


def impulses(call: OpCall) -> tuple[torch.Tensor, torch.Tensor]:
    """salt_pepper's pixels hit and those set to 1, (B, n) each (bernoulli: salt (1, n),
    meaningful where hit)."""
    x, keys, amount, salt_ratio = call.x, call.keys, call.value("amount"), call.op["salt_ratio"]
    b, n = x.shape[0], x[0].numel()
    if call.op["count"] == "bernoulli":
        hit = keyed.uniform(_bits(x, keys)) < _per_sample(amount, x.view(b, n))
        return hit, keyed.uniform(keyed.unit_bits(keys.stream(UNITS, 1), n)) < salt_ratio
    ranks = keyed.sortable(_bits(x, keys))
    hits = exact_count(amount, n)
    if isinstance(hits, int):
        salts: int | torch.Tensor = round(hits * salt_ratio)
    else:
        salts = torch.round(hits.to(torch.float32) * salt_ratio).to(torch.int64)
    return select_smallest(ranks, hits), select_smallest(ranks, salts)


def shot(call: OpCall) -> torch.Tensor:
    """Poisson(c * x) / c, drawn exactly by inverting the Poisson CDF at a keyed uniform."""
    x, keys = call.x, call.keys
    scale = _per_sample(call.value("c"), x)
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


def _std(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).double().std(1, correction=0)


def measure_std(call: OpCall, drawn: torch.Tensor, kept: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """gaussian sigma: the noise standard deviation before clipping, and of the change after."""
    return [("noise std before clipping", _std(drawn)), ("noise std after clipping", _std(kept))]


def measure_width(call: OpCall, drawn: torch.Tensor, kept: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """uniform width: std x sqrt(12)."""
    return [
        ("noise width (std x sqrt 12) before clipping", _std(drawn) * 12**0.5),
        ("noise width (std x sqrt 12) after clipping", _std(kept) * 12**0.5),
    ]


def measure_relative_std(call: OpCall, drawn: torch.Tensor, kept: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """speckle sigma (x + x * N(0, sigma)): the std of the relative noise where there is signal."""
    raw, base = drawn.flatten(1).double(), call.x.flatten(1).double()
    lit = base > 0.05
    rel = torch.where(lit, raw / base.clamp(min=0.05), 0.0)
    n = lit.sum(1).clamp(min=1)
    m = rel.sum(1) / n
    var = torch.where(lit, (rel - m[:, None]) ** 2, 0.0).sum(1) / n
    return [("relative noise std before clipping (pixels > 0.05)", var.sqrt())]


def measure_photons(call: OpCall, drawn: torch.Tensor, kept: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """shot c: Poisson(c x) / c has variance x / c, so c = mean(x) / mean(noise^2)."""
    raw, base = drawn.flatten(1).double(), call.x.flatten(1).double()
    return [("photons per unit (mean / noise variance)", base.sum(1) / (raw**2).sum(1).clamp(min=1e-12))]


def measure_hits(call: OpCall, drawn: torch.Tensor, kept: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """salt_pepper amount: the fraction of pixels hit (a hit may leave a pixel unchanged)."""
    hit, _ = impulses(call)
    return [("fraction of pixels hit", hit.flatten(1).float().mean(1))]
