"""Sequential designs (masklab.analysis.sequential, boundaries): the design and its record,
boundaries against published values and scipy, decisions and words for constructed
studies, and seeded simulations that hold the design to its error rates (bigger runs are
marked slow; bench/stats_simulation.py prints the full tables)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from masklab.analysis import boundaries, sequential as sq, simulate as sim, stats

QUANTUM = 1e-4


# --- the design ------------------------------------------------------------------------


def test_looks_for_max_seeds():
    assert sq.looks_for(20) == (3, 5, 8, 12, 20)
    assert sq.looks_for(10) == (3, 5, 10)
    assert sq.looks_for(40) == (3, 5, 8, 12, 18, 27, 40)
    assert sq.looks_for(3) == (3,) and sq.looks_for(4) == (3, 4) and sq.looks_for(5) == (3, 5)
    with pytest.raises(ValueError, match="max_seeds must be at least 3"):
        sq.looks_for(2)


def test_design_round_trips_through_json_and_names_a_bad_field():
    d = sq.Design.for_max_seeds(20, comparisons=3, min_effect=0.002, boundary="pocock", futility=0.1)
    body = json.loads(json.dumps(d.as_dict()))
    assert body == {
        "looks": [3, 5, 8, 12, 20],
        "alpha": 0.05,
        "boundary": "pocock",
        "min_effect": 0.002,
        "comparisons": 3,
        "multiplicity": "holm",
        "futility": 0.1,
    }
    assert sq.Design.from_dict(body) == d and sq.Design.from_dict({"looks": [3, 5]}) == sq.Design((3, 5))
    bad = [
        ({"looks": [5, 3]}, "looks: seed counts from 2 up, strictly increasing; got [5, 3]"),
        ({"looks": [1, 3]}, "looks: seed counts from 2 up"),
        ({"looks": [3, 5.5]}, "looks: a list of seed counts"),
        ({"looks": "3,5"}, "looks: a list of seed counts, got '3,5'"),
        ({}, "looks: missing"),
        ({"looks": [3], "alpha": 1.5}, "alpha: must be in (0, 1), got 1.5"),
        ({"looks": [3], "alpha": "0.05"}, "alpha: must be in (0, 1), got '0.05'"),
        ({"looks": [3], "min_effect": float("nan")}, "min_effect: must be >= 0, got nan"),
        ({"looks": [3], "comparisons": True}, "comparisons: must be a whole number >= 1, got True"),
        ({"looks": [3], "boundary": "wald"}, "boundary: must be one of obrien-fleming, pocock, confidence-sequence"),
        ({"looks": [3], "comparisons": 0}, "comparisons: must be a whole number >= 1, got 0"),
        ({"looks": [3], "futility": 1.0}, "futility: must be in [0, 1), got 1.0"),
        ({"looks": [3], "multiplicity": "none"}, "multiplicity: must be one of holm, bonferroni"),
        ({"looks": [3], "min_effect": -0.1}, "min_effect: must be >= 0"),
        ({"looks": [3], "seeds": 5}, "seeds: not a field of a sequential design"),
    ]
    for body, message in bad:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            sq.Design.from_dict(body)


def test_describe_and_boundary_table():
    d = sq.Design.for_max_seeds(20, comparisons=2, min_effect=0.002)
    assert d.describe() == (
        "looks at 3, 5, 8, 12, 20 seeds per group (at most 20); O'Brien-Fleming-type alpha spending at 0.05, "
        "Holm over 2 comparisons; equivalent inside +-0.002; futile below 20% predictive power"
    )
    table = sq.boundary_table(d)
    assert [r["seeds"] for r in table] == [3, 5, 8, 12, 20] and table[-1]["alpha_spent"] == pytest.approx(0.025)
    last = table[-1]
    assert last["t_critical"] == pytest.approx(sps.t.isf(last["nominal_p"] / 2, 19))
    assert all(a["nominal_p"] < b["nominal_p"] for a, b in zip(table, table[1:]))


# --- boundaries ------------------------------------------------------------------------

FIVE = (0.2, 0.4, 0.6, 0.8, 1.0)


def test_spending_boundaries_are_the_published_ones():
    """Lan-DeMets, 5 equally spaced looks, two-sided 0.05, to the 3 decimals the tables
    print (DeMets & Lan 1994; Jennison & Turnbull 2000, ch. 7)."""
    obf = boundaries.z_boundaries("obrien-fleming", 0.05, FIVE)
    pocock = boundaries.z_boundaries("pocock", 0.05, FIVE)
    assert obf == pytest.approx((4.877, 3.357, 2.680, 2.290, 2.031), abs=6e-4)
    assert pocock == pytest.approx((2.438, 2.427, 2.410, 2.397, 2.386), abs=6e-4)
    assert boundaries.z_boundaries("pocock", 0.05, (1.0,)) == pytest.approx((sps.norm.isf(0.025),))
    with pytest.raises(ValueError, match="not an alpha-spending family"):
        boundaries.spent("confidence-sequence", 0.05, 0.5)


@pytest.mark.parametrize("family", ["obrien-fleming", "pocock"])
def test_boundaries_agree_with_scipys_multivariate_normal(family):
    """The recursive integration against scipy's Genz integration, at the fractions of
    looks 8, 12, 20 (where Genz's 1e-5 error is small next to what each look spends)."""
    t = np.array([0.4, 0.6, 1.0])
    c = np.array(boundaries.z_boundaries(family, 0.05, tuple(t)))
    cov = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    mvn = sps.multivariate_normal(np.zeros(3), cov)
    rng = np.random.default_rng(0)
    for k in range(1, 4):
        kept = mvn.marginal(list(range(k))) if k < 3 else mvn
        inside = kept.cdf(c[:k], lower_limit=-c[:k], rng=rng) if k > 1 else 1 - 2 * sps.norm.sf(c[0])
        assert 1 - inside == pytest.approx(float(boundaries.spent(family, 0.05, t[k - 1])), abs=3e-5)


def test_lai_confidence_sequence_is_the_mixture_inequality_solved():
    """At mean +- r s / sqrt(n) the normal-mixture martingale equals 1 / alpha exactly."""
    rng = np.random.default_rng(1)
    x = rng.normal(0.3, 1.0, 12)
    n, alpha = len(x), 0.05
    r = float(boundaries.lai_critical(np.array(n), alpha, 20))
    c2 = boundaries._lai_c2(alpha, 20)
    mu = x.mean() + r * x.std(ddof=1) / math.sqrt(n)
    y = x - mu
    s1, s2 = y.sum(), (y * y).sum()
    mixture = (1 + n * c2) ** -0.5 * (1 - c2 / (1 + n * c2) * s1**2 / s2) ** (-n / 2)
    assert mixture == pytest.approx(1 / alpha, rel=1e-9)
    assert np.isinf(boundaries.lai_critical(np.array(3), alpha, 20))  # 3 seeds cannot exclude anything
    assert float(boundaries.lai_critical(np.array(20), alpha, 20)) < float(
        boundaries.lai_critical(np.array(20), alpha, 40)
    )


# --- one study -------------------------------------------------------------------------


def _study(diffs: dict[int, float], base: float = 0.9) -> stats.Pair:
    ref = {s: base + 0.001 * ((s * 7) % 5) for s in diffs}
    return stats.Pair(ref, {s: ref[s] + d for s, d in diffs.items()})


def _gains(rng: np.random.Generator, mean: float, sd: float, n: int) -> dict[int, float]:
    return dict(enumerate(mean + sd * rng.standard_normal(n)))


def test_a_clear_gain_is_decided_early_with_its_repeated_interval():
    pair = _study(_gains(np.random.default_rng(5), 0.006, 0.001, 20))
    design = sq.Design.for_max_seeds(20)
    (trace,) = sq.analyse(design, [pair], names=["masked"]).traces
    assert [look.decision for look in trace.looks] == ["continue", "continue", "better"]
    last = trace.looks[-1]
    diffs = np.array([pair.other[s] - pair.ref[s] for s in range(8)])
    se = diffs.std(ddof=1) / math.sqrt(8)
    crit = sps.t.isf(boundaries.nominal_levels("obrien-fleming", 0.05, design.looks)[2] / 2, 7)
    assert (last.look, last.seeds, last.level) == (3, 8, 0.05) and last.boundary == pytest.approx(crit)
    assert last.ci == pytest.approx((diffs.mean() - crit * se, diffs.mean() + crit * se))
    assert last.statistic == pytest.approx(diffs.mean() / se)
    assert last.why == (
        f"{diffs.mean():+.4g}: decided at look 3 (8 seeds): the repeated 95% CI [{last.ci[0]:+.4g}, {last.ci[1]:+.4g}] "
        f"lies above 0 (t={last.statistic:.3g} against the boundary {crit:.3g}; O'Brien-Fleming-type alpha spending at 0.05)"
    )
    body = trace.as_dict()
    assert body["decision"] == "better" and body["decided_at"] == {"look": 3, "seeds": 8}
    assert len(body["looks"]) == 3 and body["looks"][-1]["ci"] == list(last.ci)


def test_a_study_waits_for_its_next_look_and_replays_the_same_sequence():
    rng = np.random.default_rng(6)
    full = [_study(_gains(rng, 0.0015, 0.002, 20)), _study(_gains(rng, 0.0, 0.002, 20))]
    design = sq.Design.for_max_seeds(20, comparisons=2)
    partial = [stats.Pair({s: p.ref[s] for s in range(6)}, {s: p.other[s] for s in range(6)}) for p in full]
    early = sq.analyse(sq.Design.from_dict(design.as_dict()), partial)
    assert (early.looks_done, early.next_seeds, early.open(), early.done) == (2, 8, [0, 1], False)
    late = sq.analyse(design, full)
    for a, b in zip(early.traces, late.traces):
        assert [x.as_dict() for x in a.looks] == [x.as_dict() for x in b.looks[:2]]
    assert late.done and late.next_seeds is None and late.as_dict()["design"] == design.as_dict()


def test_holm_passes_a_decided_comparisons_share_on_at_the_same_look():
    """One look of 5 seeds is the fixed design: A clears at 0.025, B only at 0.05 once A is
    decided, as compare's Holm says; Bonferroni's split keeps B at 0.025."""
    rng = np.random.default_rng(0)
    b_gains = rng.standard_normal(5)
    b_gains = (b_gains - b_gains.mean()) / b_gains.std(ddof=1) * 0.001
    target_t = (sps.t.isf(0.025, 4) + sps.t.isf(0.0125, 4)) / 2  # between the two shares' boundaries
    pairs = [
        _study(dict(enumerate([0.010, 0.011, 0.009, 0.0105, 0.0095]))),
        _study(dict(enumerate(b_gains + target_t * 0.001 / math.sqrt(5)))),
    ]
    holm = sq.analyse(sq.Design((5,), comparisons=2), pairs)
    assert [t.decision for t in holm.traces] == ["better", "better"]
    assert [t.looks[-1].level for t in holm.traces] == [0.025, 0.05]
    assert "Holm's share 0.05 of 0.05 over 2 comparisons" in holm.traces[1].looks[-1].why
    fixed = stats.compare_family(pairs)
    assert [d.verdict for d in fixed] == ["better", "better"]
    assert holm.traces[1].looks[-1].ci == pytest.approx(fixed[1].ci)
    split = sq.analyse(sq.Design((5,), comparisons=2, multiplicity="bonferroni"), pairs)
    assert [t.decision for t in split.traces] == ["better", "inconclusive"]
    assert (
        split.traces[1]
        .looks[-1]
        .why.startswith(f"{fixed[1].diff:+.4g}: inconclusive at the last look, look 1 (5 seeds)")
    )


def test_futile_states_its_predictive_power():
    pair = _study(_gains(np.random.default_rng(5), 0.0, 0.002, 20))
    design = sq.Design.for_max_seeds(20)
    (trace,) = sq.analyse(design, [pair]).traces
    last = trace.looks[-1]
    assert trace.decision == "futile" and last.predictive_power < 0.2
    n, big_n = last.seeds, 20
    diffs = np.array([pair.other[s] - pair.ref[s] for s in range(n)])
    se = diffs.std(ddof=1) / math.sqrt(n)
    crit = sps.t.isf(boundaries.nominal_levels("obrien-fleming", 0.05, design.looks)[-1] / 2, big_n - 1)
    h, spread = crit * se * math.sqrt(n / big_n), se * math.sqrt((big_n - n) / big_n)
    t = sps.t(n - 1)
    power = t.cdf((abs(diffs.mean()) - h) / spread) + t.cdf((-abs(diffs.mean()) - h) / spread)
    assert last.predictive_power == pytest.approx(power)
    assert last.why.startswith(
        f"{diffs.mean():+.4g}: futile at look {last.look} ({n} seeds): predictive power of a verdict by 20 seeds "
        f"{power:.2f} (below 0.20) if the true difference were {diffs.mean():+.3g} at this spread; the repeated 95% CI ["
    )
    never = sq.analyse(sq.Design.for_max_seeds(20, futility=0.0), [pair]).traces[0]
    assert never.decision == "inconclusive" and never.seeds_used == 20


def test_equivalent_lower_is_better_unpaired_and_zero_spread():
    rng = np.random.default_rng(5)
    pair = _study(_gains(rng, 0.0002, 0.001, 20))
    (eq,) = sq.analyse(sq.Design.for_max_seeds(20, min_effect=0.003), [pair]).traces
    last = eq.looks[-1]
    assert eq.decision == "equivalent" and -0.003 < last.ci[0] < last.ci[1] < 0.003 and last.level == 0.05
    diffs = np.array([pair.other[s] - pair.ref[s] for s in range(last.seeds)])
    crit = sps.t.isf(
        boundaries.nominal_levels("obrien-fleming", 0.05, (3, 5, 8, 12, 20))[last.look - 1] / 2, last.seeds - 1
    )
    half = crit * diffs.std(ddof=1) / math.sqrt(last.seeds)
    assert last.ci == pytest.approx((diffs.mean() - half, diffs.mean() + half))
    assert "lies inside +-0.003" in last.why
    three = sq.analyse(sq.Design.for_max_seeds(20, comparisons=3, min_effect=0.003), [pair] * 3).traces
    assert [(t.decision, t.looks[-1].level) for t in three] == [("equivalent", pytest.approx(0.05 / 3))] * 3
    gain = _study(_gains(rng, 0.006, 0.001, 20))
    loss = stats.Pair(gain.ref, gain.other, higher_is_better=False)
    assert sq.analyse(sq.Design.for_max_seeds(20), [loss]).traces[0].decision == "worse"
    apart = stats.Pair(gain.ref, {s + 100: v for s, v in gain.other.items()})
    (unpaired,) = sq.analyse(sq.Design.for_max_seeds(20), [apart]).traces
    assert not unpaired.paired and unpaired.looks[0].df == 2.0  # Hsu's df, as compare's Welch
    same = stats.Pair(gain.ref, {s: v + QUANTUM for s, v in gain.ref.items()}, quantum=QUANTUM)
    (flat,) = sq.analyse(sq.Design.for_max_seeds(10), [same]).traces
    assert [x.decision for x in flat.looks] == ["continue", "continue", "inconclusive"] and flat.looks[-1].ci is None
    assert flat.looks[-1].why == (
        "+0.0001: inconclusive at look 3 (10 seeds): the per-seed differences are identical to within one test "
        "example: nothing to test against"
    )
    with pytest.raises(ValueError, match="declares 2 comparisons; got 1"):
        sq.analyse(sq.Design.for_max_seeds(10, comparisons=2), [same])


# --- the simulation: the design holds its rates -----------------------------------------

SMALL, LARGE = 0.0015, 0.004  # per-seed differences have sd 0.0028 in simulate's model


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5])
def test_no_difference_false_verdicts_and_coverage_over_all_looks(m):
    rng = np.random.default_rng(100 + m)
    truths = [0.0] * m
    r = sim.sequential_rates(
        sq.Design.for_max_seeds(20, comparisons=m), *sim.family_values(rng, 2000, 20, truths), truths, QUANTUM
    )
    se = math.sqrt(0.05 * 0.95 / r.replicates)
    assert r.familywise <= 0.05 + 3 * se and r.coverage >= 0.95 - 3 * se, r
    assert r.seeds < 16, r  # futility stops most null comparisons before 20 seeds


