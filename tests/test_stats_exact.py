"""masklab.analysis.stats to exact values, against scipy and hand computation: the fast
tests that mutation testing runs on the statistics (tools/mutation.py stats)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from masklab.analysis import stats

REF = {0: 0.80, 1: 0.82, 2: 0.79, 3: 0.81}
GAIN = {0: 0.83, 1: 0.84, 2: 0.80, 3: 0.85}  # per-seed gains .03 .02 .01 .04


def test_describe():
    d = stats.describe([0.8, 0.82, 0.79, 0.81])
    assert (d.n, d.min, d.max) == (4, 0.79, 0.82)
    assert d.mean == pytest.approx(0.805) and d.std == pytest.approx(np.std([0.8, 0.82, 0.79, 0.81], ddof=1))
    assert stats.describe([0.5]).as_dict() == {"n": 1, "mean": 0.5, "std": None, "min": 0.5, "max": 0.5}


def test_paired_estimate_interval_and_p_are_scipys():
    ref, other = np.array([list(REF.values())]), np.array([list(GAIN.values())])
    e = stats.seed_estimate(ref, other, paired=True)
    d = other[0] - ref[0]
    assert e.method == "paired-t" and e.diff[0] == pytest.approx(d.mean())
    ((var, df),) = e.parts
    assert var[0] == pytest.approx(d.var(ddof=1) / 4) and df[0] == 3.0 and e.df[0] == 3.0
    assert e.se[0] == pytest.approx(math.sqrt(d.var(ddof=1) / 4)) and not e.zero_spread[0]
    t = stats.assess(e)
    res = sps.ttest_rel(other[0], ref[0])
    ci = res.confidence_interval()
    assert (t.low[0], t.high[0]) == pytest.approx((ci.low, ci.high)) and t.p[0] == pytest.approx(res.pvalue)
    assert np.isnan(t.p_equiv[0])
    # with a smallest effect that matters: p of "beyond +-0.01", TOST p of "inside +-0.05"
    se = e.se[0]
    assert stats.assess(e, 0.01).p[0] == pytest.approx(2 * sps.t.sf((0.025 - 0.01) / se, 3))
    assert stats.assess(e, 0.05).p_equiv[0] == pytest.approx(2 * sps.t.sf((0.05 - 0.025) / se, 3))
    assert stats.assess(e, 0.05).p[0] == 1.0  # the difference lies inside the band: no evidence beyond it


def test_welch_estimate_is_scipys():
    """Equal groups of 5 or more seeds: scipy's Welch test, to the digit."""
    a, b = np.array([0.8, 0.82, 0.79, 0.81, 0.80]), np.array([0.83, 0.86, 0.80, 0.88, 0.84])
    e = stats.seed_estimate(a[None], b[None], paired=False)
    res = sps.ttest_ind(b, a, equal_var=False)
    ci = res.confidence_interval()
    t = stats.assess(e)
    assert e.method == "welch-t" and e.parts[0][1][0] == pytest.approx(res.df)
    assert (t.low[0], t.high[0]) == pytest.approx((ci.low, ci.high)) and t.p[0] == pytest.approx(res.pvalue)


def test_welch_df_below_five_seeds_or_unequal_groups():
    """Welch's statistic and variance; the df is Hsu's min(n) - 1 below 5 seeds in the
    smaller group, else Welch's capped at (n_min - 1)(1 + (n_min / n_max)^2)."""
    a, b = np.array([0.8, 0.82, 0.79]), np.array([0.83, 0.86, 0.80, 0.88, 0.84])
    e = stats.seed_estimate(a[None], b[None], paired=False)
    res = sps.ttest_ind(b, a, equal_var=False)
    t = stats.assess(e)
    assert e.parts[0][1][0] == 2.0 and res.df > 5  # Hsu: min(3, 5) - 1
    assert t.p[0] == pytest.approx(2 * sps.t.sf(abs(res.statistic), 2))
    assert t.high[0] - t.low[0] == pytest.approx(2 * sps.t.ppf(0.975, 2) * e.se[0])
    rng = np.random.default_rng(4)
    small, large = rng.normal(0, 1, 6), rng.normal(0, 1.4, 12)  # the two means about equally uncertain
    e = stats.seed_estimate(large[None], small[None], paired=False)
    welch = sps.ttest_ind(small, large, equal_var=False).df
    assert welch > 5 * (1 + (6 / 12) ** 2) and e.parts[0][1][0] == pytest.approx(5 * 1.25)
    e = stats.seed_estimate(small[None, :5], large[None, :5], paired=False)  # equal groups: no cap
    assert e.parts[0][1][0] == pytest.approx(sps.ttest_ind(large[:5], small[:5], equal_var=False).df)
    assert list(stats.welch_df(np.array([1.0, 1.0]), np.array([1.0, 0.0]), 2, 10)) == [1.0, 1.0]


