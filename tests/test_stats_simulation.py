"""The statistics hold their stated error rates: seeded simulations with a known truth,
fed through the functions `compare` uses (stats.seed_estimate / example_estimate ->
stats.assess -> stats.classify, Holm over a family). Bounds: a better/worse verdict under
no difference at most 5% (+ 3 simulation standard errors); 95% intervals hold the truth
at least 94% of the time at every n; power is printed (-s) and must grow with n."""

from __future__ import annotations

import numpy as np
import pytest

from masklab.analysis import simulate as sim, stats

NS = (2, 3, 5, 10)
QUANTUM = 1e-4  # one image of a 10,000-image test set


def bound(r: sim.Rates) -> float:
    return 0.05 + 3 * r.se


@pytest.mark.parametrize("paired", [True, False], ids=["paired", "unpaired"])
def test_seed_level_false_positives_coverage_and_power(paired):
    rng = np.random.default_rng(11 if paired else 12)
    power = []
    for n in NS:
        null = sim.rates(*sim.seed_values(rng, 4000, n, paired, 0.0), paired, 0.0, QUANTUM)
        assert null.decided <= bound(null), null
        assert null.coverage >= 0.94, null
        effect = sim.rates(*sim.seed_values(rng, 4000, n, paired, 0.004), paired, 0.004, QUANTUM)
        assert effect.coverage >= 0.94, effect
        assert effect.wrong_sign <= 0.01, effect
        power.append(effect.decided)
    print(f"power for +0.004 ({'paired' if paired else 'unpaired'}), n={NS}: {np.round(power, 3).tolist()}")
    assert power == sorted(power) and power[-1] > 0.4


@pytest.mark.parametrize("jitter", [0.0, 0.4], ids=["constant", "within-one-image"])
def test_zero_spread_differences_are_never_called(jitter):
    """Every seed gains exactly one image (or one image give or take less than one):
    a t-test says p = 0; masklab gives no p and no verdict."""
    rng = np.random.default_rng(3)
    for n in NS:
        ref, other = sim.seed_values(rng, 2000, n, True, QUANTUM, zero_spread=True)
        other = other + rng.uniform(-jitter, jitter, other.shape) * QUANTUM / np.sqrt(n)
        r = sim.rates(ref, other, True, QUANTUM, QUANTUM)
        assert r.decided == 0.0 and np.isnan(r.coverage), r
    d = stats.compare_values({0: 0.9, 1: 0.91, 2: 0.92}, {0: 0.9001, 1: 0.9101, 2: 0.9201}, quantum=QUANTUM)
    assert (d.verdict, d.p, d.ci) == (stats.INCONCLUSIVE, None, None)
    assert "identical to within one test example" in d.why


@pytest.mark.parametrize("paired", [True, False], ids=["paired", "unpaired"])
def test_seeds_x_examples_holds_its_level_for_the_population(paired):
    """Test sets drawn from a population of examples: the two-source interval covers the
    population difference; the seed-only interval, which treats the test set as fixed,
    does not at 10 seeds (the audit's point: the test set is a sample too)."""
    rng = np.random.default_rng(21 if paired else 22)
    power = []
    for n in NS:
        ref, other = sim.example_scores(rng, 1000, n, paired, 0.0, examples=400)
        null = sim.rates(ref, other, paired, 0.0, 1 / 400, examples=True)
        assert null.decided <= bound(null) and null.coverage >= 0.94, null
        ref, other = sim.example_scores(rng, 1000, n, paired, 0.01, examples=400)
        effect = sim.rates(ref, other, paired, 0.01, 1 / 400, examples=True)
        assert effect.coverage >= 0.94 and effect.wrong_sign <= 0.01, effect
        power.append(effect.decided)
    seed_only = sim.rates(ref.mean(-1), other.mean(-1), paired, 0.01, 1 / 400)
    assert seed_only.coverage < 0.92, seed_only
    print(f"power for +0.01 over seeds x examples, n={NS}: {np.round(power, 3).tolist()}")
    assert power == sorted(power)


@pytest.mark.parametrize("seed_sd, example_sd", [(0.05, 0.3), (0.05, 0.0), (0.0, 0.3)])
def test_seeds_x_examples_holds_its_level_whichever_source_dominates(seed_sd, example_sd):
    rng = np.random.default_rng(31)
    for n in NS:
        r = sim.rates(*sim.two_way_scores(rng, 1000, n, 0.0, seed_sd, example_sd), True, 0.0, examples=True)
        assert r.decided <= bound(r) and r.coverage >= 0.94, r


