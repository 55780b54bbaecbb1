"""Sequential seed studies: seeds come in looks, and a comparison stops when it is settled.

Numbers in, numbers and words out (no torch, no disk, no printing). A `Design` fixes, before
the first seed, the looks (seeds per group at each), the level, the boundary family, the
band of practically equal differences and the number of comparisons; it round-trips
through a plain dict so that a study can record it and a resumed study continue the same
sequence. `analyse` replays a study from its per-seed values: at every look each open
comparison (a variant against the reference on one metric, paired on shared seeds) is

- `better` / `worse` when its repeated confidence interval clears +-min_effect: the
  interval estimate +- c se, where c is the look's critical |t| (boundaries.py) at the
  comparison's current share of alpha, so that over all looks and comparisons a false
  better/worse has probability at most alpha;
- `equivalent` when that interval, at alpha / comparisons, lies inside +-min_effect;
- `futile` when the predictive power of any verdict by the last look (conditional power
  averaged over what the true difference could be, given the seeds so far) is below
  `futility` (the rule is non-binding: stopping for futility never raises the error rate);
- `continue` otherwise; after the last look an open comparison is `inconclusive`.

Multiplicity is Holm's procedure carried over the looks (Maurer & Bretz 2013, the graph
with equal weights): each open comparison is tested at alpha / (comparisons not yet
decided better or worse); a decision passes its share to the others, whose boundaries at
the current look are then recomputed at the larger level. Comparisons that stop as
futile or equivalent keep their share. As with Holm at fixed n the family-wise error of
better/worse verdicts stays at alpha; Bonferroni's split (alpha / comparisons throughout)
is the option that gives up the passing on. The interval reported with each stop is the
repeated interval at the level that comparison was tested at (never above alpha), so it
holds the truth with probability at least 1 - alpha whatever the stopping rule did.

Assumptions are those of the fixed-n t-test (independent seeds, roughly normal per-seed
differences; from 8 seeds a skewed sample gets no verdict at that look), over the seeds
with the test set taken as fixed (the per-example part of compare's variance does not
shrink with seeds, so it has no place in an information fraction). The default,
O'Brien-Fleming-type spending with futility below 20% predictive power, was chosen by the
simulation in bench/stats_simulation.py: every family holds the level, and this one keeps
the fixed design's power within 5 points while a study with no true difference spends
about 60% of its seeds; Pocock loses 9-14 points of power for the small effect and the
confidence sequence 30-36. Normal-theory boundaries used without the t step give 10-14%
false verdicts at these seed counts. tests/test_sequential.py holds it to its rates.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from masklab.analysis import boundaries, stats

CONTINUE, FUTILE = "continue", "futile"
DECISIONS = (stats.BETTER, stats.WORSE, stats.EQUIVALENT, FUTILE, CONTINUE, stats.INCONCLUSIVE)
HOLM, BONFERRONI = "holm", "bonferroni"
MULTIPLICITY = (HOLM, BONFERRONI)
FIRST_LOOK, GROWTH, LAST_SHARE = 3, 1.5, 0.8  # looks_for's rule
FAMILY_WORDS = {
    boundaries.OBRIEN_FLEMING: "O'Brien-Fleming-type alpha spending",
    boundaries.POCOCK: "Pocock-type alpha spending",
    boundaries.CONFIDENCE_SEQUENCE: "Lai's confidence sequence",
}


def looks_for(max_seeds: int) -> tuple[int, ...]:
    """The looks of a study of at most `max_seeds` seeds per group: 3 seeds, then 1.5 times
    as many (rounded up) at each look, and a look that would reach 80% of max_seeds is
    max_seeds itself. 20 -> (3, 5, 8, 12, 20); 10 -> (3, 5, 10); 40 -> (3, 5, 8, 12, 18, 27, 40)."""
    if max_seeds < FIRST_LOOK:
        raise ValueError(f"max_seeds must be at least {FIRST_LOOK} (the first look), got {max_seeds}")
    looks = [FIRST_LOOK]
    while looks[-1] < max_seeds:
        following = math.ceil(looks[-1] * GROWTH)
        looks.append(max_seeds if following >= LAST_SHARE * max_seeds else following)
    return tuple(looks)


@dataclass(frozen=True)
class Design:
    """A sequential design, fixed before the first seed and recorded with the study."""

    looks: tuple[int, ...]  # seeds per group at each look, increasing; the last is max_seeds
    alpha: float = stats.ALPHA  # family-wise error of better/worse over all looks and comparisons
    boundary: str = boundaries.OBRIEN_FLEMING  # obrien-fleming | pocock | confidence-sequence
    min_effect: float = 0.0  # half-width of the band of practically equal differences (0: no equivalence)
    comparisons: int = 1  # the Holm family: variants x metrics, declared in advance
    multiplicity: str = HOLM  # holm (Maurer & Bretz's sequential Holm) | bonferroni
    futility: float = 0.2  # stop a comparison whose predictive power of a verdict falls below this (0: never)

    def __post_init__(self) -> None:
        object.__setattr__(self, "looks", tuple(self.looks))
        looks = self.looks
        if not looks or any(not isinstance(n, int) or isinstance(n, bool) for n in looks):
            raise ValueError(f"looks: a list of seed counts, e.g. [3, 5, 8, 12, 20]; got {list(looks)}")
        if looks[0] < 2 or any(b <= a for a, b in zip(looks, looks[1:])):
            raise ValueError(f"looks: seed counts from 2 up, strictly increasing; got {list(looks)}")
        checks = {
            "alpha": _number(self.alpha) and 0 < self.alpha < 1,
            "min_effect": _number(self.min_effect) and 0 <= self.min_effect < math.inf,
            "comparisons": isinstance(self.comparisons, int)
            and not isinstance(self.comparisons, bool)
            and self.comparisons >= 1,
            "futility": _number(self.futility) and 0 <= self.futility < 1,
            "boundary": self.boundary in boundaries.FAMILIES,
            "multiplicity": self.multiplicity in MULTIPLICITY,
        }
        allowed = {
            "alpha": "in (0, 1)",
            "min_effect": ">= 0",
            "comparisons": "a whole number >= 1",
            "futility": "in [0, 1)",
            "boundary": f"one of {', '.join(boundaries.FAMILIES)}",
            "multiplicity": f"one of {', '.join(MULTIPLICITY)}",
        }
        for key, ok in checks.items():
            if not ok:
                raise ValueError(f"{key}: must be {allowed[key]}, got {getattr(self, key)!r}")

    @property
    def max_seeds(self) -> int:
        return self.looks[-1]

    @classmethod
    def for_max_seeds(cls, max_seeds: int, **settings) -> Design:
        """The design with looks_for(max_seeds) and any other field given."""
        return cls(looks_for(max_seeds), **settings)

    def as_dict(self) -> dict:
        """A plain dict (JSON-ready) that from_dict turns back into the same design."""
        return asdict(self) | {"looks": list(self.looks)}

    @classmethod
    def from_dict(cls, body: dict) -> Design:
        """The design a dict describes; a missing field takes its default, an unknown one is an error."""
        if not isinstance(body, dict):
            raise ValueError(f"a sequential design is a mapping, got {type(body).__name__}")
        unknown = sorted(set(body) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(
                f"{unknown[0]}: not a field of a sequential design ({', '.join(cls.__dataclass_fields__)})"
            )
        if "looks" not in body:
            raise ValueError("looks: missing (seed counts per group at each look, e.g. [3, 5, 8, 12, 20])")
        if not isinstance(body["looks"], (list, tuple)):
            raise ValueError(f"looks: a list of seed counts, got {body['looks']!r}")
        return cls(**body)

    def describe(self) -> str:
        """One sentence for a plan: the looks, the boundaries, the family and the budget."""
        family = FAMILY_WORDS[self.boundary]
        holm = (
            f", {'Holm' if self.multiplicity == HOLM else 'Bonferroni'} over {self.comparisons} comparisons"
            if self.comparisons > 1
            else ""
        )
        band = f"; equivalent inside +-{self.min_effect:g}" if self.min_effect > 0 else ""
        futile = f"; futile below {self.futility:.0%} predictive power" if self.futility > 0 else ""
        return (
            f"looks at {', '.join(map(str, self.looks))} seeds per group (at most {self.max_seeds}); "
            f"{family} at {self.alpha:g}{holm}{band}{futile}"
        )


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def boundary_table(design: Design) -> list[dict]:
    """Per look: seeds, alpha spent so far and the critical |t| of a paired comparison at
    alpha / comparisons (what --dry-run shows)."""
    out = []
    level = design.alpha / design.comparisons
    for k, n in enumerate(design.looks):
        row = {"look": k + 1, "seeds": n}
        if design.boundary in boundaries.SPENDING:
            row["alpha_spent"] = float(boundaries.spent(design.boundary, level, n / design.max_seeds))
            row["nominal_p"] = float(boundaries.nominal_levels(design.boundary, level, design.looks)[k])
        row["t_critical"] = float(boundaries.t_critical(design.boundary, level, k, design.looks, n, n - 1.0))
        out.append(row)
    return out


# --- the batched core: R replicates x m comparisons x looks -------------------------------


@dataclass
class Outcome:
    """Where each comparison stands after the looks given, batched (R, m)."""

    decision: np.ndarray  # words of DECISIONS
    look: np.ndarray  # index of the look it stopped at, or the last look given while it continues
    low: np.ndarray  # the repeated interval at that look, at `level`
    high: np.ndarray
    level: np.ndarray  # the share of alpha the comparison was tested at
    statistic: np.ndarray  # (|diff| - min_effect) / se
    boundary: np.ndarray  # the critical |t| it was held to
    predictive_power: np.ndarray  # of a verdict by the last look (nan where not computed)


def run_looks(
    design: Design,
    diff: np.ndarray,
    se: np.ndarray,
    df: np.ndarray,
    higher_is_better: np.ndarray | bool = True,
    blocked: np.ndarray | None = None,
) -> Outcome:
    """Apply the design to per-look estimates of shape (R, m, L), L <= len(design.looks):
    the difference, its se and df at each look (nan where a comparison has no data, which
    must not happen while it is open). `blocked` (R, m, L): no verdict at that look (zero
    spread, a skewed sample). Returns the state after look L."""
    r, m, n_looks = diff.shape
    if m != design.comparisons:
        raise ValueError(f"the design declares {design.comparisons} comparisons; got {m}")
    hib = np.broadcast_to(np.asarray(higher_is_better, dtype=bool), (r, m))
    blocked = np.zeros(diff.shape, dtype=bool) if blocked is None else blocked
    out = Outcome(
        np.full((r, m), CONTINUE, dtype=object),
        np.zeros((r, m), dtype=int),
        *(np.full((r, m), np.nan) for _ in range(6)),
    )
    open_ = np.ones((r, m), dtype=bool)
    decided = np.zeros(r, dtype=int)  # better/worse so far: Holm passes their alpha on
    for k in range(n_looks):
        now = _Look(design, k, diff[..., k], se[..., k], df[..., k], blocked[..., k])
        decided = _efficacy(now, out, open_, decided, hib)
        now.record(out, open_, decided)  # the state of those still open, at their level
        if design.min_effect > 0:
            _equivalence(now, out, open_)
        out.look[open_] = k
        if k == len(design.looks) - 1:
            out.decision[open_] = stats.INCONCLUSIVE
            open_[:] = False
        elif design.futility > 0:
            _futility(now, out, open_, decided)
    return out


@dataclass
class _Look:
    design: Design
    k: int
    diff: np.ndarray  # (R, m)
    se: np.ndarray
    df: np.ndarray
    blocked: np.ndarray

    @property
    def n(self) -> int:
        return self.design.looks[self.k]

    def level(self, decided: np.ndarray) -> np.ndarray:
        """Each replicate's share of alpha for an open comparison (R, 1)."""
        m = self.design.comparisons
        open_count = m - decided if self.design.multiplicity == HOLM else np.full_like(decided, m)
        return (self.design.alpha / np.maximum(open_count, 1))[:, None]

    def critical(self, level: np.ndarray, k: int | None = None, n: float | None = None, df=None) -> np.ndarray:
        d = self.design
        k = self.k if k is None else k
        n = self.n if n is None else n
        return boundaries.t_critical(d.boundary, level, k, d.looks, n, self.df if df is None else df)

    def statistic(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return (np.abs(self.diff) - self.design.min_effect) / self.se

    def record(self, out: Outcome, where: np.ndarray, decided: np.ndarray) -> None:
        level = np.broadcast_to(self.level(decided), where.shape)
        crit = self.critical(level)
        out.low[where] = (self.diff - crit * self.se)[where]
        out.high[where] = (self.diff + crit * self.se)[where]
        out.level[where] = level[where]
        out.statistic[where] = self.statistic()[where]
        out.boundary[where] = crit[where]


def _efficacy(now: _Look, out: Outcome, open_: np.ndarray, decided: np.ndarray, hib: np.ndarray) -> np.ndarray:
    """Better/worse at this look, Holm's way: test every open comparison at its share,
    pass the share of each decision on, and test the rest again, until none crosses."""
    usable = ~now.blocked & (now.se > 0)
    for _ in range(now.design.comparisons):
        crit = now.critical(now.level(decided))
        with np.errstate(invalid="ignore"):
            cross = open_ & usable & (now.statistic() >= crit)
        if not cross.any():
            break
        now.record(out, cross, decided)
        up = now.diff > 0
        out.decision[cross & (up == hib)] = stats.BETTER
        out.decision[cross & (up != hib)] = stats.WORSE
        out.look[cross] = now.k
        open_ &= ~cross
        decided = decided + cross.sum(1)
    return decided


def _equivalence(now: _Look, out: Outcome, open_: np.ndarray) -> None:
    """Equivalent: the repeated interval at alpha / comparisons (Bonferroni, never raised by
    Holm's passing) lies inside +-min_effect."""
    d = now.design
    level = np.full((len(open_), 1), d.alpha / d.comparisons)
    crit = now.critical(level)
    with np.errstate(invalid="ignore"):
        inside = (now.diff - crit * now.se > -d.min_effect) & (now.diff + crit * now.se < d.min_effect)
    hit = open_ & inside & ~now.blocked & (now.se > 0)
    out.low[hit], out.high[hit] = (now.diff - crit * now.se)[hit], (now.diff + crit * now.se)[hit]
    out.level[hit], out.boundary[hit] = np.broadcast_to(level, hit.shape)[hit], crit[hit]
    out.decision[hit] = stats.EQUIVALENT
    out.look[hit] = now.k
    open_ &= ~hit


def _futility(now: _Look, out: Outcome, open_: np.ndarray, decided: np.ndarray) -> None:
    power = predictive_power(now, decided)
    out.predictive_power[open_] = power[open_]
    with np.errstate(invalid="ignore"):
        futile = open_ & (power < now.design.futility)
    out.decision[futile] = FUTILE
    open_ &= ~futile


def predictive_power(now: _Look, decided: np.ndarray) -> np.ndarray:
    """P(a verdict at the last look | the seeds so far): conditional power averaged over
    what the true difference could be given those seeds (Spiegelhalter, Freedman and
    Blackburn 1986). With a flat prior the final mean is centred on today's with sd
    se sqrt((N - n) / N) (the seeds still to come plus the uncertainty of today's mean),
    taken as t with today's df since the spread is estimated too; it must clear the band
    by the final look's critical |t| times the final se (or, with min_effect, fall that
    far inside it). Conditional power at the observed difference alone stopped true
    small effects at 3 and 5 seeds and cost 14 points of power (bench/stats_simulation.py).
    Earlier looks' chances are left out, so this slightly understates it. nan where the
    spread is 0 or the look is blocked (no futility stop then)."""
    from scipy import stats as sps

    d, n, big_n = now.design, now.n, now.design.max_seeds
    last = len(d.looks) - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        df_final = now.df * (big_n - 1) / max(n - 1, 1)
        final_se = now.se * math.sqrt(n / big_n)
        spread = now.se * math.sqrt((big_n - n) / big_n)
        size = np.abs(now.diff)
        h = now.critical(np.broadcast_to(now.level(decided), size.shape), last, big_n, df_final) * final_se
        t = sps.t(now.df)
        power = t.cdf((size - d.min_effect - h) / spread) + t.cdf((-size - d.min_effect - h) / spread)
        if d.min_effect > 0:
            level = np.full(size.shape, d.alpha / d.comparisons)
            h_eq = now.critical(level, last, big_n, df_final) * final_se
            inside = t.cdf((d.min_effect - h_eq - size) / spread) - t.cdf((h_eq - d.min_effect - size) / spread)
            power = power + np.clip(inside, 0.0, None)
    return np.where((now.se > 0) & ~now.blocked, power, np.nan)


# --- one study: per-seed values in, a trace per comparison out ----------------------------


@dataclass
class Look:
    """One comparison at one look."""

    look: int  # 1-based
    seeds: int  # seeds per group in this look's estimate
    decision: str
    diff: float
    se: float | None
    df: float | None
    statistic: float | None  # (|diff| - min_effect) / se
    boundary: float | None  # the critical |t| at this look and level
    level: float | None  # the share of alpha this look tested at
    ci: tuple[float, float] | None  # the repeated confidence interval at 1 - level
    predictive_power: float | None
    why: str

    def as_dict(self) -> dict:
        return asdict(self) | {"ci": list(self.ci) if self.ci else None}


@dataclass
class Trace:
    """One comparison over the looks so far."""

    name: str
    paired: bool
    looks: list[Look] = field(default_factory=list)

    @property
    def decision(self) -> str:
        return self.looks[-1].decision if self.looks else CONTINUE

    @property
    def seeds_used(self) -> int:
        return self.looks[-1].seeds if self.looks else 0

    @property
    def settled(self) -> bool:
        return self.decision != CONTINUE

    def as_dict(self) -> dict:
        last = self.looks[-1] if self.looks else None
        return {
            "name": self.name,
            "paired": self.paired,
            "decision": self.decision,
            "decided_at": {"look": last.look, "seeds": last.seeds} if last and self.settled else None,
            "looks": [look.as_dict() for look in self.looks],
        }


@dataclass
class Sequence:
    """A study's state: every comparison's trace, the looks completed, what comes next."""

    design: Design
    traces: list[Trace]
    looks_done: int

    @property
    def done(self) -> bool:
        return all(t.settled for t in self.traces)

    @property
    def next_seeds(self) -> int | None:
        """Seeds per group the next look needs (None when every comparison is settled)."""
        return None if self.done else self.design.looks[self.looks_done]

    def open(self) -> list[int]:
        """Indices of the comparisons that continue (their groups need the next look's seeds)."""
        return [i for i, t in enumerate(self.traces) if not t.settled]

    def as_dict(self) -> dict:
        return {
            "design": self.design.as_dict(),
            "looks_done": self.looks_done,
            "next_seeds": self.next_seeds,
            "comparisons": [t.as_dict() for t in self.traces],
        }


def analyse(
    design: Design, pairs: list[stats.Pair], names: list[str] | None = None, order: list[int] | None = None
) -> Sequence:
    """Replay a study from its per-seed values, look by look, until every comparison is
    settled or an open one lacks the next look's seeds. Look k of a comparison uses the
    first looks[k] seeds of `order` (default: sorted) that both groups have (paired), or,
    when they share fewer than 2 seeds, each group's first looks[k] (unpaired; a
    confidence sequence matches them by position)."""
    if len(pairs) != design.comparisons:
        raise ValueError(f"the design declares {design.comparisons} comparisons; got {len(pairs)}")
    names = names or [f"comparison {i + 1}" for i in range(len(pairs))]
    per_pair = [_estimates(design, pair, order) for pair in pairs]
    diff, se, df, blocked = _stack(design, [est for est, _ in per_pair])
    hib = np.array([[p.higher_is_better for p in pairs]])
    traces = [Trace(name, paired) for name, (_, paired) in zip(names, per_pair)]
    looks_done = 0
    for k in range(len(design.looks)):
        open_ = [not t.settled for t in traces]
        if not any(open_) or any(o and len(est) <= k for o, (est, _) in zip(open_, per_pair)):
            break
        upto = slice(0, k + 1)
        outcome = run_looks(design, diff[..., upto], se[..., upto], df[..., upto], hib, blocked[..., upto])
        for i, trace in enumerate(traces):
            if open_[i]:
                trace.looks.append(_look(design, outcome, i, k, per_pair[i][0][k]))
        looks_done = k + 1
    return Sequence(design, traces, looks_done)


@dataclass
class _Estimate:
    seeds: int
    diff: float
    se: float
    df: float
    blocked: str  # "": none; why there is no verdict at this look
    zero_spread: bool  # no interval either: the seeds carry no spread


def _estimates(design: Design, pair: stats.Pair, order: list[int] | None) -> tuple[list[_Estimate], bool]:
    order = list(order) if order is not None else sorted(set(pair.ref) | set(pair.other))
    ref_seeds = [s for s in order if s in pair.ref]
    other_seeds = [s for s in order if s in pair.other]
    shared = [s for s in ref_seeds if s in pair.other]
    paired = len(shared) >= 2
    matched = paired or design.boundary == boundaries.CONFIDENCE_SEQUENCE
    out = []
    for n in design.looks:
        a_seeds, b_seeds = (shared, shared) if paired else (ref_seeds, other_seeds)
        if len(a_seeds) < n or len(b_seeds) < n:
            break
        a = np.array([[pair.ref[s] for s in a_seeds[:n]]], dtype=float)
        b = np.array([[pair.other[s] for s in b_seeds[:n]]], dtype=float)
        e = stats.seed_estimate(a, b, matched, pair.quantum)
        shape = stats.shapiro_p(a, b, matched)[0]
        blocked = ""
        if e.zero_spread[0]:
            blocked = "the per-seed differences are identical to within one test example: nothing to test against"
        elif shape < stats.SHAPE_ALPHA:
            blocked = f"skewed per-seed differences (Shapiro-Wilk p={shape:.2g}): a t boundary does not hold there"
        diff = float(e.diff[0])
        diff = 0.0 if abs(diff) < stats.ZERO_DIFF else diff
        out.append(_Estimate(n, diff, float(e.se[0]), float(e.df[0]), blocked, bool(e.zero_spread[0])))
    return out, paired


def _stack(design: Design, per_pair: list[list[_Estimate]]) -> tuple[np.ndarray, ...]:
    """(1, m, K) arrays of diff, se, df and blocked; nan (blocked) where a look has no data."""
    shape = (1, len(per_pair), len(design.looks))
    diff, se, df = (np.full(shape, np.nan) for _ in range(3))
    blocked = np.ones(shape, dtype=bool)
    for i, ests in enumerate(per_pair):
        for k, e in enumerate(ests):
            diff[0, i, k], se[0, i, k], df[0, i, k], blocked[0, i, k] = e.diff, e.se, e.df, bool(e.blocked)
    return diff, se, df, blocked


def _look(design: Design, outcome: Outcome, i: int, k: int, est: _Estimate) -> Look:
    def at(a: np.ndarray) -> float | None:
        x = float(a[0, i])
        return None if math.isnan(x) else x

    low, high = at(outcome.low), at(outcome.high)
    ci = (low, high) if low is not None and high is not None and not est.zero_spread else None
    look = Look(
        look=k + 1,
        seeds=est.seeds,
        decision=str(outcome.decision[0, i]),
        diff=est.diff,
        se=est.se if est.se > 0 else None,
        df=est.df,
        statistic=at(outcome.statistic),
        boundary=at(outcome.boundary),
        level=at(outcome.level),
        ci=ci,
        predictive_power=at(outcome.predictive_power) if outcome.decision[0, i] in (CONTINUE, FUTILE) else None,
        why="",
    )
    look.why = _why(design, look, est.blocked)
    return look


def _why(design: Design, look: Look, blocked: str) -> str:
    where = f"look {look.look} ({look.seeds} seeds)"
    d, n_max = design.min_effect, design.max_seeds
    band = f"+-{d:g}" if d > 0 else "0"
    head = f"{look.diff:+.4g}: "
    if look.ci is None:
        return head + f"{look.decision} at {where}: {blocked or 'no interval'}"
    share = f"{100 * (1 - look.level):.4g}%"
    rci = f"the repeated {share} CI [{look.ci[0]:+.4g}, {look.ci[1]:+.4g}]"
    basis = f"{FAMILY_WORDS[design.boundary]}{_share_text(design, look.level)}"
    if look.statistic is not None and look.statistic > 0:  # (|diff| - min_effect) / se: beyond the band
        basis = f"t={look.statistic:.3g} against the boundary {look.boundary:.3g}; {basis}"
    if look.decision in (stats.BETTER, stats.WORSE):
        edge = f"{d if look.diff > 0 else -d:+g}" if d > 0 else "0"
        side = "above" if look.diff > 0 else "below"
        return head + f"decided at {where}: {rci} lies {side} {edge} ({basis})"
    if look.decision == stats.EQUIVALENT:
        return head + f"decided at {where}: {rci} lies inside {band} ({basis})"
    position = f"{rci} {'includes 0' if d == 0 else f'neither clears {band} nor lies inside it'}"
    if blocked:
        position = f"{blocked}; {rci}"
    if look.decision == stats.INCONCLUSIVE:
        return head + f"inconclusive at the last look, {where}: {position} ({basis})"
    power = (
        f"predictive power of a verdict by {n_max} seeds {look.predictive_power:.2f}"
        if look.predictive_power is not None
        else ""
    )
    if look.decision == FUTILE:
        return (
            head + f"futile at {where}: {power} (below {design.futility:.2f}) if the true difference were "
            f"{look.diff:+.3g} at this spread; {position}"
        )
    return head + f"continue after {where}: {position} ({basis})" + (f"; {power}" if power else "")


def _share_text(design: Design, level: float | None) -> str:
    if design.comparisons == 1 or level is None:
        return f" at {design.alpha:g}"
    rule = "Holm's share" if design.multiplicity == HOLM else "Bonferroni's share"
    return f", {rule} {level:.3g} of {design.alpha:g} over {design.comparisons} comparisons"