def test_zero_spread_is_flagged_by_the_quantum():
    ref, other = np.array([[0.8, 0.81, 0.82]]), np.array([[0.805, 0.815, 0.8251]])  # gains .005, .005, .0051
    assert stats.seed_estimate(ref, other, True, quantum=0.005).zero_spread[0]
    assert not stats.seed_estimate(ref, other, True, quantum=0.0).zero_spread[0]  # 1e-4 spread > 1e-9
    t = stats.assess(stats.seed_estimate(ref, other, True, quantum=0.005))
    assert np.isnan(t.low[0]) and np.isnan(t.p[0])
    welch = stats.seed_estimate(np.array([[0.8, 0.8, 0.8]]), np.array([[0.9, 0.9, 0.9]]), False)
    assert welch.zero_spread[0]


def test_example_estimate_by_hand():
    rng = np.random.default_rng(3)
    ref = (rng.random((3, 50)) < 0.8).astype(float)
    other = (rng.random((3, 50)) < 0.85).astype(float)
    e = stats.example_estimate(ref[None], other[None], paired=True)
    d = other - ref
    r = d - d.mean(1, keepdims=True) - d.mean(0, keepdims=True) + d.mean()
    residual = (r * r).sum() / (2 * 49)
    seed_var = d.mean(1).var(ddof=1) / 3
    example_var = max(d.mean(0).var(ddof=1) - residual / 3, 0.0) / 50
    (sv, sdf), (ev, edf) = e.parts
    assert e.method == "paired-t x examples" and e.diff[0] == pytest.approx(d.mean())
    assert (sv[0], sdf[0], ev[0], edf[0]) == pytest.approx((seed_var, 2.0, example_var, 49.0))
    half = math.sqrt(sps.t.ppf(0.975, 2) ** 2 * seed_var + sps.t.ppf(0.975, 49) ** 2 * example_var)
    assert stats.half_width(e, 0.05)[0] == pytest.approx(half)
    t = stats.assess(e)
    assert t.high[0] - t.low[0] == pytest.approx(2 * half)
    # the p inverts the interval: the (1 - p) interval's half-width is the distance to 0
    assert stats.half_width(e, t.p[0])[0] == pytest.approx(abs(d.mean()), rel=1e-6)
    assert stats.two_sided_p(e, np.array([-0.1]))[0] == 1.0
    # an effective df whose t quantile gives the same 95% half-width
    assert sps.t.ppf(0.975, e.df[0]) * e.se[0] == pytest.approx(half, rel=1e-3)

    welch = stats.example_estimate(ref[None], other[None, :2], paired=False)
    noise = sum(
        ((x - x.mean(1, keepdims=True) - x.mean(0, keepdims=True) + x.mean()) ** 2).sum() / ((len(x) - 1) * 49) / len(x)
        for x in (ref, other[:2])
    )
    per_example = other[:2].mean(0) - ref.mean(0)
    assert welch.method == "welch-t x examples"
    assert welch.parts[1][0][0] == pytest.approx(max(per_example.var(ddof=1) - noise, 0.0) / 50)


def test_df_for_quantile_inverts_the_t_quantile():
    for df in (2.0, 5.0, 30.0, 400.0):
        assert stats._df_for_quantile(np.array([sps.t.ppf(0.975, df)]))[0] == pytest.approx(df, rel=1e-3)


@pytest.mark.parametrize(
    "low, high, p, p_eq, me, hib, word",
    [
        (0.01, 0.03, 0.01, np.nan, 0.0, True, "better"),
        (0.01, 0.03, 0.01, np.nan, 0.0, False, "worse"),
        (-0.03, -0.01, 0.01, np.nan, 0.0, True, "worse"),
        (-0.03, -0.01, 0.01, np.nan, 0.0, False, "better"),
        (0.01, 0.03, 0.06, np.nan, 0.0, True, "inconclusive"),  # not after Holm
        (0.01, 0.03, 0.01, np.nan, 0.02, True, "inconclusive"),  # does not clear the band
        (-0.01, 0.01, 0.5, 0.01, 0.02, True, "equivalent"),
        (-0.01, 0.01, 0.5, 0.06, 0.02, True, "inconclusive"),
        (-0.01, 0.03, 0.5, 0.01, 0.02, True, "inconclusive"),  # reaches outside the band
        (0.021, 0.03, 0.04, np.nan, 0.02, True, "better"),
        (0.0, 0.03, 0.04, np.nan, 0.0, True, "inconclusive"),  # touches 0
    ],
)
def test_classify(low, high, p, p_eq, me, hib, word):
    got = stats.classify(
        np.array([(low + high) / 2]), np.array([low]), np.array([high]), np.array([p]), np.array([p_eq]), me, hib
    )
    assert list(got) == [word]


def test_holm():
    assert stats.holm([0.01, 0.04, 0.03, None, float("nan")]) == pytest.approx([0.03, 0.06, 0.06, None, None])
    assert stats.holm([0.5, 0.6]) == [1.0, 1.0]
    assert stats.holm([0.04]) == [0.04] and stats.holm([]) == []
    assert stats.holm([0.001, 0.2, 0.03]) == pytest.approx([0.003, 0.2, 0.06])