def test_one_image_gained_by_every_seed_is_not_significant_per_example():
    """The zero-spread case with stored predictions: the example part decides."""
    rng = np.random.default_rng(5)
    ref = {s: (rng.random(10_000) < 0.9).astype(float) for s in range(3)}
    other = {}
    for s, r in ref.items():
        o = r.copy()
        o[np.nonzero(r == 0)[0][0]] = 1.0  # exactly one more image right, every seed
        other[s] = o
    pair = stats.Pair(
        {s: r.mean() for s, r in ref.items()},
        {s: o.mean() for s, o in other.items()},
        quantum=1e-4,
        ref_examples=ref,
        other_examples=other,
    )
    (d,) = stats.compare_family([pair])
    assert d.verdict == stats.INCONCLUSIVE and d.interval == "paired-t x examples"
    assert d.diff == pytest.approx(1e-4) and d.p > 0.2 and d.ci[0] < 0 < d.ci[1]


def test_holm_keeps_the_familywise_error_over_many_metrics():
    """Seven metrics with no difference, 3 paired seeds: unadjusted, some verdict fires in
    about 30% of compare calls; with Holm, in at most 5%."""
    rng = np.random.default_rng(8)
    families, metrics, n = 3000, 7, 3
    ref, other = sim.seed_values(rng, families * metrics, n, True, 0.0)
    e = stats.seed_estimate(ref, other, True, QUANTUM)
    t = stats.assess(e)
    p = t.p.reshape(families, metrics)
    raw = (p < 0.05).any(1).mean()
    adjusted = np.array([stats.holm(list(row)) for row in p], dtype=float)
    words = stats.classify(e.diff, t.low, t.high, adjusted.ravel(), t.p_equiv).reshape(families, metrics)
    familywise = np.isin(words, (stats.BETTER, stats.WORSE)).any(1).mean()
    assert raw > 0.25 and familywise <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / families), (raw, familywise)


@pytest.mark.parametrize("n_ref, n_other", [(10, 2), (10, 3), (20, 3), (5, 2), (20, 5), (2, 2), (3, 3), (40, 4)])
def test_unpaired_groups_of_any_sizes_hold_their_level(n_ref, n_other):
    """No seed in common, unequal sizes and spreads (the other group's sd 1/4 to 8 times the
    reference's): Welch's df gave up to 12% false verdicts at 10 seeds against 2; Hsu's df
    below 5 seeds, Welch's capped above, hold 5% whatever the spreads."""
    rng = np.random.default_rng(n_ref * 100 + n_other)
    for spread in (0.25, 1.0, 2.0, 8.0):
        r = sim.rates(*sim.unbalanced_values(rng, 4000, n_ref, n_other, 0.0, spread), False, 0.0, QUANTUM)
        assert r.decided <= bound(r) and r.coverage >= 0.94, (spread, r)


def test_skewed_differences_hold_their_level_from_twenty_seeds_and_the_check_costs_little():
    """Lognormal(1) per-seed differences: a t verdict alone is false 11-18% of the time at
    3-20 seeds; refusing one when Shapiro-Wilk says the differences are skewed holds 5%
    from 20 seeds. Below that no check can tell (printed with -s: the README states the
    assumption). Under normal differences the check refuses about 5% of verdicts."""
    rng = np.random.default_rng(41)
    for n in (20, 30):
        r = sim.rates(*sim.skewed_values(rng, 4000, n, True, 0.0), True, 0.0, QUANTUM)
        assert r.decided <= bound(r), r
    small = [sim.rates(*sim.skewed_values(rng, 4000, n, True, 0.0), True, 0.0, QUANTUM).decided for n in (3, 5, 10)]
    print(f"false verdicts under lognormal(1) differences at 3, 5, 10 seeds: {np.round(small, 3).tolist()}")
    ref, other = sim.seed_values(rng, 4000, 10, True, 0.01)  # a clear gain, normal differences
    shape = stats.shapiro_p(ref, other, True)
    refused = float((shape < stats.SHAPE_ALPHA).mean())
    assert 0.03 < refused < 0.07, refused
    assert sim.rates(ref, other, True, 0.01, QUANTUM).decided == pytest.approx(1 - refused, abs=0.01)
