"""Statistics for comparing groups of runs over seeds.

Seeds are a replication axis. For two groups: the difference of means, a percentile
bootstrap 95% CI, and a p-value from a paired test (seeds matched: t-test on the
differences, plus Wilcoxon's signed-rank test from n = 5) or Welch's t-test otherwise
(scipy.stats). The verdict is written in words: a difference is called only when the
bootstrap CI excludes 0 and the test agrees; small n is said out loud.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np

BOOTSTRAP_SAMPLES = 10_000
MIN_N = 3  # below this per group, no conclusion is offered; below 5 a caution is added


@dataclass
class Describe:
    n: int
    mean: float
    std: float | None  # sample std (ddof=1); None for n = 1
    min: float
    max: float

    def as_dict(self) -> dict:
        return asdict(self)


def describe(values: list[float]) -> Describe:
    a = np.asarray(values, dtype=float)
    return Describe(
        len(a), float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else None, float(a.min()), float(a.max())
    )


@dataclass
class Difference:
    diff: float  # mean(other) - mean(reference)
    ci: tuple[float, float] | None
    p: float | None
    test: str | None  # paired-t | welch-t
    p_wilcoxon: float | None
    paired: bool
    n: tuple[int, int]
    verdict: str

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ci"] = list(self.ci) if self.ci else None
        return d


def bootstrap_ci(
    ref: np.ndarray, other: np.ndarray, paired: bool, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of mean(other) - mean(ref); a fixed seed keeps output stable."""
    rng = np.random.default_rng(seed)
    if paired:
        d = other - ref
        means = d[rng.integers(0, len(d), (BOOTSTRAP_SAMPLES, len(d)))].mean(1)
    else:
        means = other[rng.integers(0, len(other), (BOOTSTRAP_SAMPLES, len(other)))].mean(1) - ref[
            rng.integers(0, len(ref), (BOOTSTRAP_SAMPLES, len(ref)))
        ].mean(1)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


def compare_values(
    ref_by_seed: dict[int, float], other_by_seed: dict[int, float], higher_is_better: bool = True
) -> Difference:
    """Difference of `other` against `ref`; paired when both have the same seeds."""
    from scipy import stats

    ref = np.array(list(ref_by_seed.values()), dtype=float)
    other = np.array(list(other_by_seed.values()), dtype=float)
    paired = set(ref_by_seed) == set(other_by_seed) and len(ref) >= 2
    if paired:
        seeds = sorted(ref_by_seed)
        ref = np.array([ref_by_seed[s] for s in seeds])
        other = np.array([other_by_seed[s] for s in seeds])
    diff = float(other.mean() - ref.mean())
    n = (len(ref), len(other))
    if min(n) < 2:
        return Difference(
            diff,
            None,
            None,
            None,
            None,
            paired,
            n,
            f"n={min(n)}: one run per group shows no seed spread; the difference cannot be told from seed noise",
        )
    ci = bootstrap_ci(ref, other, paired)
    p = p_w = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant inputs: scipy warns and returns nan
        if paired:
            p = float(stats.ttest_rel(other, ref).pvalue)
            d = other - ref
            if len(d) >= 5 and np.any(d != 0):
                p_w = float(stats.wilcoxon(other, ref).pvalue)
        else:
            p = float(stats.ttest_ind(other, ref, equal_var=False).pvalue)
    p = None if p is None or math.isnan(p) else p
    return Difference(
        diff, ci, p, "paired-t" if paired else "welch-t", p_w, paired, n, verdict(diff, ci, p, n, higher_is_better)
    )


def verdict(diff: float, ci: tuple[float, float], p: float | None, n: tuple[int, int], higher_is_better: bool) -> str:
    """Words for a difference: conclusive only when the bootstrap CI and the test agree."""
    few = min(n)
    if few < MIN_N:
        return f"inconclusive: n={few} is too few seeds to tell this from seed noise; add seeds"
    excludes = ci[0] > 0 or ci[1] < 0
    significant = p is not None and p < 0.05
    direction = "higher" if diff > 0 else "lower"
    quality = "better" if (diff > 0) == higher_is_better else "worse"
    p_text = f"p={p:.3g}" if p is not None else "no p-value"
    if excludes and significant:
        caution = f"; only {few} seeds, confirm with more" if few < 5 else ""
        return f"{direction} ({quality}): the 95% CI excludes 0 and {p_text}{caution}"
    if excludes or significant:
        return f"suggestive, {direction}: the bootstrap CI and the test disagree ({p_text}); with {few} seeds add more"
    return f"no clear difference: the 95% CI includes 0 ({p_text})"
