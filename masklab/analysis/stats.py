"""Statistics for comparing groups of runs over seeds: numbers in, numbers and words out.

`compare`, its gates and the docs go through this module, and a seeded simulation
(tests/test_stats_simulation.py, bench/stats_simulation.py) holds it to its error rates.
For one group against the reference on one metric:

- **Interval and test.** Groups that share 2 or more seeds are compared on those seeds,
  matched: the t-interval of the mean per-seed difference (paired t; the why says so when
  the groups have other seeds too). Otherwise Welch's interval, with Hsu's df (min(n) - 1)
  below 5 seeds in the smaller group and Welch's df capped for unequal groups above
  (welch_df): Welch's own df gave 12% false verdicts at 10 seeds against 2. Both hold their
  95% level at every n and any two spreads under a normal model. From `BCA_MIN_N` seeds
  per group the printed interval is scipy's BCa bootstrap, the n from which the
  simulation shows it holds its level; below that a bootstrap over a few seeds is too narrow.
- **Assumptions.** Seeds are independent and the per-seed differences roughly symmetric.
  From `SHAPE_MIN_N` seeds Shapiro-Wilk checks the second; a p below `SHAPE_ALPHA` gives
  no verdict (skewed differences make a t-test's false verdicts 11-19%). Below that no
  check can tell, and the assumption stands unchecked.
- **The test set is a sample too.** When every run stored its per-example test scores, the
  estimate is a two-way (seeds x test examples) random-effects model: the seed variance of
  the difference plus the between-example variance of its per-example mean (less the
  seed-by-example noise the seed part already holds), the two parts' t half-widths added
  in quadrature (the two sources Bouthillier et al., MLSys 2021, show both matter). The
  p-values invert that same interval at every level.
- **Zero spread.** Per-seed differences identical to within one test example hold no seed
  noise to test against (a t-test would say p = 0 for one image gained by every seed):
  without per-example scores no p is made; with them the example term decides.
- **Single runs.** One run per group measures no seed noise: no verdict; with per-example
  scores, McNemar's exact test says whether the two models differ on the test set. That p
  compares two models, not two recipes, and stays out of the Holm family.
- **Multiplicity.** Holm over every recipe comparison's p of one call; the adjusted p
  decides the verdict.
- **Practical significance.** With `min_effect` d the test is "the difference lies beyond
  +-d" (2 x the one-sided p at +d or -d: p < 0.05 exactly when the 95% interval clears the
  band), and "equivalent" is TOST at 2.5% a side (2 x the usual TOST p, the larger
  one-sided p: p < 0.05 exactly when the 95% interval lies inside the band). Power for
  `equivalent` counts both edges of the band.

Verdict words and their rules: VERDICT_RULES (README shows the same table).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np

ALPHA = 0.05
POWER = 0.8
BCA_MIN_N = 40  # seeds per group from which the BCa bootstrap holds 95% (bench/stats_simulation.py)
BCA_RESAMPLES = 9999
SHAPE_MIN_N = 8  # seeds from which the shape of the per-seed differences is checked (Shapiro-Wilk)
SHAPE_ALPHA = 0.05  # a Shapiro-Wilk p below this: the differences are too skewed for a t verdict
HSU_MIN_N = 5  # from this many seeds in the smaller group an unpaired df is Welch's (capped), below it Hsu's
MAX_SEEDS = 10_000  # the largest group size the power search considers
FLOAT_TOL = 1e-9  # spread below this is floating-point noise when the metric has no known step
TOST_P = "TOST p (2 x the usual: 2.5% a side)"  # how whys name p_equiv
ZERO_DIFF = 1e-12  # a difference of means below this is floating-point noise

BETTER, WORSE, EQUIVALENT, INCONCLUSIVE, TOO_FEW = "better", "worse", "equivalent", "inconclusive", "too few seeds"
VERDICTS = (BETTER, WORSE, EQUIVALENT, INCONCLUSIVE, TOO_FEW)
VERDICT_RULES = {  # the README's table, word for word
    BETTER: "Holm-adjusted p < 0.05 and the 95% interval lies wholly on the metric's good side of +-min_effect",
    WORSE: "Holm-adjusted p < 0.05 and the 95% interval lies wholly on the metric's bad side of +-min_effect",
    EQUIVALENT: "min_effect > 0, Holm-adjusted TOST p (2 x the usual: 2.5% a side) < 0.05 and the 95% interval lies inside +-min_effect",
    INCONCLUSIVE: "none of the above with 2 or more seeds per group, or per-seed differences too skewed for a t-test (Shapiro-Wilk p < 0.05, from 8 seeds); the why says which condition failed and how many seeds per group would give 80% power",
    TOO_FEW: "a group has one run, so no seed noise is measured (with stored predictions the why adds McNemar's test of the two models, outside the Holm family)",
}


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


# --- the batched core: every array has a leading axis of R independent comparisons --------


@dataclass
class Estimate:
    """A difference and the parts of its variance, batched: arrays of shape (R,).

    Each part is (variance, df). The (1 - a) half-width adds the parts' t half-widths in
    quadrature, sqrt(sum t(1 - a/2, df_k)^2 var_k): with one part, the plain t interval."""

    diff: np.ndarray
    parts: list[tuple[np.ndarray, np.ndarray]]
    zero_spread: np.ndarray  # bool: the seeds carry no spread to test against
    method: str

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(sum(v for v, _ in self.parts))

    @property
    def df(self) -> np.ndarray:
        """The t df whose 95% quantile gives the 95% half-width over se (the df itself for one part)."""
        if len(self.parts) == 1:
            return self.parts[0][1]
        with np.errstate(divide="ignore", invalid="ignore"):
            return _df_for_quantile(half_width(self, ALPHA) / self.se)


def half_width(e: Estimate, alpha: float | np.ndarray) -> np.ndarray:
    from scipy import stats

    q = 1.0 - np.asarray(alpha) / 2.0
    with np.errstate(invalid="ignore"):  # a part with no variance and no df adds nothing
        return np.sqrt(sum(np.nan_to_num(stats.t.ppf(q, df) ** 2 * v) for v, df in e.parts))


def seed_estimate(ref: np.ndarray, other: np.ndarray, paired: bool, quantum: float = 0.0) -> Estimate:
    """Paired t (ref and other (R, n), columns matched by seed) or Welch (R, n) vs (R, m).

    `quantum` is the metric's step (1 / test examples for an accuracy): a spread below it
    is no measurement of seed noise."""
    tol = quantum if quantum > 0 else FLOAT_TOL
    if paired:
        d = other - ref
        n = d.shape[-1]
        sd = d.std(axis=-1, ddof=1)
        return Estimate(d.mean(-1), [(sd**2 / n, np.full(len(d), n - 1.0))], sd < tol, "paired-t")
    va, vb = ref.var(axis=-1, ddof=1) / ref.shape[-1], other.var(axis=-1, ddof=1) / other.shape[-1]
    df = welch_df(va, vb, ref.shape[-1], other.shape[-1])
    spread = np.maximum(ref.std(axis=-1, ddof=1), other.std(axis=-1, ddof=1))
    return Estimate(other.mean(-1) - ref.mean(-1), [(va + vb, df)], spread < tol, "welch-t")


def welch_df(va: np.ndarray, vb: np.ndarray, na: int | np.ndarray, nb: int | np.ndarray) -> np.ndarray:
    """The t df of an unpaired difference; va, vb are the variances of the two means.

    Welch-Satterthwaite's df is estimated from the groups' own variances, and with a few
    seeds in one group it is often far too large: 10 seeds against 2 gives 12% false
    verdicts, 2 against 2 with an 8x difference in spread 6.6% (bench/stats_simulation.py).
    Below HSU_MIN_N seeds in the smaller group the df is Hsu's min(n) - 1, which never
    exceeds the level whatever the two spreads (Mickey & Brown, 1966); from there on it
    is Welch's, capped at (n_min - 1)(1 + (n_min / n_max)^2): 2 (n - 1) for equal groups
    (no cap), Hsu's df as the groups grow unequal."""
    small, large = np.minimum(na, nb), np.maximum(na, nb)
    with np.errstate(divide="ignore", invalid="ignore"):
        satterthwaite = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
        cap = (small - 1) * (1 + (small / large) ** 2)
    df = np.where(small < HSU_MIN_N, small - 1.0, np.minimum(satterthwaite, cap))
    return np.broadcast_to(df, np.shape(va)).astype(float)