def test_clopper_pearson_is_scipys_exact_interval():
    for k, n in ((3, 10), (0, 5), (5, 5), (17, 40)):
        low, high = stats.clopper_pearson(np.array(k), n)
        ci = sps.binomtest(k, n).proportion_ci(method="exact")
        assert (float(low), float(high)) == pytest.approx((ci.low, ci.high))


def test_outperform():
    ref, other = np.array([[0.8, 0.8, 0.9]]), np.array([[0.9, 0.8, 0.85]])  # a win, a tie, a loss
    share, low, high = stats.outperform(ref, other, paired=True)
    assert share[0] == 0.5
    ci = sps.binomtest(1, 3).proportion_ci(method="exact")  # 1.5 of 3, ties half: between k=1 and k=2
    assert 0.0 <= low[0] <= ci.high and high[0] >= 0.5
    assert stats.outperform(ref, other, paired=True, higher_is_better=False)[0][0] == 0.5
    share, low, high = stats.outperform(np.array([[0.1, 0.2]]), np.array([[0.3, 0.4, 0.15]]), paired=False)
    assert share[0] == pytest.approx(5 / 6)  # 0.15 loses to 0.2 only
    lo, hi = stats.clopper_pearson(np.array(5 / 6 * 2), 2.0)  # min(n, m) = 2 pairs
    assert (low[0], high[0]) == pytest.approx((float(lo), float(hi)))
    assert stats.outperform(np.array([[0.1, 0.2]]), np.array([[0.3, 0.4, 0.15]]), False, False)[0][0] == pytest.approx(
        1 / 6
    )


def test_mcnemar_exact():
    ref = np.array([1, 1, 1, 0, 0, 1, 1, 0, 1, 1], float)
    other = np.array([1, 0, 1, 1, 1, 1, 1, 1, 1, 1], float)
    p, ci, method, text = stats.mcnemar(ref, other)
    assert method == "mcnemar-exact" and p == pytest.approx(sps.binomtest(3, 4, 0.5).pvalue)
    lo, hi = stats.clopper_pearson(np.array(3), 4)
    assert ci == pytest.approx((0.4 * (2 * float(lo) - 1), 0.4 * (2 * float(hi) - 1)))
    assert text == (
        "the models disagree on 4 examples, 3 right only in this run and 1 only in the reference: "
        f"McNemar's exact p={p:.3g}"
    )
    assert stats.mcnemar(ref, ref) == (1.0, (0.0, 0.0), "mcnemar-exact", "the two models agree on every test example")


def test_single_runs():
    d = stats.compare_values({0: 0.8}, {0: 0.9})
    assert (d.verdict, d.ci, d.p, d.interval, d.n) == ("too few seeds", None, None, None, (1, 1))
    assert d.why == "n=1: one run per group measures no seed noise; the recipes cannot be compared; add seeds"
    assert d.diff == pytest.approx(0.1)
    a, b = np.array([1.0, 0, 1, 1, 0, 1]), np.array([1.0, 1, 1, 1, 1, 0])
    pair = stats.Pair({0: a.mean()}, {0: b.mean()}, ref_examples={0: a}, other_examples={0: b})
    (d,) = stats.compare_family([pair])
    assert d.interval == "mcnemar-exact" and d.p == pytest.approx(sps.binomtest(2, 3, 0.5).pvalue)
    assert d.why.endswith("; that says whether these two models differ, not the recipes")
    ra, rb = np.array([0.5, 0.7, 0.2, 0.9]), np.array([0.6, 0.9, 0.3, 0.8])
    pair = stats.Pair({0: ra.mean()}, {0: rb.mean()}, ref_examples={0: ra}, other_examples={0: rb})
    (d,) = stats.compare_family([pair])
    assert d.interval == "examples-t" and d.p == pytest.approx(sps.ttest_rel(rb, ra).pvalue)
    assert d.ci == pytest.approx(tuple(sps.ttest_rel(rb, ra).confidence_interval()))
    assert f"a paired t over the 4 test examples gives p={d.p:.3g}" in d.why


def test_verdict_words_and_whys():
    better = stats.compare_values(REF, GAIN)
    res = sps.ttest_rel(list(GAIN.values()), list(REF.values()))
    ci = res.confidence_interval()
    assert better.verdict == "better" and better.paired and better.n == (4, 4) and better.interval == "paired-t"
    assert better.p == pytest.approx(res.pvalue) and better.p_adj == better.p
    assert better.why == f"+0.025: the 95% CI [{ci.low:+.4g}, {ci.high:+.4g}] lies above 0; p={res.pvalue:.3g}"
    assert better.seeds_for_power is None and better.se == pytest.approx(res.statistic and 0.025 / res.statistic)
    assert better.df == 3.0

    worse = stats.compare_values(REF, GAIN, higher_is_better=False)
    assert worse.verdict == "worse" and worse.why == better.why

    down = stats.compare_values(GAIN, REF)
    assert down.verdict == "worse" and down.why.startswith("-0.025: the 95% CI") and "lies below 0" in down.why

    equal = stats.compare_values(REF, GAIN, min_effect=0.1)
    assert equal.verdict == "equivalent" and equal.why.startswith("+0.025: the 95% CI")
    assert f"lies inside +-0.1; TOST p (2 x the usual: 2.5% a side)={equal.p_equiv:.3g}" in equal.why

    beyond = stats.compare_values(REF, GAIN, min_effect=0.001)
    assert beyond.verdict == "better" and "lies above +0.001;" in beyond.why
    with pytest.raises(ValueError):
        stats.compare_values(REF, GAIN, min_effect=-0.1)


