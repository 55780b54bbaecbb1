"""Boundaries for looking at a comparison more than once: numbers in, numbers out.

Two families, both two-sided and both turned into a critical |t| for a look with n seeds
and df degrees of freedom (per-seed metrics are few and their variance unknown):

- **Group-sequential, Lan-DeMets alpha spending.** The alpha spent by the information
  fraction t = n / max_seeds is O'Brien-Fleming-type, 4 - 4 Phi(z_{a/4} / sqrt(t)) (the
  one-sided O'Brien-Fleming function at a/2 a side: almost nothing early), or
  Pocock-type, a ln(1 + (e - 1) t) (evenly). The
  normal-theory boundaries c_k solve P(|Z_j| < c_j for j < k, |Z_k| >= c_k) = spent(t_k) -
  spent(t_{k-1}) for the Brownian-motion correlations of the looks, by the recursive
  numerical integration of Armitage, McPherson and Rowe (Jennison & Turnbull 2000,
  ch. 19). Not scipy's multivariate normal cdf: the first looks of an O'Brien-Fleming
  design spend 1e-7 to 1e-4, below the 1e-5 absolute error of its randomised Genz
  integration, and a root finder on a noisy function gives noisy boundaries (the tests
  check the two agree where Genz is precise). Each c_k becomes its nominal two-sided
  level p_k = 2 (1 - Phi(c_k)), and the look's t-test is run at that level with its own df
  (Jennison & Turnbull's recommendation for unknown variance); the simulation in
  bench/stats_simulation.py shows it holds the level from 3 seeds at the first look.
- **Anytime-valid confidence sequence.** Lai's (1976) scale-invariant normal mixture: for
  per-seed differences x_1..x_n with unknown mean and variance, the set of means mu with
  (1 + n c^2)^(-1/2) (1 - c^2 / (1 + n c^2) * S1^2 / S2)^(-n/2) < 1 / alpha (S1, S2 the sum
  and sum of squares of x - mu) holds mu at every n with probability 1 - alpha. That set is
  the t-interval mean +- r(n) s / sqrt(n) with the critical value r(n) below; c is tuned
  so that r is smallest at max_seeds.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

OBRIEN_FLEMING, POCOCK, CONFIDENCE_SEQUENCE = "obrien-fleming", "pocock", "confidence-sequence"
SPENDING = (OBRIEN_FLEMING, POCOCK)
FAMILIES = SPENDING + (CONFIDENCE_SEQUENCE,)
Z_CAP = 12.0  # a boundary beyond this many sd spends less than the integration resolves: no stop there
GRID = 401  # points of the numerical integration per look (odd: Simpson's rule)


def spent(family: str, alpha: float, t: np.ndarray | float) -> np.ndarray:
    """The alpha a Lan-DeMets spending function has spent by information fraction t in (0, 1]."""
    from scipy import stats

    t = np.asarray(t, dtype=float)
    if family == OBRIEN_FLEMING:  # alpha / 2 a side, each spent as one-sided O'Brien-Fleming
        return 4.0 * stats.norm.sf(stats.norm.isf(alpha / 4.0) / np.sqrt(t))
    if family == POCOCK:
        return alpha * np.log(1.0 + (math.e - 1.0) * t)
    raise ValueError(f"{family!r} is not an alpha-spending family (one of {', '.join(SPENDING)})")


@lru_cache(maxsize=256)
def z_boundaries(family: str, alpha: float, fractions: tuple[float, ...]) -> tuple[float, ...]:
    """Two-sided normal boundaries c_1..c_K at the given information fractions (increasing,
    the last 1): P(some |Z_k| >= c_k) = alpha under no difference, spent as `family` says."""
    from scipy import optimize, stats

    t = np.asarray(fractions, dtype=float)
    increments = np.diff(np.concatenate([[0.0], spent(family, alpha, t)]))
    bounds = [float(stats.norm.isf(increments[0] / 2.0))]  # inf when it spends less than a float holds
    # the sub-density of the score S_1 = Z_1 sqrt(t_1) on the region where look 1 did not stop
    s = np.linspace(-1.0, 1.0, GRID) * min(bounds[0], Z_CAP) * math.sqrt(t[0])
    density = stats.norm.pdf(s, scale=math.sqrt(t[0]))
    for k in range(1, len(t)):
        step = math.sqrt(t[k] - t[k - 1])
        weights = density * _simpson(s)
        args = (math.sqrt(t[k]), s, weights, step, increments[k])
        c = math.inf if _excess(Z_CAP, *args) >= 0 else optimize.brentq(_excess, 0.1, Z_CAP, args=args, xtol=1e-10)
        bounds.append(float(c))
        s_next = np.linspace(-1.0, 1.0, GRID) * min(c, Z_CAP) * math.sqrt(t[k])
        kernel = stats.norm.pdf((s_next[:, None] - s[None, :]) / step) / step  # (new grid, old grid)
        density, s = kernel @ weights, s_next
    return tuple(bounds)


def _excess(c: float, scale: float, s: np.ndarray, weights: np.ndarray, step: float, target: float) -> float:
    return _crossing(c * scale, s, weights, step) - target


def _crossing(b: float, s: np.ndarray, weights: np.ndarray, step: float) -> float:
    """P(|S_k| >= b and no earlier stop): the sub-density at the previous look (on grid s,
    with quadrature weights) carried one Brownian step of sd `step` beyond +-b."""
    from scipy import stats

    return float(weights @ (stats.norm.sf((b - s) / step) + stats.norm.cdf((-b - s) / step)))


def _simpson(s: np.ndarray) -> np.ndarray:
    """Simpson's rule weights on an evenly spaced grid of odd length."""
    w = np.ones(len(s))
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return w * (s[1] - s[0]) / 3.0