def test_equivalent_is_false_at_most_alpha_at_the_edge_of_the_band():
    """True difference exactly +min_effect (the least favourable case): `equivalent` over
    all looks at most 5% (+ 3 se), for one comparison and at alpha / 3 for each of three."""
    rng = np.random.default_rng(17)
    for m in (1, 3):
        truths = [0.003] * m
        ref, others = sim.family_values(rng, 3000, 20, truths)
        design = sq.Design.for_max_seeds(20, comparisons=m, min_effect=0.003)
        diff, se, df, blocked = sim.look_estimates(design.looks, ref, others, QUANTUM)
        out = sq.run_looks(design, diff, se, df, True, blocked)
        level = 0.05 / m
        false = (out.decision == stats.EQUIVALENT).mean()  # per comparison, over 3000 x m
        assert false <= level + 3 * math.sqrt(level * (1 - level) / out.decision.size), (m, false)


@pytest.mark.parametrize("m", [1, 3])
def test_power_within_ten_points_of_the_fixed_design_with_fewer_seeds(m):
    rng = np.random.default_rng(200 + m)
    for effect in (SMALL, LARGE):
        truths = [effect] + [0.0] * (m - 1)
        ref, others = sim.family_values(rng, 2000, 20, truths)
        seq = sim.sequential_rates(sq.Design.for_max_seeds(20, comparisons=m), ref, others, truths, QUANTUM)
        fixed = sim.fixed_rates(20, ref, others, truths, QUANTUM)
        print(
            f"m={m} effect {effect}: power {seq.power:.3f} vs fixed {fixed.power:.3f}; seeds {seq.study_seeds:.1f} vs {fixed.study_seeds:.0f}"
        )
        assert seq.power >= fixed.power - 0.10 and seq.wrong_sign == 0.0, (seq, fixed)
        assert seq.study_seeds < fixed.study_seeds, (seq, fixed)
    assert seq.seeds < 14  # a large effect is settled well before 20 seeds


