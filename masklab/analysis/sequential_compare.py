"""compare over a sequential study: the groups' runs as the pairs `sequential.analyse`
replays, and its sequence as compare's differences.

The study driver replays after every look and `masklab compare` replays the finished
runs with the recorded design: the same function, so compare reports exactly the
decisions the study made, with the interval valid for its stopping rule (the repeated
confidence interval at the level the comparison was tested at) and never a fixed-n p.
Seeds only, the test set taken as fixed: the boundaries are over seeds, and the
per-example part of compare's variance does not shrink with seeds. Each group is
described over the seeds the sequence used for it (a group that stopped at look k, over
its first looks[k] seeds); runs of other seeds are left out, with a note.
"""

from __future__ import annotations

from dataclasses import dataclass

from masklab import spec as spec_mod
from masklab.analysis import compare as cmp, sequential, stats
from masklab.errors import UsageError

RULES = {  # the verdicts of a sequential study (README, Sequential studies)
    stats.BETTER: "at a look, the repeated confidence interval at the comparison's share of alpha lies wholly on the metric's good side of +-min_effect",
    stats.WORSE: "at a look, the repeated confidence interval at the comparison's share of alpha lies wholly on the metric's bad side of +-min_effect",
    stats.EQUIVALENT: "min_effect > 0 and, at a look, the repeated confidence interval at alpha / comparisons lies inside +-min_effect",
    sequential.FUTILE: "the predictive power of any verdict by the last look fell below the design's futility threshold",
    sequential.CONTINUE: "none of the above yet: the study trains the next look's seeds",
    stats.INCONCLUSIVE: "none of the above at the last look (max_seeds seeds per group)",
}


@dataclass
class Sequential:
    """A study's sequence, as a Comparison carries it."""

    design: sequential.Design
    sequence: sequential.Sequence
    traces: dict[tuple[str, str], sequential.Trace]  # (group, metric) -> its trace
    seeds_used: dict[str, int]  # group -> seeds per group the sequence used

    def decided_at(self, group: str, metric: str) -> str | None:
        """`look 3 (8 seeds)` for a settled comparison; None while it continues."""
        trace = self.traces.get((group, metric))
        if trace is None or not trace.settled:
            return None
        last = trace.looks[-1]
        return f"look {last.look} ({last.seeds} seeds)"

    def as_dict(self) -> dict:
        return {
            "design": self.design.as_dict(),
            "describe": self.design.describe(),
            "looks_done": self.sequence.looks_done,
            "next_seeds": self.sequence.next_seeds,
            "done": self.sequence.done,
            "seeds_used": self.seeds_used,
            "comparisons": [{"group": g, "metric": m, **t.as_dict()} for (g, m), t in self.traces.items()],
        }


def interval_name(design: sequential.Design) -> str:
    return f"repeated-t ({design.boundary})"


def replay(design: sequential.Design, groups: list[cmp.Group], metrics: list[str], seeds: list[int]) -> Sequential:
    """The sequence the design gives these groups (the first is the reference) over `seeds`,
    in that order; a value of a seed outside `seeds` is not read."""
    values = cmp.group_values(groups, metrics)
    pairs, keys = [], []
    ref = groups[0]
    for g in groups[1:]:
        for m in metrics:
            pairs.append(
                stats.Pair(
                    _only(values[ref.key][m], seeds),
                    _only(values[g.key][m], seeds),
                    cmp.higher_is_better(m),
                    cmp.quantum(g.runs + ref.runs, m),
                )
            )
            keys.append((g.key, m))
    seq = sequential.analyse(design, pairs, [f"{g} {m}" for g, m in keys], order=seeds)
    traces = dict(zip(keys, seq.traces))
    used = {g.key: max((t.seeds_used for (k, _), t in traces.items() if k == g.key), default=0) for g in groups[1:]}
    used[ref.key] = max(used.values(), default=0)
    return Sequential(design, seq, traces, used)


def _only(values: dict[int, float], seeds: list[int]) -> dict[int, float]:
    wanted = set(seeds)
    return {s: v for s, v in values.items() if s in wanted}


def compare_study(
    groups: list[cmp.Group], metrics: list[str], design: sequential.Design, seeds: list[int], all_keys: bool = False
) -> cmp.Comparison:
    """compare's Comparison over a sequential study: each group described over the seeds the
    sequence used, each comparison the sequence's decision and repeated interval."""
    s = replay(design, groups, metrics, seeds)
    if s.sequence.looks_done == 0:
        raise UsageError(
            f"the sequential study has not completed its first look ({design.looks[0]} seeds per group) yet: "
            "run its train command to continue it (--fixed-n shows the fixed-n table of what exists, ignoring the design)"
        )
    notes = []
    trimmed = []
    for g in groups:
        kept = set(seeds[: s.seeds_used[g.key]])
        runs = [r for r in g.runs if r.info.get("seed") in kept]
        left = sorted(r.info.get("seed") for r in g.runs if r.info.get("seed") not in kept)
        if left:
            notes.append(f"{g.key}: seeds {_seed_text(left)} are outside the sequence (it used {len(kept)}): left out")
        trimmed.append(cmp.Group(g.key, runs, g.spec))
    values = cmp.group_values(trimmed, metrics)
    differences = {g.key: {m: difference(s, g.key, m) for m in metrics} for g in trimmed[1:]}
    shown = (
        sorted(set().union(*(spec_mod.flatten(g.spec) for g in trimmed))) if all_keys else cmp.differing_keys(trimmed)
    )
    return cmp.Comparison(
        trimmed,
        metrics,
        shown,
        values,
        cmp.describe(values, metrics),
        differences,
        cmp.comparability(trimmed),
        notes,
        design.min_effect,
        sequential=s,
    )


def difference(s: Sequential, group: str, metric: str) -> stats.Difference:
    """One comparison's state in compare's terms: the decision as the verdict, the repeated
    interval as the interval, no p (a fixed-n p would ignore the looks)."""
    trace = s.traces[(group, metric)]
    last = trace.looks[-1]
    return stats.Difference(
        diff=last.diff,
        ci=tuple(last.ci) if last.ci else None,
        interval=interval_name(s.design),
        p=None,
        p_adj=None,
        paired=trace.paired,
        n=(last.seeds, last.seeds),
        verdict=last.decision,
        why=last.why,
        min_effect=s.design.min_effect,
        se=last.se,
        df=last.df,
        paired_on=last.seeds if trace.paired else None,
    )


def _seed_text(seeds: list[int]) -> str:
    return ",".join(map(str, seeds[:8])) + (",..." if len(seeds) > 8 else "")
