"""Simulated seed groups with a known truth, fed through the code `compare` uses.

Two generators: per-seed metric values under a normal model (paired seeds share a seed
effect), and per-example test scores of a finite test set drawn from a population of
examples (seeds x test examples: the two sources of variance of Bouthillier et al.,
2021). `check` pushes R replicates through `stats` (estimate, test, verdict) in one
batch and returns the error rates; tests/test_stats_simulation.py holds them to their
bounds and bench/stats_simulation.py prints the full table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from masklab.analysis import stats

SEED_SD = 0.002  # per-seed noise of a metric, about what a small CNN shows on Fashion-MNIST
SHARED_SD = 0.003  # the part of it a seed shares between two recipes (paired designs)


@dataclass
class Rates:
    """What R simulated comparisons gave: rates of 'better'/'worse' verdicts and of
    intervals that hold the true difference; `se` is the simulation's own error of a rate."""

    n: int
    paired: bool
    truth: float
    decided: float  # share of better/worse verdicts (the false-positive rate when truth = 0)
    wrong_sign: float  # share of verdicts whose direction contradicts the truth
    coverage: float  # share of 95% intervals that hold the truth (nan: no interval was given)
    replicates: int

    @property
    def se(self) -> float:
        return float(np.sqrt(0.05 * 0.95 / self.replicates))