def test_adding_a_seed_and_comparing_again_is_what_the_design_prevents():
    """The issue's numbers: peeking after every seed from 3 to 5 / 10 / 20 seeds with the
    paired t-test gives 9.8% / 16.3% / 23.5% false verdicts (20,000 comparisons)."""
    rng = np.random.default_rng(7)
    rates = [sim.peeking_rate(rng, 20_000, 3, last) for last in (5, 10, 20)]
    assert rates == pytest.approx([0.098, 0.163, 0.235], abs=0.01)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["obrien-fleming", "pocock", "confidence-sequence"])
def test_every_family_holds_its_level_over_many_studies(family):
    rng = np.random.default_rng(300)
    for m in (1, 3, 5):
        for looks in ((3, 5, 8, 12, 20), (3, 5, 10), (3, 5, 8, 12, 18, 27, 40)):
            truths = [0.0] * m
            design = sq.Design(looks, comparisons=m, boundary=family, futility=0.0)
            r = sim.sequential_rates(design, *sim.family_values(rng, 20_000, looks[-1], truths), truths, QUANTUM)
            se = math.sqrt(0.05 * 0.95 / r.replicates)
            assert r.familywise <= 0.05 + 3 * se and r.coverage >= 0.95 - 3 * se, (m, looks, r)


def test_the_readme_example_prints_what_the_readme_says(capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("### Sequential studies") :]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)
    printed = section[section.index("prints (") :].split("\n\n")[1]
    exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out.splitlines() == [line[4:] for line in printed.splitlines()]
    assert "with the first 5 seeds only it would print `continue 2 8`" in section
    ref = dict(enumerate([0.912, 0.915, 0.909, 0.913, 0.911]))
    gains = [0.0042, 0.0021, 0.0055, 0.0028, 0.0047]
    state = sq.analyse(sq.Design.for_max_seeds(20), [stats.Pair(ref, {s: ref[s] + g for s, g in zip(ref, gains)})])
    assert (state.traces[0].decision, state.looks_done, state.next_seeds) == ("continue", 2, 8)