def _residual_ms(x: np.ndarray) -> np.ndarray:
    """Residual mean square of a seeds x examples table (R, n, N): the noise in one seed's
    score on one example beyond the seed's and the example's means."""
    n, big_n = x.shape[-2:]
    r = x - x.mean(-1, keepdims=True) - x.mean(-2, keepdims=True) + x.mean((-2, -1), keepdims=True)
    return (r * r).sum((-2, -1)) / ((n - 1) * (big_n - 1))


def example_estimate(ref: np.ndarray, other: np.ndarray, paired: bool, quantum: float = 0.0) -> Estimate:
    """Seeds x test examples: ref (R, n, N), other (R, m, N) per-example scores.

    Two parts of the variance of the difference. The seed part is the paired-t (or Welch)
    variance of the per-seed means, with its df. The example part is the variance over
    examples of the per-example mean difference, less the seed-by-example noise the seed
    part already holds (the ANOVA residual mean square over n; floored at 0), over N,
    with N - 1 df. Intervals add the parts' t half-widths in quadrature (see Estimate);
    pooling them into one Satterthwaite df would let a part estimated from 2 or 3 seeds
    pass as precise, which the simulation shows costs coverage (0.89 at n=2). When the
    per-seed means do not vary by one `quantum`, the seed part is taken as no smaller
    than that residual noise over N, which every seed's mean carries."""
    big_n = ref.shape[-1]
    seed = seed_estimate(ref.mean(-1), other.mean(-1), paired, quantum)
    ((seed_var, seed_df),) = seed.parts
    if paired:
        d = other - ref
        example_noise = _residual_ms(d) / d.shape[-2]
        per_example = d.mean(-2)
    else:
        example_noise = _residual_ms(ref) / ref.shape[-2] + _residual_ms(other) / other.shape[-2]
        per_example = other.mean(-2) - ref.mean(-2)
    seed_var = np.where(seed.zero_spread, np.maximum(seed_var, example_noise / big_n), seed_var)
    seed_df = np.where(np.isfinite(seed_df), seed_df, ref.shape[-2] - 1.0)
    example_var = np.maximum(per_example.var(axis=-1, ddof=1) - example_noise, 0.0) / big_n
    parts = [(seed_var, seed_df), (example_var, np.full(len(seed_var), big_n - 1.0))]
    method = ("paired-t" if paired else "welch-t") + " x examples"
    return Estimate(seed.diff, parts, np.zeros(len(seed_var), dtype=bool), method)