def seed_values(
    rng: np.random.Generator, replicates: int, n: int, paired: bool, truth: float, zero_spread: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed values (R, n) of a reference and another group. Paired seeds share a seed
    effect; unpaired groups have unequal spreads (Welch's case). `zero_spread`: every
    seed's difference is the same `truth` (one test image, say), as discrete metrics give."""
    base = 0.9 + rng.normal(0, SHARED_SD, (replicates, n))
    ref = base + rng.normal(0, SEED_SD, (replicates, n))
    if zero_spread:
        return ref, ref + truth
    if paired:
        return ref, base + truth + rng.normal(0, SEED_SD, (replicates, n))
    return ref, 0.9 + truth + rng.normal(0, 2 * SEED_SD, (replicates, n)) + rng.normal(0, SHARED_SD, (replicates, n))


def unbalanced_values(
    rng: np.random.Generator, replicates: int, n_ref: int, n_other: int, truth: float, spread: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed values (R, n_ref) and (R, n_other) of two groups with no seed in common, the
    other's seed-to-seed sd `spread` times the reference's (Welch's case, unequal sizes)."""
    ref = 0.9 + rng.normal(0, SEED_SD, (replicates, n_ref))
    return ref, 0.9 + truth + rng.normal(0, spread * SEED_SD, (replicates, n_other))


def skewed_values(
    rng: np.random.Generator, replicates: int, n: int, paired: bool, truth: float, sigma: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed values whose paired differences (or, unpaired, the other group's values) are
    lognormal(0, sigma) shifted to mean `truth` and scaled to sd 2 SEED_SD: a recipe that
    usually costs a little and now and then gains a lot (a seed that fails in the reference
    does the same). Unpaired, the reference is normal with the same sd."""
    shape = rng.lognormal(0, sigma, (replicates, n))
    mean, sd = np.exp(sigma**2 / 2), np.sqrt((np.exp(sigma**2) - 1) * np.exp(sigma**2))
    skewed = (shape - mean) / sd * 2 * SEED_SD
    base = 0.9 + rng.normal(0, SHARED_SD, (replicates, n))
    if paired:
        return base, base + truth + skewed
    return 0.9 + rng.normal(0, 2 * SEED_SD, (replicates, n)), 0.9 + truth + skewed


def example_scores(
    rng: np.random.Generator,
    replicates: int,
    n: int,
    paired: bool,
    truth: float,
    examples: int = 1000,
    seed_sd: float = 0.02,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-example correctness (R, n, N) of two recipes on a test set of N examples drawn
    afresh in every replicate. 85% of examples are easy (right with probability 0.98);
    on the hard 15% each recipe has its own preference (+-0.25 in the chance of being
    right) and every seed shifts the chance by its own amount. The population difference
    in accuracy is exactly `truth`."""
    hard = rng.random((replicates, 1, examples)) < 0.15
    q = np.where(hard, rng.uniform(0.35, 0.65, (replicates, 1, examples)), 0.98)
    prefer = np.where(rng.random((replicates, 1, examples)) < 0.5, -0.125, 0.125)
    shift = truth / 0.15  # the hard examples carry the whole difference
    seed_ref = rng.normal(0, seed_sd, (replicates, n, 1))
    seed_other = seed_ref if paired else rng.normal(0, seed_sd, (replicates, n, 1))
    p_ref = np.where(hard, q - prefer + seed_ref, q)
    p_other = np.where(hard, q + prefer + shift + seed_other + rng.normal(0, seed_sd / 2, (replicates, n, 1)), q)
    ref = (rng.random((replicates, n, examples)) < p_ref).astype(np.float32)
    other = (rng.random((replicates, n, examples)) < p_other).astype(np.float32)
    return ref, other


def two_way_scores(
    rng: np.random.Generator,
    replicates: int,
    n: int,
    truth: float,
    seed_sd: float,
    example_sd: float,
    examples: int = 500,
    noise_sd: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Continuous per-example scores (R, n, N) of two paired recipes under a Gaussian
    two-way model: difference = truth + example effect + seed effect + noise, with the
    example effects drawn afresh (the test set is a sample) and population mean `truth`.
    A large `seed_sd` is the regime where the seeds, not the examples, carry the noise."""
    example = rng.normal(0, example_sd, (replicates, 1, examples))
    seed = rng.normal(0, seed_sd, (replicates, n, 1))
    ref = np.zeros((replicates, n, examples))
    return ref, truth + example + seed + rng.normal(0, noise_sd, (replicates, n, examples))


def rates(
    ref: np.ndarray, other: np.ndarray, paired: bool, truth: float, quantum: float = 0.0, examples: bool = False
) -> Rates:
    """Feed R comparisons through stats: estimate -> assess -> classify (a family of one each)."""
    e = (
        stats.example_estimate(ref, other, paired, quantum)
        if examples
        else stats.seed_estimate(ref, other, paired, quantum)
    )
    t = stats.assess(e)
    shape = stats.shapiro_p(ref.mean(-1), other.mean(-1), paired) if examples else stats.shapiro_p(ref, other, paired)
    words = stats.classify(e.diff, t.low, t.high, t.p, t.p_equiv, shape_p=shape)
    decided = np.isin(words, (stats.BETTER, stats.WORSE))
    wrong = decided & ((words == stats.BETTER) != (truth > 0)) if truth else decided
    has_interval = ~np.isnan(t.low)
    cover = (t.low <= truth) & (truth <= t.high)
    n = ref.shape[-2] if examples else other.shape[-1]
    return Rates(
        n,
        paired,
        truth,
        float(decided.mean()),
        float(wrong.mean()),
        float(cover[has_interval].mean()) if has_interval.any() else float("nan"),
        len(e.diff),
    )


# --- sequential designs: a study of m variants against one reference ---------------------


def family_values(
    rng: np.random.Generator, replicates: int, seeds: int, truths: list[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed values of a reference (R, N) and m variants (R, m, N) on the same seeds: a
    seed effect shared by all groups, and each group's own noise (the reference's is in
    every comparison, so the m comparisons are correlated as in a real study)."""
    base = 0.9 + rng.normal(0, SHARED_SD, (replicates, 1, seeds))
    ref = base[:, 0] + rng.normal(0, SEED_SD, (replicates, seeds))
    truth = np.asarray(truths, dtype=float)[None, :, None]
    return ref, base + truth + rng.normal(0, SEED_SD, (replicates, len(truths), seeds))


def look_estimates(looks: tuple[int, ...], ref: np.ndarray, others: np.ndarray, quantum: float = 0.0):
    """Paired estimates at every look, (R, m, K) each: diff, se, df and blocked (zero spread
    or a skewed sample), through stats.seed_estimate and stats.shapiro_p."""
    r, m, _ = others.shape
    parts = []
    for n in looks:
        a = np.repeat(ref[:, None, :n], m, axis=1).reshape(r * m, n)
        b = others[:, :, :n].reshape(r * m, n)
        e = stats.seed_estimate(a, b, True, quantum)
        with np.errstate(invalid="ignore"):
            blocked = e.zero_spread | (stats.shapiro_p(a, b, True) < stats.SHAPE_ALPHA)
        parts.append([x.reshape(r, m) for x in (e.diff, e.se, e.df[: r * m] * np.ones(r * m), blocked)])
    return tuple(np.stack([p[i] for p in parts], axis=-1) for i in range(4))


@dataclass
class SequentialRates:
    """What R simulated studies gave under a sequential design (or the fixed one)."""

    familywise: float  # share of studies with a better/worse verdict on a comparison with no true difference
    wrong_sign: float  # share of studies with a verdict whose direction contradicts a true difference
    coverage: float  # share of final intervals that hold their comparison's truth
    power: float  # share of comparisons with a true difference decided in its direction
    seeds: float  # mean seeds per group a comparison used
    study_seeds: float  # mean seeds the whole study trained (reference + variants)
    replicates: int


def sequential_rates(design, ref: np.ndarray, others: np.ndarray, truths: list[float], quantum: float = 0.0):
    """Run R studies through sequential.run_looks and score them against the truth."""
    from masklab.analysis import sequential

    diff, se, df, blocked = look_estimates(design.looks, ref, others, quantum)
    out = sequential.run_looks(design, diff, se, df, True, blocked)
    seeds = np.asarray(design.looks)[out.look]  # (R, m)
    study = seeds.max(1) + seeds.sum(1)  # the reference runs as long as its longest comparison
    return _score(out.decision, out.low, out.high, truths, seeds, study)


def fixed_rates(seeds: int, ref: np.ndarray, others: np.ndarray, truths: list[float], quantum: float = 0.0):
    """The fixed design: every group at `seeds` seeds, compare's paired t with Holm over the m
    comparisons (and its shape check), one look."""
    r, m, _ = others.shape
    diff, se, df, blocked = (x[..., 0] for x in look_estimates((seeds,), ref, others, quantum))
    e = stats.Estimate(diff.ravel(), [(se.ravel() ** 2, df.ravel())], np.zeros(r * m, dtype=bool), "paired-t")
    t = stats.assess(e)
    p = np.where(blocked.ravel(), np.nan, t.p).reshape(r, m)
    adjusted = np.array([[np.nan if v is None else v for v in stats.holm(list(row))] for row in p]).ravel()
    words = stats.classify(e.diff, t.low, t.high, adjusted, t.p_equiv).reshape(r, m)
    n = np.full((r, m), seeds)
    return _score(words, t.low.reshape(r, m), t.high.reshape(r, m), truths, n, np.full(r, seeds * (m + 1)))


def _score(words, low, high, truths, seeds, study) -> SequentialRates:
    truth = np.broadcast_to(np.asarray(truths, dtype=float), words.shape)
    called = np.isin(words, (stats.BETTER, stats.WORSE))
    up = words == stats.BETTER
    false = called & (truth == 0)
    wrong = called & (truth != 0) & (up != (truth > 0))
    right = called & (truth != 0) & (up == (truth > 0))
    with np.errstate(invalid="ignore"):
        covered = (low <= truth) & (truth <= high)
    has = ~np.isnan(low)
    effect = truth != 0
    return SequentialRates(
        float(false.any(1).mean()),
        float(wrong.any(1).mean()),
        float(covered[has].mean()) if has.any() else float("nan"),
        float(right[effect].mean()) if effect.any() else float("nan"),
        float(seeds.mean()),
        float(study.mean()),
        len(words),
    )


def peeking_rate(rng: np.random.Generator, replicates: int, first: int, last: int) -> float:
    """The naive rule: a paired t-test after every seed from `first` to `last`, stopping at
    the first p < 0.05. Its false better/worse rate under no difference."""
    ref, other = seed_values(rng, replicates, last, True, 0.0)
    hit = np.zeros(replicates, dtype=bool)
    for n in range(first, last + 1):
        t = stats.assess(stats.seed_estimate(ref[:, :n], other[:, :n], True))
        hit |= np.nan_to_num(t.p, nan=1.0) < stats.ALPHA
    return float(hit.mean())
