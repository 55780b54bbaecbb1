"""Do masklab's comparison statistics hold their stated error rates? A seeded simulation.

Simulated seed groups with a known truth go through the functions `masklab compare` uses
(masklab.analysis.stats: estimate -> assess -> classify, Holm over a family), next to the
rules masklab used before (a percentile bootstrap over seeds, "suggestive" when the
bootstrap and the t-test disagreed) and the alternatives it rejected (a Satterthwaite
pooled df, a two-level bootstrap over seeds and test examples, BCa over few seeds), and
the sequential designs of masklab.analysis.sequential next to the fixed design and the
naive "add a seed and compare again". Prints Markdown tables; bench/README.md holds the
last run.

    python bench/stats_simulation.py                     # every table
    python bench/stats_simulation.py --only sequential   # the sequential designs' tables
    python bench/stats_simulation.py --quick             # fewer replicates
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from scipy import stats as sps

from masklab.analysis import simulate as sim, stats

NS = (2, 3, 5, 10, 20)
EFFECT = 0.004  # a true gain of 0.4 points with per-seed sd 0.002 (paired: differences sd 0.0028)


def md_row(*cells: object) -> str:
    return "| " + " | ".join(f"{c:.3f}" if isinstance(c, float) else str(c) for c in cells) + " |"


def old_rule(ref: np.ndarray, other: np.ndarray, paired: bool, rng: np.random.Generator, boot: int) -> tuple:
    """masklab before issue 11: a percentile bootstrap 95% CI over the seeds; 'higher/lower'
    when it excluded 0 and the t-test gave p < 0.05, 'suggestive' when only one did."""
    r, n = ref.shape
    if paired:
        d = other - ref
        idx = rng.integers(0, n, (boot, n))
        means = d[:, idx].mean(-1)  # (R, boot)
        p = sps.ttest_rel(other, ref, axis=-1).pvalue
    else:
        means = other[:, rng.integers(0, n, (boot, n))].mean(-1) - ref[:, rng.integers(0, n, (boot, n))].mean(-1)
        p = sps.ttest_ind(other, ref, equal_var=False, axis=-1).pvalue
    low, high = np.quantile(means, 0.025, axis=1), np.quantile(means, 0.975, axis=1)
    excludes = (low > 0) | (high < 0)
    significant = np.nan_to_num(p, nan=1.0) < 0.05
    return (excludes & significant).mean(), (excludes ^ significant).mean(), low, high


def seed_table(rng: np.random.Generator, replicates: int) -> list[str]:
    rows = [
        "| design | n | masklab: better/worse under no difference | masklab: 95% interval coverage | masklab: power for +0.004 "
        "| before: 'higher/lower' under no difference | before: 'suggestive' under no difference | before: interval coverage |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for paired in (True, False):
        for n in NS:
            ref, other = sim.seed_values(rng, replicates, n, paired, 0.0)
            null = sim.rates(ref, other, paired, 0.0, 1e-4)
            old_called, old_suggestive, low, high = old_rule(ref, other, paired, rng, 1000)
            old_cover = ((low <= 0) & (high >= 0)).mean()
            effect = sim.rates(*sim.seed_values(rng, replicates, n, paired, EFFECT), paired, EFFECT, 1e-4)
            design = "paired" if paired else "unpaired"
            rows.append(
                md_row(design, n, null.decided, null.coverage, effect.decided, old_called, old_suggestive, old_cover)
            )
    return rows


def zero_spread_table(rng: np.random.Generator, replicates: int) -> list[str]:
    rows = [
        "| n | scipy ttest_rel p < 0.05 when every seed gains one test image | masklab better/worse |",
        "|---|---|---|",
    ]
    for n in NS[:4]:
        ref, other = sim.seed_values(rng, replicates, n, True, 1e-4, zero_spread=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = sps.ttest_rel(other, ref, axis=-1).pvalue
        rows.append(
            f"| {n} | {(np.nan_to_num(p, nan=1.0) < 0.05).mean():.3f} | {sim.rates(ref, other, True, 1e-4, 1e-4).decided:.3f} |"
        )
    return rows


def two_level_bootstrap(ref: np.ndarray, other: np.ndarray, rng: np.random.Generator, boot: int) -> tuple:
    """Bouthillier et al.'s two-level bootstrap (seeds and test examples resampled), percentile 95%."""
    d = other - ref  # (R, n, N) paired
    r, n, big_n = d.shape
    low, high = np.empty(r), np.empty(r)
    for i in range(r):
        w = rng.multinomial(n, np.full(n, 1 / n), boot) / n  # (boot, n) seed weights
        v = rng.multinomial(big_n, np.full(big_n, 1 / big_n), boot) / big_n  # (boot, N) example weights
        means = ((w @ d[i]) * v).sum(1)
        low[i], high[i] = np.quantile(means, [0.025, 0.975])
    return low, high