_DF_GRID = np.geomspace(0.5, 1e8, 4000)


def _df_for_quantile(crit: np.ndarray) -> np.ndarray:
    """The df whose two-sided 95% t quantile is `crit` (interpolated on a log grid)."""
    from scipy import stats

    quantiles = stats.t.ppf(1 - ALPHA / 2, _DF_GRID)  # decreasing in df
    return np.exp(np.interp(crit, quantiles[::-1], np.log(_DF_GRID[::-1])))


def two_sided_p(e: Estimate, distance: np.ndarray) -> np.ndarray:
    """The a at which the (1 - a) interval's half-width equals `distance` (1 where the
    distance is <= 0): the two-sided p of a point that far from the estimate. One part:
    scipy's t tail; several: bisection on log a, the half-width being monotone in a."""
    from scipy import stats

    if len(e.parts) == 1:
        var, df = e.parts[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.minimum(1.0, 2.0 * stats.t.sf(distance / np.sqrt(var), df))
    lo, hi = np.full(len(distance), -40.0), np.zeros(len(distance))  # log a in [log 4e-18, log 1]
    for _ in range(32):  # log a to 1e-8
        mid = (lo + hi) / 2.0
        wider = half_width(e, np.exp(mid)) > distance  # a too small: move up
        lo, hi = np.where(wider, mid, lo), np.where(wider, hi, mid)
    return np.where(distance > 0, np.exp(hi), 1.0)


@dataclass
class Tested:
    """An estimate with its 95% interval and p-values, batched: each field (R,)."""

    low: np.ndarray
    high: np.ndarray
    p: np.ndarray  # H0: the difference lies within +-min_effect (two-sided; the usual p at 0)
    p_equiv: np.ndarray  # TOST x 2, H0: the difference lies outside +-min_effect (nan without min_effect)


def assess(e: Estimate, min_effect: float = 0.0) -> Tested:
    """The 95% interval and p-values that agree with it at every level: p < a exactly
    when the (1 - a) interval clears +-min_effect, p_equiv < a exactly when it lies
    inside. nan where the seeds carry no spread or there is no variance at all."""
    usable = ~e.zero_spread & (e.se > 0)
    half = np.where(usable, half_width(e, ALPHA), np.nan)
    size = np.abs(e.diff)
    p = np.where(usable, two_sided_p(e, size - min_effect), np.nan)
    p_equiv = np.full_like(p, np.nan)
    if min_effect > 0:
        p_equiv = np.where(usable, two_sided_p(e, min_effect - size), np.nan)
    return Tested(e.diff - half, e.diff + half, p, p_equiv)


def classify(
    diff: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    p_adj: np.ndarray,
    p_equiv_adj: np.ndarray,
    min_effect: float = 0.0,
    higher_is_better: bool = True,
    shape_p: np.ndarray | None = None,
) -> np.ndarray:
    """The verdict word of each comparison (R,), by the rules in the module docstring;
    `shape_p` (shapiro_p) below SHAPE_ALPHA: inconclusive, the differences are too skewed."""
    with np.errstate(invalid="ignore"):
        decided = p_adj < ALPHA
        if shape_p is not None:
            decided = decided & ~(shape_p < SHAPE_ALPHA)
        up = decided & (low > min_effect)
        down = decided & (high < -min_effect)
        equal = (p_equiv_adj < ALPHA) & (low > -min_effect) & (high < min_effect) if min_effect > 0 else False
        if shape_p is not None:
            equal = equal & ~(shape_p < SHAPE_ALPHA)
    good, bad = (BETTER, WORSE) if higher_is_better else (WORSE, BETTER)
    out = np.full(len(diff), INCONCLUSIVE, dtype=object)
    out[np.asarray(equal, dtype=bool) & ~up & ~down] = EQUIVALENT
    out[up] = good
    out[down] = bad
    return out


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone); None and nan stay None."""
    idx = [i for i, p in enumerate(pvalues) if p is not None and not math.isnan(p)]
    m = len(idx)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: pvalues[i])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def clopper_pearson(k: np.ndarray, n: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Exact 95% interval of a proportion k / n (k may be fractional: ties count half)."""
    from scipy import stats

    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(k > 0, stats.beta.ppf(ALPHA / 2, k, n - k + 1), 0.0)
        high = np.where(k < n, stats.beta.ppf(1 - ALPHA / 2, k + 1, n - k), 1.0)
    return low, high