def test_inconclusive_whys_and_seeds_for_power():
    other = {0: 0.81, 1: 0.80, 2: 0.80, 3: 0.83}  # gains .01 -.02 .01 .02
    d = stats.compare_values(REF, other)
    gains = np.array([0.01, -0.02, 0.01, 0.02])
    res = sps.ttest_rel(list(other.values()), list(REF.values()))
    assert d.verdict == "inconclusive" and d.p == pytest.approx(res.pvalue)
    # 80% power at the observed mean and spread, by the noncentral t (computed here directly)
    sd = gains.std(ddof=1)
    need = next(
        n
        for n in range(2, 10_001)
        if sps.nct.sf(sps.t.ppf(0.975, n - 1), n - 1, abs(gains.mean()) / (sd / math.sqrt(n))) >= 0.8
    )
    assert d.seeds_for_power == need
    ci = res.confidence_interval()
    assert d.why == (
        f"+0.005: the 95% CI [{ci.low:+.4g}, {ci.high:+.4g}] includes 0 (p={d.p:.3g}); "
        f"about {need} seeds per group (now 4) would give 80% power for +0.005 at this spread"
    )

    zero = stats.compare_values({0: 0.8, 1: 0.81}, {0: 0.81, 1: 0.82}, quantum=0.005)
    assert zero.verdict == "inconclusive" and zero.ci is None and zero.p is None
    assert "identical to within one test example" in zero.why

    nothing = stats.compare_values(REF, {s: v + 0.0 for s, v in REF.items()})
    assert nothing.verdict == "inconclusive" and nothing.diff == 0.0

    far = stats.compare_values(REF, other, min_effect=0.0049)
    assert far.seeds_for_power is None
    assert far.why.endswith("more than 10,000 seeds per group would be needed (8% power at 10,000 seeds per group)")
    neither = stats.compare_values(REF, other, min_effect=0.002)
    assert "neither clears +-0.002 nor lies inside it" in neither.why and "against +-0.002" in neither.why


def test_holm_over_a_family_is_in_the_verdicts_and_whys():
    weak = {0: 0.81, 1: 0.83, 2: 0.79, 3: 0.84}  # gains .01 .01 0 .03: p about 0.1
    pairs = [stats.Pair(REF, GAIN), stats.Pair(REF, weak), stats.Pair(REF, GAIN)]
    out = stats.compare_family(pairs)
    ps = [d.p for d in out]
    assert [d.p_adj for d in out] == pytest.approx(stats.holm(ps))
    assert ", Holm-adjusted over 3 tests:" in out[0].why or out[0].verdict != "better"
    assert "Holm's strictest step over 3 tests" in out[1].why and "p < 0.017" in out[1].why
    unpaired = stats.compare_values({0: 0.8, 1: 0.82, 2: 0.79}, {5: 0.83, 6: 0.86, 7: 0.84})
    res = sps.ttest_ind([0.83, 0.86, 0.84], [0.8, 0.82, 0.79], equal_var=False)
    assert not unpaired.paired and unpaired.interval == "welch-t" and unpaired.df == 2.0  # Hsu's df at 3 seeds
    assert unpaired.p == pytest.approx(2 * sps.t.sf(res.statistic, 2))


def test_bca_from_forty_seeds_is_scipys_seeded_bootstrap():
    rng = np.random.default_rng(1)
    ref = {s: 0.8 + 0.01 * rng.standard_normal() for s in range(40)}
    other = {s: v + 0.005 + 0.01 * rng.standard_normal() for s, v in ref.items()}
    d = stats.compare_values(ref, other)
    diffs = np.array([other[s] - ref[s] for s in range(40)])
    res = sps.bootstrap((diffs,), np.mean, method="BCa", n_resamples=9999, rng=np.random.default_rng(0))
    assert d.interval == "bca" and d.ci == (res.confidence_interval.low, res.confidence_interval.high)
    thirty_nine = stats.compare_values({s: ref[s] for s in range(39)}, {s: other[s] for s in range(39)})
    assert thirty_nine.interval == "paired-t"
    lo, hi = stats.bca_interval(np.array(list(ref.values())), np.array(list(other.values())), paired=False)
    res = sps.bootstrap(
        (np.array(list(other.values())), np.array(list(ref.values()))),
        lambda a, b, axis=-1: a.mean(axis) - b.mean(axis),
        method="BCa",
        n_resamples=9999,
        rng=np.random.default_rng(0),
    )
    assert (lo, hi) == (res.confidence_interval.low, res.confidence_interval.high)