def satterthwaite(e: stats.Estimate) -> stats.Estimate:
    """The rejected alternative: one pooled Satterthwaite df for both parts."""
    total = sum(v for v, _ in e.parts)
    df = total**2 / sum(v**2 / k for v, k in e.parts)
    return stats.Estimate(e.diff, [(total, df)], e.zero_spread, "satterthwaite")


def cover(low: np.ndarray, high: np.ndarray, truth: float = 0.0) -> float:
    return float(((low <= truth) & (high >= truth)).mean())


def examples_table(rng: np.random.Generator, replicates: int) -> list[str]:
    rows = [
        "| regime | n | masklab (seeds x examples): coverage | false positives | seed-only t: coverage | false positives "
        "| pooled Satterthwaite df: coverage | two-level bootstrap: coverage |",
        "|---|---|---|---|---|---|---|---|",
    ]
    regimes = {
        "binary, examples dominate": lambda n: sim.example_scores(rng, replicates, n, True, 0.0, examples=1000),
        "gaussian, seeds dominate": lambda n: sim.two_way_scores(rng, replicates, n, 0.0, 0.05, 0.3, examples=1000),
    }
    for name, draw in regimes.items():
        for n in NS[:4]:
            ref, other = draw(n)
            e = stats.example_estimate(ref, other, True)
            ours = stats.assess(e)
            seed_only = stats.assess(stats.seed_estimate(ref.mean(-1), other.mean(-1), True))
            pooled = stats.assess(satterthwaite(e))
            k = max(1, len(ref) // 4)  # the bootstrap is slow: a quarter of the replicates
            lo, hi = two_level_bootstrap(ref[:k], other[:k], rng, 400)

            rows.append(
                md_row(
                    name,
                    n,
                    cover(ours.low, ours.high),
                    float((ours.p < 0.05).mean()),
                    cover(seed_only.low, seed_only.high),
                    float((seed_only.p < 0.05).mean()),
                    cover(pooled.low, pooled.high),
                    cover(lo, hi),
                )
            )
    return rows


def bca_table(rng: np.random.Generator, replicates: int) -> list[str]:
    rows = [
        "| n | BCa coverage, normal | t coverage, normal | BCa coverage, lognormal | t coverage, lognormal |",
        "|---|---|---|---|---|",
    ]
    mu = np.exp(0.75**2 / 2)
    for n in (5, 10, 20, 30, 40, 60):
        out = []
        for dist, truth in (("normal", 0.0), ("lognormal", mu)):
            hit_bca = hit_t = 0
            for _ in range(replicates):
                x = rng.normal(0, 1, n) if dist == "normal" else rng.lognormal(0, 0.75, n)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ci = sps.bootstrap((x,), np.mean, method="BCa", n_resamples=1999, rng=rng).confidence_interval
                hit_bca += ci.low <= truth <= ci.high
                t = sps.ttest_1samp(x, truth).confidence_interval()
                hit_t += t.low <= truth <= t.high
            out += [hit_bca / replicates, hit_t / replicates]
        rows.append(f"| {n} | " + " | ".join(f"{v:.3f}" for v in out) + " |")
    return rows


def outperform_table(rng: np.random.Generator, replicates: int) -> list[str]:
    rows = ["| design | n | P(outperform) true | interval coverage |", "|---|---|---|---|"]
    for paired in (True, False):
        for n in (3, 5, 10):
            ref, other = sim.seed_values(rng, replicates, n, paired, EFFECT)
            if paired:
                truth = sps.norm.cdf(EFFECT / (np.sqrt(2) * sim.SEED_SD))
            else:  # ref sd sqrt(shared^2 + seed^2), other sd sqrt(shared^2 + (2 seed)^2)
                spread = np.sqrt(2 * sim.SHARED_SD**2 + 5 * sim.SEED_SD**2)
                truth = sps.norm.cdf(EFFECT / spread)
            _, low, high = stats.outperform(ref, other, paired)
            rows.append(
                f"| {'paired' if paired else 'unpaired'} | {n} | {truth:.3f} | {((low <= truth) & (truth <= high)).mean():.3f} |"
            )
    return rows


def holm_table(rng: np.random.Generator, families: int) -> list[str]:
    rows = ["| metrics per call | n | some verdict fires, unadjusted | with Holm |", "|---|---|---|---|"]
    for metrics in (3, 7, 14):
        ref, other = sim.seed_values(rng, families * metrics, 3, True, 0.0)
        e = stats.seed_estimate(ref, other, True, 1e-4)
        t = stats.assess(e)
        p = np.nan_to_num(t.p, nan=1.0).reshape(families, metrics)
        adjusted = np.array([stats.holm(list(row)) for row in p])
        rows.append(f"| {metrics} | 3 | {(p < 0.05).any(1).mean():.3f} | {(adjusted < 0.05).any(1).mean():.3f} |")
    return rows


def unbalanced_table(rng: np.random.Generator, replicates: int) -> list[str]:
    rows = [
        "| reference seeds | other seeds | other's sd / reference's | Welch's own df: better/worse under no difference "
        "| masklab (Hsu's df below 5 seeds, capped Welch above) | masklab: coverage |",
        "|---|---|---|---|---|---|",
    ]
    for n_ref, n_other in ((10, 2), (20, 3), (10, 3), (20, 5), (3, 3), (2, 2), (5, 5)):
        for spread in (1.0, 2.0, 8.0):
            ref, other = sim.unbalanced_values(rng, replicates, n_ref, n_other, 0.0, spread)
            now = sim.rates(ref, other, False, 0.0, 1e-4)
            va, vb = ref.var(1, ddof=1) / n_ref, other.var(1, ddof=1) / n_other
            df = (va + vb) ** 2 / (va**2 / (n_ref - 1) + vb**2 / (n_other - 1))
            welch = stats.assess(
                stats.Estimate(other.mean(1) - ref.mean(1), [(va + vb, df)], np.zeros(len(ref), bool), "")
            )
            rows.append(md_row(n_ref, n_other, spread, float((welch.p < 0.05).mean()), now.decided, now.coverage))
    return rows


def skewed_table(rng: np.random.Generator, replicates: int) -> list[str]:
    rows = [
        "| differences | n | t verdict alone: better/worse under no difference | masklab (no verdict when Shapiro-Wilk p < 0.05, from 8 seeds) |",
        "|---|---|---|---|",
    ]
    for name, paired, sigma in (
        ("paired, lognormal(1)", True, 1.0),
        ("paired, lognormal(0.5)", True, 0.5),
        ("unpaired, lognormal(1) vs normal", False, 1.0),
    ):
        for n in (3, 5, 10, 15, 20, 30):
            ref, other = sim.skewed_values(rng, replicates, n, paired, 0.0, sigma)
            e = stats.seed_estimate(ref, other, paired, 1e-4)
            t = stats.assess(e)
            alone = np.isin(stats.classify(e.diff, t.low, t.high, t.p, t.p_equiv), (stats.BETTER, stats.WORSE))
            rows.append(md_row(name, n, float(alone.mean()), sim.rates(ref, other, paired, 0.0, 1e-4).decided))
    ref, other = sim.seed_values(rng, replicates, 10, True, 0.01)
    refused = float((stats.shapiro_p(ref, other, True) < stats.SHAPE_ALPHA).mean())
    rows.append(
        f"\nUnder normal differences with a clear gain (10 seeds, +0.01) the check refuses {refused:.3f} of verdicts."
    )
    return rows


def equivalence_power_table(rng: np.random.Generator, replicates: int) -> list[str]:
    """Seeds named for 80% power of `equivalent` at an observed difference of 0 (band 1.2 sd),
    one edge (before) and both (now), and the TOST power those seeds really give."""
    rows = ["| rule | seeds named | simulated chance of `equivalent` at those seeds |", "|---|---|---|"]
    ref = {s: 0.9 for s in range(4)}
    gains = np.array([-0.0012, 0.0005, 0.0013, -0.0006])
    gains = (gains - gains.mean()) / gains.std(ddof=1) * 0.001
    now = stats.compare_values(ref, {s: 0.9 + g for s, g in zip(range(4), gains)}, min_effect=0.0012).seeds_for_power
    before = next(
        n for n in range(2, 200) if sps.nct.sf(sps.t.ppf(0.975, n - 1), n - 1, 0.0012 / (0.001 / np.sqrt(n))) >= 0.8
    )
    for rule, n in (("one edge of the band (before)", before), ("both edges, TOST (now)", now)):
        x = rng.normal(0, 0.001, (replicates, n))
        half = sps.t.ppf(0.975, n - 1) * x.std(1, ddof=1) / np.sqrt(n)
        rows.append(md_row(rule, n, float(((x.mean(1) - half > -0.0012) & (x.mean(1) + half < 0.0012)).mean())))
    return rows


# --- sequential designs -------------------------------------------------------------------

SMALL, LARGE = 0.0015, 0.004  # per-seed differences have sd 0.0028 (simulate.py's model)


def peeking_table(rng: np.random.Generator, replicates: int) -> list[str]:
    rows = ["| peek after every seed from 3 to | false better/worse (paired t, no difference) |", "|---|---|"]
    return rows + [md_row(last, sim.peeking_rate(rng, replicates, 3, last)) for last in (5, 10, 20)]


def conditional_power_at_trend(now, decided):
    """The futility rule rejected by the table below: conditional power were the true
    difference exactly the observed one (no averaging over its uncertainty)."""
    d, n, big_n = now.design, now.n, now.design.max_seeds
    final_se = now.se * np.sqrt(n / big_n)
    spread = now.se * np.sqrt(n * (big_n - n)) / big_n
    size = np.abs(now.diff)
    df_final = now.df * (big_n - 1) / max(n - 1, 1)
    h = now.critical(np.broadcast_to(now.level(decided), size.shape), len(d.looks) - 1, big_n, df_final) * final_se
    with np.errstate(invalid="ignore", divide="ignore"):
        power = sps.norm.cdf((size - h) / spread) + sps.norm.cdf((-size - h) / spread)
    return np.where((now.se > 0) & ~now.blocked, power, np.nan)


def normal_critical(family, alpha, look, looks, n, df):
    """The rejected small-sample treatment: the normal-theory boundary used as it is, as if
    the per-seed spread were known."""
    from masklab.analysis import boundaries

    if family == boundaries.CONFIDENCE_SEQUENCE:
        return boundaries.lai_critical(np.asarray(n, dtype=float), alpha, looks[-1])
    alpha = np.asarray(alpha, dtype=float)
    levels = np.vectorize(lambda a: boundaries.nominal_levels(family, float(a), looks)[look])(alpha)
    return sps.norm.isf(levels / 2.0) + 0.0 * np.asarray(df)


def designs_table(rng: np.random.Generator, replicates: int) -> list[str]:
    from masklab.analysis import boundaries, sequential as sq

    rows = [
        "| design | comparisons | no difference: false better/worse | coverage | small effect (+0.0015): power, fixed design's "
        "| seeds per group, small | large effect (+0.004): power, fixed design's | seeds, large | seeds, no difference "
        "| study seeds, no difference (fixed) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    designs = [
        ("O'Brien-Fleming, normal boundaries (no t), no futility", {"futility": 0.0}, "normal"),
        ("O'Brien-Fleming, no futility", {"futility": 0.0}, ""),
        ("O'Brien-Fleming, futility: conditional power at the observed difference < 0.1", {"futility": 0.1}, "trend"),
        ("O'Brien-Fleming, futility: predictive power < 0.1", {"futility": 0.1}, ""),
        ("**O'Brien-Fleming, futility: predictive power < 0.2 (default)**", {"futility": 0.2}, ""),
        ("Pocock, no futility", {"boundary": "pocock", "futility": 0.0}, ""),
        ("Pocock, futility: predictive power < 0.2", {"boundary": "pocock", "futility": 0.2}, ""),
        ("Lai's confidence sequence, no futility", {"boundary": "confidence-sequence", "futility": 0.0}, ""),
        (
            "Lai's confidence sequence, futility: predictive power < 0.2",
            {"boundary": "confidence-sequence", "futility": 0.2},
            "",
        ),
    ]
    power, critical = sq.predictive_power, boundaries.t_critical
    for name, settings, variant in designs:
        sq.predictive_power = conditional_power_at_trend if variant == "trend" else power
        boundaries.t_critical = normal_critical if variant == "normal" else critical
        try:
            for m in (1, 3):
                rows.append(
                    design_row(rng, replicates, name, m, sq.Design.for_max_seeds(20, comparisons=m, **settings))
                )
        finally:
            sq.predictive_power, boundaries.t_critical = power, critical
    return rows


def design_row(rng: np.random.Generator, replicates: int, name: str, m: int, design) -> str:
    cells = []
    for effect in (0.0, SMALL, LARGE):
        truths = [effect] + [0.0] * (m - 1)
        ref, others = sim.family_values(rng, replicates, 20, truths)
        cells.append(
            (sim.sequential_rates(design, ref, others, truths, 1e-4), sim.fixed_rates(20, ref, others, truths, 1e-4))
        )
    (null, fixed_null), (small, fixed_small), (large, fixed_large) = cells
    return md_row(
        name,
        m,
        null.familywise,
        null.coverage,
        f"{small.power:.3f}, {fixed_small.power:.3f}",
        small.seeds,
        f"{large.power:.3f}, {fixed_large.power:.3f}",
        large.seeds,
        null.seeds,
        f"{null.study_seeds:.1f} ({fixed_null.study_seeds:.0f})",
    )


def familywise_table(rng: np.random.Generator, replicates: int) -> list[str]:
    from masklab.analysis import sequential as sq

    rows = [
        "| comparisons | default design: false better/worse, no difference | coverage of the final intervals | seeds per comparison |",
        "|---|---|---|---|",
    ]
    for m in range(1, 6):
        truths = [0.0] * m
        r = sim.sequential_rates(
            sq.Design.for_max_seeds(20, comparisons=m), *sim.family_values(rng, replicates, 20, truths), truths, 1e-4
        )
        rows.append(md_row(m, r.familywise, r.coverage, r.seeds))
    return rows


def multiplicity_table(rng: np.random.Generator, replicates: int) -> list[str]:
    from masklab.analysis import sequential as sq

    rows = [
        "| 3 comparisons, true effects | Holm over the looks: power | Bonferroni's split: power | fixed design (Holm): power |",
        "|---|---|---|---|",
    ]
    for truths in ([LARGE, SMALL, 0.0], [SMALL, SMALL, SMALL], [LARGE, LARGE, SMALL]):
        ref, others = sim.family_values(rng, replicates, 20, truths)
        powers = [
            sim.sequential_rates(
                sq.Design.for_max_seeds(20, comparisons=3, multiplicity=rule), ref, others, truths, 1e-4
            ).power
            for rule in ("holm", "bonferroni")
        ]
        rows.append(
            md_row(", ".join(f"{t:+g}" for t in truths), *powers, sim.fixed_rates(20, ref, others, truths, 1e-4).power)
        )
    return rows


def fixed_sections(rng: np.random.Generator, r: int) -> list[tuple[str, list[str]]]:
    return [
        (
            f"Seed groups under a normal model ({r} replicates per row; simulation se of a 5% rate: {np.sqrt(0.0475 / r):.3f})",
            seed_table(rng, r),
        ),
        (f"Unpaired groups of unequal size, no seed in common ({r} replicates per row)", unbalanced_table(rng, r)),
        (f"Skewed per-seed differences, no true difference ({r} replicates per row)", skewed_table(rng, r)),
        (
            f"Power for `equivalent` at an observed difference of 0 ({r * 5} replicates)",
            equivalence_power_table(rng, r * 5),
        ),
        ("Zero spread: every seed's difference is the same one image", zero_spread_table(rng, r)),
        (
            f"Seeds x test examples: coverage of the population difference ({r // 2} replicates, {r // 8} for the "
            "two-level bootstrap; 1000 test examples)",
            examples_table(rng, r // 2),
        ),
        (f"BCa vs t for a mean, by n ({r // 4} replicates)", bca_table(rng, r // 4)),
        (f"P(outperform) intervals ({r} replicates)", outperform_table(rng, r)),
        (f"Holm over the metrics of one call, no true difference ({r} calls)", holm_table(rng, r)),
    ]


def sequential_sections(rng: np.random.Generator, r: int) -> list[tuple[str, list[str]]]:
    return [
        (f"Adding a seed and comparing again ({r * 5} comparisons per row)", peeking_table(rng, r * 5)),
        (
            f"Sequential designs against the fixed design with 20 seeds: looks at 3, 5, 8, 12, 20 seeds ({r} studies per cell; "
            "one comparison carries the effect, the others none)",
            designs_table(rng, r),
        ),
        (f"The default design over 1-5 comparisons, no difference ({r} studies per row)", familywise_table(rng, r)),
        (
            f"Multiplicity over the looks: Holm (Maurer & Bretz) or Bonferroni's split ({r} studies per row)",
            multiplicity_table(rng, r),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer replicates (noisier rates)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("fixed", "sequential"), help="one half of the tables")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    r = 1000 if args.quick else 4000
    began = time.perf_counter()
    sections = [] if args.only == "sequential" else fixed_sections(rng, r)
    sections += [] if args.only == "fixed" else sequential_sections(rng, r)
    for title, rows in sections:
        print(f"\n### {title}\n")
        print("\n".join(rows))
    print(f"\n{time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