def nominal_levels(family: str, alpha: float, looks: tuple[int, ...]) -> np.ndarray:
    """The two-sided nominal level of each look's test, 2 (1 - Phi(c_k)), for looks as
    seed counts (information fraction n_k / n_K)."""
    from scipy import stats

    fractions = tuple(n / looks[-1] for n in looks)
    return 2.0 * stats.norm.sf(np.array(z_boundaries(family, float(alpha), fractions)))


def t_critical(family: str, alpha: np.ndarray, look: int, looks: tuple[int, ...], n, df) -> np.ndarray:
    """The critical |t| at look index `look` (0-based) for a t statistic with `df` degrees
    of freedom over `n` seeds, at overall level `alpha` (batched: arrays broadcast)."""
    from scipy import stats

    alpha = np.asarray(alpha, dtype=float)
    if family == CONFIDENCE_SEQUENCE:
        return lai_critical(np.asarray(n, dtype=float), alpha, looks[-1])
    distinct, index = np.unique(alpha, return_inverse=True)  # a few shares of alpha, many replicates
    levels = np.array([nominal_levels(family, float(a), looks)[look] for a in distinct])[index].reshape(alpha.shape)
    with np.errstate(invalid="ignore"):
        return stats.t.isf(levels / 2.0, df)


def lai_critical(n: np.ndarray, alpha: np.ndarray, target: int) -> np.ndarray:
    """Lai's confidence sequence as a critical |t| at n values: mean +- r s / sqrt(n) holds
    the mean at every n with probability 1 - alpha (inf where n is too small to exclude
    anything). The mixture's c^2 is the one that makes r smallest at n = target."""
    alpha = np.asarray(alpha, dtype=float)
    distinct, index = np.unique(alpha, return_inverse=True)
    c2 = np.array([_lai_c2(float(a), target) for a in distinct])[index].reshape(alpha.shape)
    return _lai_r(n, alpha, c2)


def _lai_r(n, alpha, c2):
    n, alpha = np.asarray(n, dtype=float), np.asarray(alpha, dtype=float)
    q = (alpha**2 / (1.0 + n * c2)) ** (1.0 / n)
    b = (1.0 - q) * (1.0 + n * c2) / c2  # reject mu when n^2 d^2 / ((n-1) s^2 + n d^2) >= b
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.sqrt(b * (n - 1.0) / (n - b))
    return np.where(b < n, r, np.inf)


@lru_cache(maxsize=256)
def _lai_c2(alpha: float, target: int) -> float:
    from scipy import optimize

    res = optimize.minimize_scalar(
        lambda log_c2: min(float(_lai_r(target, alpha, math.exp(log_c2))), 1e6), bounds=(-12.0, 6.0), method="bounded"
    )
    return math.exp(res.x)