def test_difference_as_dict():
    d = stats.compare_values(REF, GAIN).as_dict()
    assert isinstance(d["ci"], list) and len(d["ci"]) == 2 and isinstance(d["p_outperform_ci"], list)
    assert d["p_outperform"] == 1.0 and d["verdict"] == "better" and d["min_effect"] == 0.0
    assert stats.compare_values({0: 0.8}, {0: 0.9}).as_dict()["ci"] is None


def test_batched_estimates_keep_their_rows_apart():
    """simulate.py runs R comparisons at once: each row must equal its own one-row answer."""
    rng = np.random.default_rng(5)
    ref, other = rng.normal(0.8, 0.01, (3, 4)), rng.normal(0.81, 0.02, (3, 4))
    for paired in (True, False):
        batched = stats.assess(stats.seed_estimate(ref, other, paired))
        for r in range(3):
            alone = stats.assess(stats.seed_estimate(ref[r : r + 1], other[r : r + 1], paired))
            assert (batched.low[r], batched.high[r], batched.p[r]) == pytest.approx(
                (alone.low[0], alone.high[0], alone.p[0])
            )
    ex_ref, ex_other = (rng.random((2, 3, 40)) < 0.8).astype(float), (rng.random((2, 3, 40)) < 0.85).astype(float)
    for paired in (True, False):
        batched = stats.example_estimate(ex_ref, ex_other, paired)
        for r in range(2):
            alone = stats.example_estimate(ex_ref[r : r + 1], ex_other[r : r + 1], paired)
            assert [float(v[r]) for v, _ in batched.parts] == pytest.approx([float(v[0]) for v, _ in alone.parts])
    share, _, _ = stats.outperform(ref, other, paired=False)
    assert [float(s) for s in share] == pytest.approx(
        [((other[r][None, :] > ref[r][:, None]).mean()) for r in range(3)]
    )


def test_seeds_for_power_without_matched_seeds():
    ref, other = {0: 0.80, 1: 0.82, 2: 0.79}, {5: 0.81, 6: 0.84, 7: 0.80}
    d = stats.compare_values(ref, other)
    va, vb = np.var(list(ref.values()), ddof=1), np.var(list(other.values()), ddof=1)
    effect = abs(np.mean(list(other.values())) - np.mean(list(ref.values())))

    def power(n: int) -> float:
        se = math.sqrt((va + vb) / n)
        df = (va + vb) ** 2 / ((va**2 + vb**2) / (n - 1))
        return sps.nct.sf(sps.t.ppf(0.975, df), df, effect / se)

    need = next(n for n in range(2, 10_001) if power(n) >= 0.8)
    assert d.verdict == "inconclusive" and d.seeds_for_power == need
    assert d.why.endswith(f"about {need} seeds per group (now 3) would give 80% power for +0.0133 at this spread")


def test_per_example_comparisons_and_their_whys():
    rng = np.random.default_rng(7)
    base = (rng.random((3, 200)) < 0.8).astype(float)
    flips = rng.random((3, 200)) < 0.03
    other = np.where(flips, 1 - base, base)
    pair = stats.Pair(
        {s: base[s].mean() for s in range(3)},
        {s: other[s].mean() for s in range(3)},
        quantum=1 / 200,
        ref_examples={s: base[s] for s in range(3)},
        other_examples={s: other[s] for s in range(3)},
    )
    (d,) = stats.compare_family([pair])
    e = stats.example_estimate(base[None], other[None], True, 1 / 200)
    t = stats.assess(e)
    assert d.interval == "paired-t x examples" and d.ci == pytest.approx((t.low[0], t.high[0]))
    assert d.p == pytest.approx(t.p[0]) and d.se == pytest.approx(e.se[0])
    (seeds_only,) = stats.compare_family([pair], use_examples=False)
    assert seeds_only.interval == "paired-t"
    assert d.verdict == "inconclusive" and (
        d.why.endswith("is too large for this difference; only a larger test set would settle it")
        or f"seeds per group (now 3) would give 80% power for {d.diff:+.3g} at this spread" in d.why
    )
    same = stats.Pair(
        {s: base[s].mean() for s in range(3)},
        {s: base[s].mean() for s in range(3)},
        ref_examples={s: base[s] for s in range(3)},
        other_examples={s: base[s] for s in range(3)},
    )
    (nothing,) = stats.compare_family([same])
    assert nothing.why == "+0: the two groups' per-example scores do not vary at all; there is nothing to test"


def test_holm_text_names_the_number_of_tests():
    out = stats.compare_family([stats.Pair(REF, GAIN), stats.Pair(REF, GAIN)])
    assert [d.p_adj for d in out] == pytest.approx([out[0].p * 2] * 2)
    for d in out:
        assert d.why.endswith(f"p={d.p:.3g}, Holm-adjusted over 2 tests: {d.p_adj:.3g}") or d.verdict == "inconclusive"
    (alone,) = stats.compare_family([stats.Pair(REF, GAIN)])
    assert "Holm" not in alone.why


