"""Do masklab's comparison statistics hold their stated error rates? A seeded simulation.

Simulated seed groups with a known truth go through the functions `masklab compare` uses
(masklab.analysis.stats: estimate -> assess -> classify, Holm over a family), next to the
rules masklab used before (a percentile bootstrap over seeds, "suggestive" when the
bootstrap and the t-test disagreed) and the alternatives it rejected (a Satterthwaite
pooled df, a two-level bootstrap over seeds and test examples, BCa over few seeds).
Prints Markdown tables; bench/README.md holds the last run.

    python bench/stats_simulation.py            # about 3 minutes on a quiet 2-core CPU
    python bench/stats_simulation.py --quick    # fewer replicates, under a minute
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer replicates (noisier rates)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    r = 1000 if args.quick else 4000
    began = time.perf_counter()
    sections = [
        (
            f"Seed groups under a normal model ({r} replicates per row; simulation se of a 5% rate: {np.sqrt(0.0475 / r):.3f})",
            seed_table(rng, r),
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
    for title, rows in sections:
        print(f"\n### {title}\n")
        print("\n".join(rows))
    print(f"\n{time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