def outperform(
    ref: np.ndarray, other: np.ndarray, paired: bool, higher_is_better: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P(a seed of `other` beats a seed of `ref`) over seed pairs, ties counted half, with a
    95% interval: matched seeds, Clopper-Pearson over the n pairs; unmatched, the share of
    all n x m pairs with Clopper-Pearson at min(n, m) pairs (van Dantzig's bound on the
    variance of this Mann-Whitney estimate makes that conservative). Batched (R,)."""
    sign = 1.0 if higher_is_better else -1.0
    if paired:
        d = sign * (other - ref)
        n = np.full(len(d), d.shape[-1], dtype=float)
    else:
        d = sign * (other[:, None, :] - ref[:, :, None]).reshape(len(ref), -1)
        n = np.full(len(d), min(ref.shape[-1], other.shape[-1]), dtype=float)
    share = ((d > 0) + 0.5 * (d == 0)).mean(-1)
    low, high = clopper_pearson(share * n, n)
    return share, low, high


# --- one call of compare: a family of comparisons --------------------------------------


@dataclass
class Pair:
    """The inputs of one comparison: per-seed values of the reference and the other group,
    and optionally per-example scores (seed -> (N,) array) on one shared test set."""

    ref: dict[int, float]
    other: dict[int, float]
    higher_is_better: bool = True
    quantum: float = 0.0  # the metric's step, e.g. 1 / test examples
    ref_examples: dict[int, np.ndarray] | None = None
    other_examples: dict[int, np.ndarray] | None = None


@dataclass
class Difference:
    diff: float  # mean(other) - mean(reference)
    ci: tuple[float, float] | None
    interval: str | None  # which interval: paired-t, welch-t, ... x examples, bca, mcnemar-exact, examples-t
    p: float | None
    p_adj: float | None  # Holm over every p of the call; decides the verdict
    paired: bool
    n: tuple[int, int]
    verdict: str
    why: str
    min_effect: float = 0.0
    p_equiv: float | None = None
    p_equiv_adj: float | None = None
    se: float | None = None
    df: float | None = None
    p_outperform: float | None = None
    p_outperform_ci: tuple[float, float] | None = None
    seeds_for_power: int | None = None  # seeds per group for 80% power, when inconclusive
    paired_on: int | None = None  # paired: the seeds both groups have, which the comparison uses
    shapiro_p: float | None = None  # are the per-seed differences normal? below SHAPE_ALPHA: no verdict

    def as_dict(self) -> dict:
        d = asdict(self)
        d["ci"] = list(self.ci) if self.ci else None
        d["p_outperform_ci"] = list(self.p_outperform_ci) if self.p_outperform_ci else None
        return d


def compare_values(
    ref_by_seed: dict[int, float],
    other_by_seed: dict[int, float],
    higher_is_better: bool = True,
    min_effect: float = 0.0,
    quantum: float = 0.0,
) -> Difference:
    """One comparison on its own (a family of one: no multiplicity adjustment)."""
    return compare_family([Pair(ref_by_seed, other_by_seed, higher_is_better, quantum)], min_effect)[0]


def compare_family(pairs: list[Pair], min_effect: float = 0.0, use_examples: bool = True) -> list[Difference]:
    """Every comparison of one call: estimates, Holm over all their p-values, verdicts."""
    if min_effect < 0:
        raise ValueError("min_effect must be >= 0")
    prepared = [_prepare(pair, min_effect, use_examples) for pair in pairs]
    # a single run's p (McNemar, or a t over examples) compares two models, not two
    # recipes: it stays out of the recipes' family
    p_adj = holm([None if d.verdict == TOO_FEW else d.p for d in prepared])
    eq_adj = holm([d.p_equiv for d in prepared])
    m = sum(p is not None for p in p_adj)
    for d, pair, pa, ea in zip(prepared, pairs, p_adj, eq_adj):
        d.p_adj, d.p_equiv_adj = pa, ea
        if d.verdict:  # decided already: too few seeds
            continue
        _decide(d, pair, min_effect, m)
    return prepared


def _arrays(pair: Pair) -> tuple[np.ndarray, np.ndarray, bool, list[int], list[int]]:
    """The values compared. When the groups share 2 or more seeds, the runs of those seeds,
    matched (a seed's two runs share their initialisation and data order, so Welch's
    independent groups would be wrong, and 10 seeds against 2 mislead it); otherwise
    every run of each group, unmatched."""
    shared = sorted(set(pair.ref) & set(pair.other))
    paired = len(shared) >= 2
    ref_seeds, other_seeds = (shared, shared) if paired else (sorted(pair.ref), sorted(pair.other))
    ref = np.array([pair.ref[s] for s in ref_seeds], dtype=float)
    other = np.array([pair.other[s] for s in other_seeds], dtype=float)
    return ref, other, paired, ref_seeds, other_seeds


def _prepare(pair: Pair, min_effect: float, use_examples: bool) -> Difference:
    ref, other, paired, ref_seeds, other_seeds = _arrays(pair)
    n = (len(pair.ref), len(pair.other))
    diff = _clean(float(other.mean() - ref.mean()))
    have_examples = use_examples and pair.ref_examples is not None and pair.other_examples is not None
    if min(n) < 2:
        return _single_runs(pair, diff, paired, n, have_examples)
    if have_examples:
        e = example_estimate(
            np.stack([pair.ref_examples[s] for s in ref_seeds])[None],
            np.stack([pair.other_examples[s] for s in other_seeds])[None],
            paired,
            pair.quantum,
        )
    else:
        e = seed_estimate(ref[None], other[None], paired, pair.quantum)
    t = assess(e, min_effect)
    ci, interval = (float(t.low[0]), float(t.high[0])), e.method
    if not have_examples and min(len(ref), len(other)) >= BCA_MIN_N and not e.zero_spread[0]:
        ci, interval = bca_interval(ref, other, paired), "bca"
    share, lo, hi = outperform(ref[None], other[None], paired, pair.higher_is_better)
    zero = bool(e.zero_spread[0]) or not np.isfinite(t.low[0])  # no spread to test against
    shape_p = None if zero else _num(shapiro_p(ref[None], other[None], paired)[0])
    return Difference(
        diff=diff,
        ci=None if zero else ci,
        interval=interval,
        p=_num(t.p[0]),
        p_adj=None,
        paired=paired,
        n=n,
        verdict="",
        why="",
        min_effect=min_effect,
        p_equiv=_num(t.p_equiv[0]),
        se=None if zero else _num(e.se[0]),
        df=None if zero else _num(e.df[0]),
        p_outperform=float(share[0]),
        p_outperform_ci=(float(lo[0]), float(hi[0])),
        paired_on=len(ref) if paired else None,
        shapiro_p=shape_p,
    )


def shapiro_p(ref: np.ndarray, other: np.ndarray, paired: bool) -> np.ndarray:
    """Shapiro-Wilk's p that the per-seed differences (matched seeds) or the values of each
    group (unmatched; the smaller p) are normal, batched (R,): nan where no sample has
    SHAPE_MIN_N values that vary. t-tests assume roughly symmetric differences: under
    lognormal(1) ones they give 11-19% false verdicts, and giving one only when p >=
    SHAPE_ALPHA brings that to 6.7% at 15 seeds and 3% at 20 (bench/stats_simulation.py).
    Below SHAPE_MIN_N seeds the check gains nothing (the samples that mislead a t-test
    missed the long tail and look symmetric; 2 values always are): the assumption stands
    unchecked."""
    from scipy import stats

    out = np.full(len(ref), np.nan)
    for x in [other - ref] if paired else [ref, other]:
        if x.shape[-1] < SHAPE_MIN_N:
            continue
        varies = np.ptp(x, axis=-1) > 0
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore")  # rows that do not vary
            p = np.asarray(stats.shapiro(x, axis=-1).pvalue, dtype=float)
        out = np.fmin(out, np.where(varies, p, np.nan))
    return out


def _clean(diff: float) -> float:
    """A difference of means that is floating-point noise (-1.11e-16 for equal values summed
    in another order) is 0."""
    return 0.0 if abs(diff) < ZERO_DIFF else diff


def _num(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def bca_interval(ref: np.ndarray, other: np.ndarray, paired: bool) -> tuple[float, float]:
    """scipy's BCa bootstrap 95% interval of the mean difference (seeded: stable output)."""
    from scipy import stats

    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate resamples
        if paired:
            res = stats.bootstrap((other - ref,), np.mean, method="BCa", n_resamples=BCA_RESAMPLES, rng=rng)
        else:
            res = stats.bootstrap(
                (other, ref),
                lambda a, b, axis=-1: a.mean(axis) - b.mean(axis),
                method="BCa",
                n_resamples=BCA_RESAMPLES,
                rng=rng,
            )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _single_runs(pair: Pair, diff: float, paired: bool, n: tuple[int, int], have_examples: bool) -> Difference:
    """A group with one run: no seed noise is measured, so no verdict about the recipes.
    With per-example scores, say whether these two models differ on the test set."""
    why = f"n={min(n)}: one run per group measures no seed noise; the recipes cannot be compared; add seeds"
    d = Difference(diff, None, None, None, None, paired, n, TOO_FEW, why)
    if not (have_examples and n == (1, 1)):
        return d
    (a,), (b,) = pair.ref_examples.values(), pair.other_examples.values()
    if np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all():
        d.p, d.ci, d.interval, text = mcnemar(a, b)
    else:
        se = np.array([(b - a).std(ddof=1) / math.sqrt(len(a))])
        t = assess(Estimate(np.array([diff]), [(se**2, np.array([len(a) - 1.0]))], np.array([False]), "examples-t"))
        d.p, d.ci, d.interval = _num(t.p[0]), (float(t.low[0]), float(t.high[0])), "examples-t"
        text = f"a paired t over the {len(a):,} test examples gives p={d.p:.3g}"
    d.why += f". On the test set: {text}; that says whether these two models differ, not the recipes"
    return d


def mcnemar(ref_correct: np.ndarray, other_correct: np.ndarray) -> tuple[float, tuple[float, float], str, str]:
    """McNemar's exact test of two classifiers on one test set: p, a 95% interval of the
    accuracy difference (Clopper-Pearson on the discordant split), method and words."""
    from scipy import stats

    ref_only = int(np.sum((ref_correct == 1) & (other_correct == 0)))
    other_only = int(np.sum((other_correct == 1) & (ref_correct == 0)))
    discordant = ref_only + other_only
    big_n = len(ref_correct)
    if discordant == 0:
        return 1.0, (0.0, 0.0), "mcnemar-exact", "the two models agree on every test example"
    p = float(stats.binomtest(other_only, discordant, 0.5).pvalue)
    lo, hi = clopper_pearson(np.array(other_only), discordant)
    ci = (discordant / big_n * (2 * float(lo) - 1), discordant / big_n * (2 * float(hi) - 1))
    text = (
        f"the models disagree on {discordant:,} examples, {other_only} right only in this run and {ref_only} only "
        f"in the reference: McNemar's exact p={p:.3g}"
    )
    return p, ci, "mcnemar-exact", text


def _decide(d: Difference, pair: Pair, min_effect: float, m: int) -> None:
    nan = np.array([np.nan])
    low, high = (np.array([d.ci[0]]), np.array([d.ci[1]])) if d.ci else (nan, nan)
    word = classify(
        np.array([d.diff]),
        low,
        high,
        np.array([np.nan if d.p_adj is None else d.p_adj]),
        np.array([np.nan if d.p_equiv_adj is None else d.p_equiv_adj]),
        min_effect,
        pair.higher_is_better,
        np.array([np.nan if d.shapiro_p is None else d.shapiro_p]),
    )[0]
    band = f"+-{min_effect:g}" if min_effect > 0 else "0"
    holm_text = f", Holm-adjusted over {m} tests: {d.p_adj:.3g}" if m > 1 and d.p_adj is not None else ""
    ci_text = f"95% CI [{d.ci[0]:+.4g}, {d.ci[1]:+.4g}]" if d.ci else ""
    if d.shapiro_p is not None and d.shapiro_p < SHAPE_ALPHA:
        d.verdict, d.why = INCONCLUSIVE, _shape_why(d, pair, ci_text)
    elif word in (BETTER, WORSE):
        edge = f"{min_effect if d.diff > 0 else -min_effect:+g}" if min_effect > 0 else "0"
        where = "above" if d.diff > 0 else "below"
        d.verdict, d.why = word, f"{d.diff:+.4g}: the {ci_text} lies {where} {edge}; p={d.p:.3g}{holm_text}"
    elif word == EQUIVALENT:
        holm_eq = f", Holm-adjusted over {m} tests: {d.p_equiv_adj:.3g}" if m > 1 else ""
        d.verdict, d.why = word, f"{d.diff:+.4g}: the {ci_text} lies inside {band}; {TOST_P}={d.p_equiv:.3g}{holm_eq}"
    else:
        d.verdict, d.why = word, _inconclusive_why(d, pair, min_effect, m, band, ci_text, holm_text)
    d.why = _paired_on_text(d) + d.why


def _paired_on_text(d: Difference) -> str:
    """Say so when a comparison is paired on the seeds the groups share, not on all their runs."""
    if not d.paired_on or d.paired_on == max(d.n):
        return ""
    return f"paired on the {d.paired_on} seeds both groups have (of {d.n[0]} and {d.n[1]}): "


def _shape_why(d: Difference, pair: Pair, ci_text: str) -> str:
    from scipy import stats

    ref, other, paired, _, _ = _arrays(pair)
    what = "per-seed differences" if paired else "per-seed values of a group"
    skew = f", skewness {float(stats.skew(other - ref)):+.2g}" if paired else ""
    return (
        f"{d.diff:+.4g}: skewed {what}: Shapiro-Wilk p={d.shapiro_p:.2g} over {len(ref)} seeds{skew}; "
        f"a t-test's p ({d.p:.3g}) and {ci_text} do not hold their level there, so no verdict "
        "(a seed that failed, or a metric near its floor or ceiling, does this)"
    )


def _inconclusive_why(
    d: Difference, pair: Pair, min_effect: float, m: int, band: str, ci_text: str, holm_text: str
) -> str:
    if d.ci is None and d.interval and "examples" in d.interval:
        return f"{d.diff:+.4g}: the two groups' per-example scores do not vary at all; there is nothing to test"
    if d.ci is None:  # zero spread and no per-example scores
        return (
            f"{d.diff:+.4g}, but the per-seed differences are identical to within one test example: "
            "the seeds carry no noise to test against (a t-test would claim p=0); "
            "per-example predictions would settle it (runs trained with this masklab store them)"
        )
    low, high = d.ci
    inside = min_effect > 0 and -min_effect < low and high < min_effect
    clears = low > min_effect or high < -min_effect
    tested = d.p is not None and d.p < ALPHA  # the t-test alone would decide; the printed CI may be BCa's
    tost = d.p_equiv is not None and d.p_equiv < ALPHA
    if clears and tested:
        reason = f"the {ci_text} clears {band} (p={d.p:.3g}), but not after Holm over {m} tests ({d.p_adj:.3g})"
    elif clears:  # a BCa interval that clears while the t-test does not
        reason = f"the {ci_text} clears {band}, but the t-test does not (p={d.p:.3g}{holm_text})"
    elif inside and tost:
        reason = f"the {ci_text} lies inside {band} ({TOST_P}={d.p_equiv:.3g}), but not after Holm over {m} tests ({d.p_equiv_adj:.3g})"
    elif inside:
        reason = f"the {ci_text} lies inside {band}, but the t-test's TOST does not ({TOST_P}={d.p_equiv:.3g})"
    elif min_effect > 0:
        reason = f"the {ci_text} neither clears {band} nor lies inside it (p={d.p:.3g}{holm_text})"
    else:
        reason = f"the {ci_text} includes 0 (p={d.p:.3g}{holm_text})"
    d.seeds_for_power, power_text = seeds_for_power(d, pair, min_effect, m)
    return f"{d.diff:+.4g}: {reason}; {power_text}"


def seeds_for_power(d: Difference, pair: Pair, min_effect: float, m: int) -> tuple[int | None, str]:
    """Seeds per group for an 80% chance of a decided verdict if the true difference and
    spread were the observed ones: beyond +-d when |diff| > d, else inside the band (both
    edges: TOST); at the strictest Holm threshold of the call (0.05 / m). The example
    part of the variance does not shrink with seeds."""
    effect = abs(abs(d.diff) - min_effect)
    if effect == 0 or not d.se:
        where = f"sits on the edge of +-{min_effect:g}" if min_effect > 0 else "is 0"
        return None, f"no number of seeds would settle it: the observed difference {where}"
    ref, other, paired, _, _ = _arrays(pair)
    alpha = ALPHA / max(m, 1)

    def power(n: int) -> float:
        return float(power_at(_estimate_at(d, pair, np.array([float(n)]))[0], alpha, abs(d.diff), min_effect)[0])

    need = _first_reaching(power, 2, MAX_SEEDS)
    if need is None:
        example_var = _estimate_at(d, pair, np.array([2.0]))[1]
        at_most = f"{power(MAX_SEEDS):.0%} power at {MAX_SEEDS:,} seeds per group"
        if example_var > 0:
            return None, (
                f"more seeds cannot settle it ({at_most}): the test set's own sampling error "
                f"(se {math.sqrt(example_var):.2g}) is too large for this difference; only a larger test set would settle it"
            )
        return None, f"more than {MAX_SEEDS:,} seeds per group would be needed ({at_most})"
    against = f" against +-{min_effect:g}" if min_effect > 0 else ""
    at = f" at p < {alpha:.2g} (Holm's strictest step over {m} tests)" if m > 1 else ""
    return (
        need,
        f"about {need} seeds per group (now {len(ref)}) would give 80% power for {d.diff:+.3g}{against} at this spread{at}",
    )


def _first_reaching(power, lo: int, hi: int) -> int | None:
    """The smallest n in [lo, hi] with power(n) >= POWER, by bisection (power grows with n)."""
    if power(hi) < POWER:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if power(mid) >= POWER else (mid + 1, hi)
    return lo


def _estimate_at(d: Difference, pair: Pair, ns: np.ndarray) -> tuple[Estimate, float]:
    """The estimate's variance parts if each group had `ns` seeds at the observed spread
    (batched over ns), and the example part that does not shrink with seeds."""
    ref, other, paired, _, _ = _arrays(pair)
    if paired:
        seed_var_one = float(np.var(other - ref, ddof=1))
        seed_var, seed_df = seed_var_one / ns, ns - 1
        now = seed_var_one / len(ref)
    else:
        va, vb = float(np.var(ref, ddof=1)), float(np.var(other, ddof=1))
        seed_var = (va + vb) / ns
        seed_df = welch_df(va / ns, vb / ns, ns, ns)
        now = va / len(ref) + vb / len(other)
    example_var = max(d.se**2 - now, 0.0) if d.interval and "examples" in d.interval else 0.0
    big_n = len(next(iter(pair.ref_examples.values()))) if example_var > 0 else 2
    parts = [(seed_var, seed_df), (np.full_like(ns, example_var), np.full_like(ns, big_n - 1.0))]
    return Estimate(np.zeros_like(ns), parts, np.zeros(len(ns), dtype=bool), ""), example_var


def power_at(e: Estimate, alpha: float, size: float, min_effect: float = 0.0) -> np.ndarray:
    """P(a decided verdict) at level alpha if the true difference were `size` (>= 0):
    beyond the band when size > min_effect (the noncentral t: the t-test's power, exact
    for one part), else inside it (TOST: both edges)."""
    from scipy import stats

    crit = half_width(e, alpha) / e.se
    if size > min_effect:
        return stats.nct.sf(crit, e.df, (size - min_effect) / e.se)
    return tost_power(crit, e.se, e.df, min_effect - size, min_effect + size)


def tost_power(crit: np.ndarray, se: np.ndarray, df: np.ndarray, near: float, far: float) -> np.ndarray:
    """P(diff_hat - crit se_hat > -far and diff_hat + crit se_hat < near), diff_hat ~ N(0, se^2)
    (the truth sits `near` from one edge of the band and `far` from the other) and se_hat / se
    ~ sqrt(chi2(df) / df): averaged over 64 equal-probability quantiles of that ratio. Both
    edges count: at a true difference of 0, one edge's 80% power gives about 62% for both."""
    from scipy import stats

    k = (np.arange(64) + 0.5) / 64
    ratio = np.sqrt(stats.chi2.ppf(k[None, :], df[:, None]) / df[:, None])  # (ns, 64)
    width = crit[:, None] * ratio
    inside = stats.norm.cdf(near / se[:, None] - width) - stats.norm.cdf(-far / se[:, None] + width)
    return np.clip(inside, 0.0, None).mean(-1)


def mean_interval(values: list[float], quantum: float = 0.0) -> tuple[float, float] | None:
    """The 95% t-interval of one group's mean over its seeds (the test set taken as fixed):
    seed_estimate's paired t of the group against zero, so it follows the same rules as
    every difference here. None below 2 values, or when the values vary by less than
    one `quantum` (no seed noise measured)."""
    a = np.asarray(values, dtype=float)
    if len(a) < 2:
        return None
    tested = assess(seed_estimate(np.zeros((1, len(a))), a[None, :], paired=True, quantum=quantum))
    if np.isnan(tested.low[0]):
        return None
    return float(tested.low[0]), float(tested.high[0])