def test_edges_that_decide_words():
    """Boundaries the rules name: p exactly 0.05 is not < 0.05; an interval that touches
    -min_effect has not cleared it; the defaults are min_effect 0 and higher is better."""
    one = np.array([0.02])
    assert list(stats.classify(one, np.array([0.01]), np.array([0.03]), np.array([0.05]), np.array([np.nan]))) == [
        "inconclusive"
    ]
    assert list(stats.classify(one, np.array([0.01]), np.array([0.03]), np.array([0.01]), np.array([np.nan]))) == [
        "better"
    ]
    inside = stats.classify(-one / 2, np.array([-0.03]), np.array([0.01]), np.array([0.01]), np.array([0.5]), 0.02)
    touch = stats.classify(-one, np.array([-0.03]), np.array([-0.02]), np.array([0.01]), np.array([np.nan]), 0.02)
    assert list(inside) == ["inconclusive"] and list(touch) == ["inconclusive"]
    edge = stats.classify(one * 0, np.array([-0.02]), np.array([0.01]), np.array([0.5]), np.array([0.01]), 0.02)
    assert list(edge) == ["inconclusive"]  # touches -min_effect: not inside
    assert stats.holm([0.6, 0.7]) == [1.0, 1.0]  # capped at 1
    low, _ = stats.clopper_pearson(np.array(1), 10)
    assert float(low) == pytest.approx(sps.binomtest(1, 10).proportion_ci(method="exact").low) and float(low) > 0
    share, _, _ = stats.outperform(np.array([[0.1, 0.2]]), np.array([[0.2, 0.3]]), paired=False)
    assert share[0] == pytest.approx(3.5 / 4)  # three wins and 0.2 vs 0.2, a tie: half a win
    with pytest.raises(ValueError, match="min_effect must be >= 0"):
        stats.compare_family([stats.Pair(REF, GAIN)], min_effect=-0.1)


def test_single_run_details():
    a, b = np.array([1.0, 0, 1, 1]), np.array([0.5, 1, 1, 0.5])  # b is not 0/1: the t over examples
    pair = stats.Pair({0: a.mean()}, {0: b.mean()}, ref_examples={0: a}, other_examples={0: b})
    (d,) = stats.compare_family([pair])
    assert d.interval == "examples-t" and d.paired is False
    assert d.why.startswith(
        "n=1: one run per group measures no seed noise; the recipes cannot be compared; add seeds. "
    )
    (d,) = stats.compare_family([stats.Pair({0: a.mean()}, {0: a.mean()}, ref_examples={0: a}, other_examples={0: a})])
    assert d.interval == "mcnemar-exact" and d.p == 1.0 and d.ci == (0.0, 0.0)


def test_per_example_parts_when_the_examples_differ_for_real():
    """Example effects much larger than the seed-by-example noise: the example part is not floored at 0."""
    rng = np.random.default_rng(11)
    effect = rng.normal(0, 1, 60)
    ref = 0.5 + 0.01 * rng.normal(size=(3, 60))
    other = 0.5 + effect[None, :] * 0.1 + 0.01 * rng.normal(size=(4, 60))
    for paired, o in ((True, other[:3]), (False, other)):
        e = stats.example_estimate(ref[None], o[None], paired)
        if paired:
            d = o - ref
            noise = ((d - d.mean(1, keepdims=True) - d.mean(0, keepdims=True) + d.mean()) ** 2).sum() / (2 * 59) / 3
            per_example = d.mean(0)
        else:
            noise = sum(
                ((x - x.mean(1, keepdims=True) - x.mean(0, keepdims=True) + x.mean()) ** 2).sum()
                / ((len(x) - 1) * 59)
                / len(x)
                for x in (ref, o)
            )
            per_example = o.mean(0) - ref.mean(0)
        assert per_example.var(ddof=1) > 10 * noise
        assert e.parts[1][0][0] == pytest.approx((per_example.var(ddof=1) - noise) / 60)


def test_whys_pinned_for_seeded_inputs():
    """The full sentence users read, for inputs fixed here (a change of wording or number fails)."""
    rng = np.random.default_rng(7)
    base = (rng.random((3, 200)) < 0.8).astype(float)
    other = np.where(rng.random((3, 200)) < 0.03, 1 - base, base)
    pair = stats.Pair(
        {s: base[s].mean() for s in range(3)},
        {s: other[s].mean() for s in range(3)},
        quantum=1 / 200,
        ref_examples={s: base[s] for s in range(3)},
        other_examples={s: other[s] for s in range(3)},
    )
    (d,) = stats.compare_family([pair])
    assert d.why == WHY_EXAMPLES
    welch = stats.compare_values({0: 0.80, 1: 0.82, 2: 0.79}, {5: 0.81, 6: 0.84, 7: 0.80}, min_effect=0.002)
    assert welch.why == WHY_WELCH


WHY_EXAMPLES = (
    "-0.01833: the 95% CI [-0.04959, +0.01292] includes 0 (p=0.128); "
    "about 6 seeds per group (now 3) would give 80% power for -0.0183 at this spread"
)
WHY_WELCH = (
    "+0.01333: the 95% CI [-0.05081, +0.07747] neither clears +-0.002 nor lies inside it (p=0.526); "
    "about 42 seeds per group (now 3) would give 80% power for +0.0133 against +-0.002 at this spread"
)


def test_groups_that_share_seeds_are_paired_on_those_seeds():
    """Reference seeds 0-9 against a group with seeds 0 and 1: a paired t over the 2 shared
    seeds (Welch over all 12 runs gave 12% false verdicts), both groups' sizes stated."""
    rng = np.random.default_rng(2)
    ref = {s: 0.9 + 0.003 * rng.standard_normal() for s in range(10)}
    other = {0: ref[0] + 0.011, 1: ref[1] + 0.009}
    d = stats.compare_values(ref, other)
    res = sps.ttest_rel([other[0], other[1]], [ref[0], ref[1]])
    assert d.paired and d.interval == "paired-t" and d.n == (10, 2) and d.paired_on == 2 and d.df == 1.0
    assert d.diff == pytest.approx(0.010) and d.p == pytest.approx(res.pvalue)
    assert d.ci == pytest.approx(tuple(res.confidence_interval()))
    assert d.why.startswith("paired on the 2 seeds both groups have (of 10 and 2): +0.01: the 95% CI [")
    assert stats.compare_values(ref, {0: 0.9, 12: 0.91, 13: 0.92}).paired is False  # one seed in common: unmatched
    same = stats.compare_values(ref, {s: v + 0.001 for s, v in ref.items()})
    assert same.paired_on == 10 and not same.why.startswith("paired on")
    assert d.as_dict()["paired_on"] == 2


def test_skewed_differences_get_no_verdict_from_eight_seeds():
    """One seed of ten collapses in the reference (a class's recall, say): the per-seed
    differences are skewed, a t verdict would not hold its level, and there is none."""
    ref = {s: 0.85 + 0.002 * (s % 3) for s in range(10)}
    ref[4] = 0.83
    other = {s: v + 0.01 + 0.001 * (s % 2) for s, v in ref.items()}
    other[4] = 0.86
    d = stats.compare_values(ref, other)
    diffs = np.array([other[s] - ref[s] for s in range(10)])
    assert d.shapiro_p == pytest.approx(sps.shapiro(diffs).pvalue) and d.shapiro_p < 0.05
    assert d.p < 0.05 and d.verdict == "inconclusive" and d.seeds_for_power is None
    assert d.why == (
        f"+{diffs.mean():.4g}: skewed per-seed differences: Shapiro-Wilk p={d.shapiro_p:.2g} over 10 seeds, "
        f"skewness {sps.skew(diffs):+.2g}; a t-test's p ({d.p:.3g}) and 95% CI [{d.ci[0]:+.4g}, {d.ci[1]:+.4g}] "
        "do not hold their level there, so no verdict (a seed that failed, or a metric near its floor or ceiling, does this)"
    )
    seven = stats.compare_values({s: ref[s] for s in range(3, 10)}, {s: other[s] for s in range(3, 10)})
    assert seven.shapiro_p is None and seven.verdict != "inconclusive"  # below 8 seeds: unchecked
    rng = np.random.default_rng(3)
    base = {s: 0.85 + 0.005 * rng.standard_normal() for s in range(10)}
    normal = stats.compare_values(base, {s: v + 0.01 + 0.002 * rng.standard_normal() for s, v in base.items()})
    assert normal.shapiro_p >= 0.05 and normal.verdict == "better"


def test_power_for_equivalent_needs_both_edges_of_the_band():
    """At an observed difference of 0, the seeds named give 80% TOST power: both edges
    must be cleared (one edge's 80% would give about 62%)."""
    ref = {s: 0.9 for s in range(4)}
    gains = np.array([-0.0012, 0.0005, 0.0013, -0.0006])
    gains = (gains - gains.mean()) / gains.std(ddof=1) * 0.001
    d = stats.compare_values(ref, {s: 0.9 + g for s, g in zip(range(4), gains)}, min_effect=0.0012)
    assert d.verdict == "inconclusive" and d.diff == 0.0
    need = d.seeds_for_power
    assert need is not None and d.why.endswith(
        f"about {need} seeds per group (now 4) would give 80% power for +0 against +-0.0012 at this spread"
    )

    def tost(n: int) -> float:  # P(the 95% interval inside +-0.0012), by simulation
        x = np.random.default_rng(n).normal(0, 0.001, (40_000, n))
        half = sps.t.ppf(0.975, n - 1) * x.std(1, ddof=1) / np.sqrt(n)
        return float(((x.mean(1) - half > -0.0012) & (x.mean(1) + half < 0.0012)).mean())

    assert tost(need) >= 0.8 - 0.006 and tost(need - 1) < 0.8 + 0.006
    one_edge = next(  # what masklab named before: 80% for clearing one edge only
        n for n in range(2, 100) if sps.nct.sf(sps.t.ppf(0.975, n - 1), n - 1, 0.0012 / (0.001 / np.sqrt(n))) >= 0.8
    )
    assert one_edge < need and tost(one_edge) < 0.7


def test_a_single_runs_mcnemar_p_stays_out_of_the_recipes_holm_family():
    """A McNemar p compares two models: in a call with a 5-seed comparison it must not
    turn that comparison's `better` into `inconclusive` (0.026 -> 0.053 before)."""
    ref = {0: 0.900, 1: 0.910, 2: 0.905, 3: 0.915, 4: 0.908}
    other = {0: 0.903, 1: 0.916, 2: 0.906, 3: 0.919, 4: 0.909}
    a = np.array([1.0] * 90 + [0.0] * 10)
    b = a.copy()
    b[90:97] = 1.0  # right on 7 more examples: McNemar p = 0.016
    single = stats.Pair({0: a.mean()}, {0: b.mean()}, ref_examples={0: a}, other_examples={0: b})
    seeds, mcnemar = stats.compare_family([stats.Pair(ref, other), single])
    alone = stats.compare_values(ref, other)
    assert seeds.p == alone.p and 0.025 < seeds.p < 0.05 and seeds.p_adj == seeds.p and seeds.verdict == "better"
    assert mcnemar.verdict == "too few seeds" and mcnemar.p == pytest.approx(sps.binomtest(7, 7).pvalue)
    assert mcnemar.p_adj is None and "Holm" not in seeds.why


def test_bca_that_clears_while_the_t_test_does_not_says_so():
    rng = np.random.default_rng(4)
    ref = {s: 0.8 + 0.01 * rng.standard_normal() for s in range(40)}
    other = {s: v + 0.0031 + 0.01 * rng.standard_normal() for s, v in ref.items()}
    d = stats.compare_values(ref, other)
    assert d.interval == "bca" and d.ci[0] > 0 and 0.05 < d.p < 0.1 and d.verdict == "inconclusive"
    assert f"clears 0, but the t-test does not (p={d.p:.3g}); about " in d.why and "Holm" not in d.why


def test_a_difference_that_is_floating_point_noise_is_zero():
    """0.82, 0.79, 0.81, 0.80 against 0.80, 0.82, 0.79, 0.81: the means differ by -1.11e-16."""
    d = stats.compare_values({0: 0.8, 1: 0.82, 2: 0.79, 3: 0.81}, {0: 0.82, 1: 0.79, 2: 0.81, 3: 0.8})
    assert d.diff == 0.0 and d.seeds_for_power is None and "e-16" not in d.why
    assert d.why.endswith("no number of seeds would settle it: the observed difference is 0")


def test_when_the_test_set_limits_more_seeds_cannot_settle_it_and_the_why_says_what_was_computed():
    rng = np.random.default_rng(0)
    hard = rng.random(300) < 0.5  # half the examples a coin flip: the test set's own error is large
    ref = {s: (rng.random(300) < np.where(hard, 0.5, 0.97)).astype(float) for s in range(3)}
    other = {s: np.where(rng.random(300) < 0.3 * hard, 1 - r, r) for s, r in ref.items()}
    pair = stats.Pair(
        {s: r.mean() for s, r in ref.items()},
        {s: o.mean() for s, o in other.items()},
        quantum=1 / 300,
        ref_examples=ref,
        other_examples=other,
    )
    (d,) = stats.compare_family([pair])
    assert d.verdict == "inconclusive" and d.seeds_for_power is None
    assert "more seeds cannot settle it (4% power at 10,000 seeds per group): the test set's " in d.why
    assert d.why.endswith("is too large for this difference; only a larger test set would settle it")


def test_a_why_that_only_the_test_set_can_settle_says_so_in_a_whole_sentence():
    """Every seed gains exactly one of 200 examples, through 21 gains and 20 losses: the
    seeds agree, the examples do not, and more seeds cannot help."""
    n = 200
    base, other = {}, {}
    for s in range(3):
        b = np.zeros(n)
        b[:100] = 1
        o = b.copy()
        o[100:121], o[:20] = 1, 0
        base[s], other[s] = np.roll(b, 7 * s), np.roll(o, 7 * s)
    means = [{s: float(v.mean()) for s, v in d.items()} for d in (base, other)]
    pair = stats.Pair(*means, True, 1 / n, base, other)
    (d,) = stats.compare_family([pair])
    assert d.verdict == "inconclusive" and d.interval == "paired-t x examples"
    assert d.why == (
        "+0.005: the 95% CI [-0.06624, +0.07624] includes 0 (p=0.856); more seeds cannot settle it (4% power at "
        "10,000 seeds per group): the test set's own sampling error (se 0.027) is too large for this difference; "
        "only a larger test set would settle it"
    )
