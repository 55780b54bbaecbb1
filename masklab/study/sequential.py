"""Run a sequential study look by look: train, replay, record, stop when settled.

    for each look k, with n_k = design.looks[k] seeds per group:
        train the first n_k seeds of the groups still needed (a variant while one of its
        comparisons is open, the reference while any is) with the study driver,
        run_study, and the executor the command chose (in process, --jobs, Ray; seed
        groups as train.seed_batch says);
        replay every comparison over the runs so far (analysis/sequential_compare.py);
        record the look's decisions in <runs>/<study>.sequential.json;
        stop when every comparison is settled (the last look settles them all).

The design is recorded before the first seed. A rerun replays from look 1: it checks
that the command plans the recorded study (the same design, metrics, groups and seeds)
and that the runs still give the recorded decisions, then continues where the record
ends. A study killed at any moment (SIGINT, SIGTERM, SIGKILL) thus continues the same
sequence: finished runs are reused, interrupted ones resumed from their checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from masklab.analysis import compare as cmp, sequential
from masklab.analysis.sequential_compare import Sequential, replay
from masklab.errors import RunError, UsageError
from masklab.events import Events
from masklab.store import study_record
from masklab.store.files import DamagedFile
from masklab.store.runs import RunStore, now
from masklab.study.executors import Executor, run_study
from masklab.study.plan import Study
from masklab.study.result import Result
from masklab.study.sequential_plan import SequentialPlan
from masklab.study.states import read_states

KIND = "masklab sequential study"
SCHEMA_VERSION = 1


@dataclass
class SequentialOutcome:
    """Where a sequential study stands when the command ends."""

    plan: SequentialPlan
    state: Sequential | None = None  # after the last look analysed; None before the first
    trained: list[Result] = field(default_factory=list)  # runs this command trained
    failed: list[Result] = field(default_factory=list)  # runs of the current look that did not finish

    @property
    def runs_spent(self) -> int:
        return sum(self.state.seeds_used.values()) if self.state else 0

    @property
    def fixed_runs(self) -> int:
        return len(self.plan.groups) * self.plan.design.max_seeds


def run_sequential(
    plan: SequentialPlan, store: RunStore, executor: Executor, events: Events, resume: bool = False
) -> SequentialOutcome:
    """Train the study look by look until every comparison is settled (see the module doc)."""
    name, design = plan.study.name, plan.design
    outcome = SequentialOutcome(plan)
    with study_record.driving(store.root, name):
        record = open_record(plan, store)
        events.note(f"sequential study {name}: {design.describe()}")
        for k, n in enumerate(design.looks):
            needed = needed_groups(plan, outcome.state)
            states = read_states(_study(plan, plan.runs(needed, n)), store, resume=resume)
            todo = [s.planned for s in states if s.action != "skip"]  # finished runs are reused without a word
            events.note(
                f"look {k + 1}/{len(design.looks)}: {n} seeds per group for {len(needed)} group(s), "
                f"{len(todo)} run(s) to train",
                quiet_too=False,
            )
            if todo:
                ended = run_study(_study(plan, todo), store, executor, events, resume=resume)
                outcome.trained += [r for r in ended if not r.reused]
                outcome.failed = [r for r in ended if r.status not in ("done", "reused")]
                if outcome.failed:
                    return outcome
            outcome.state = _replay(plan, store, n)
            add_look(plan, store, record, k, needed, outcome)
            for line in look_lines(plan, outcome.state, k):
                events.note(line)
            if outcome.state.sequence.done:
                break
    return outcome


def _replay(plan: SequentialPlan, store: RunStore, seeds: int) -> Sequential:
    """The sequence over the runs of the first `seeds` seeds; a metric the runs do not have
    is refused with the record's part in the fix."""
    try:
        return replay(plan.design, study_groups(plan, store, seeds), plan.metrics, plan.seeds)
    except UsageError as exc:
        path = study_record.record_path(store.root, plan.study.name)
        raise UsageError(
            f"{exc}; the study's record names it: remove {path} and run again with another --metric"
        ) from None


def _study(plan: SequentialPlan, runs: list) -> Study:
    return Study(plan.study.name, plan.study.axes, runs, plan.study.resources)


def needed_groups(plan: SequentialPlan, state: Sequential | None) -> list[str]:
    """The groups the next look trains: every group at the first look; then a variant
    while one of its comparisons is open, and the reference while any comparison is."""
    if state is None:
        return list(plan.groups)
    open_groups = {group for (group, _), trace in state.traces.items() if not trace.settled}
    return [g for g in plan.groups if g in open_groups or (open_groups and g == plan.reference)]


def study_groups(plan: SequentialPlan, store: RunStore, seeds: int) -> list[cmp.Group]:
    """The finished runs of the study's first `seeds` seeds, as compare's groups in plan order."""
    wanted = plan.runs(plan.groups, seeds)
    runs = [run for run in (store.get(p.id) for p in wanted) if run is not None and run.status == "done"]
    by_key = {g.key: g for g in cmp.group_runs(runs)}
    return [by_key.get(key) or cmp.Group(key, []) for key in plan.groups]


# --- the record ---------------------------------------------------------------------------


def open_record(plan: SequentialPlan, store: RunStore) -> dict:
    """The study's record, checked against the plan; a new one (written) when it has none."""
    record = study_record.read_record(store.root, plan.study.name)
    if record is None:
        record = {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            **plan.identity(),
            "comparisons": [c.name for c in plan.comparisons],
            "created": now(),
            "status": "running",
            "looks": [],
        }
        study_record.write_record(store.root, plan.study.name, record)
        return record
    check_record(plan, record, store.root)
    return record


def recorded_design(record: dict, root, study: str) -> sequential.Design:
    """The design a record holds; DamagedFile naming the record when it holds none."""
    path = study_record.record_path(root, study)
    if record.get("kind") != KIND or record.get("schema_version") != SCHEMA_VERSION:
        raise DamagedFile(
            f"{path}: not a sequential study's record (kind, schema_version); {study_record.fix_hint(root, study)}"
        )
    try:
        design = sequential.Design.from_dict(record.get("design"))
    except (TypeError, ValueError) as exc:
        raise DamagedFile(f"{path}: design.{exc}; {study_record.fix_hint(root, study)}") from None
    for key, kind in (("metrics", str), ("groups", str), ("seeds", int), ("looks", dict)):
        value = record.get(key)
        if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
            raise DamagedFile(f"{path}: {key}: not a list of {kind.__name__}; {study_record.fix_hint(root, study)}")
    return design


def check_record(plan: SequentialPlan, record: dict, root) -> None:
    """Refuse (one line naming the record and the fix) a command that plans another study
    than the one recorded: a changed design, metric, spec (groups) or variant list."""
    path = study_record.record_path(root, plan.study.name)
    design = recorded_design(record, root, plan.study.name)
    mine = plan.identity()
    differs = None
    for key in ("groups", "metrics"):
        if differs is None and record[key] != mine[key]:
            differs = f"{key} {_text(record[key])}, this command {_text(mine[key])}"
    if differs is None and design != plan.design:
        theirs, ours = design.as_dict(), plan.design.as_dict()
        key = next(k for k in ours if ours[k] != theirs[k])
        if key == "looks":
            differs = f"max_seeds {design.max_seeds} (looks {_text(theirs[key])}), this command {plan.design.max_seeds} (looks {_text(ours[key])})"
        else:
            differs = f"{key} {_text(theirs[key])}, this command {_text(ours[key])}"
    if differs is None and record["seeds"] != mine["seeds"]:
        differs = f"seeds {_text(record['seeds'])}, this command {_text(mine['seeds'])}"
    if differs:
        raise UsageError(
            f"{path} records study {plan.study.name} with {differs}; a sequential study continues only as it was "
            f"declared: rerun it with the recorded settings, give a new study another name (--set name=...), "
            f"or remove {path.name} to start over"
        )


def _text(value) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value[:6])) + (", ..." if len(value) > 6 else "")
    return str(value)


def add_look(plan: SequentialPlan, store: RunStore, record: dict, k: int, needed: list[str], outcome) -> None:
    """Check look k against the record (a rerun) or add it; write the record."""
    state = outcome.state
    decisions = look_decisions(state, k)
    if k < len(record["looks"]):
        differs = look_mismatch(record, state, k)
        if differs:
            path = study_record.record_path(store.root, plan.study.name)
            raise RunError(f"{path}: {differs}; restore the runs, or remove {path.name} to start the study over")
    else:
        record["looks"].append(
            {"look": k + 1, "seeds": plan.design.looks[k], "groups": needed, "decisions": decisions, "finished": now()}
        )
    record["status"] = "done" if state.sequence.done else "running"
    record["state"] = state.as_dict()
    record["spent"] = {"runs": outcome.runs_spent, "fixed_design_runs": outcome.fixed_runs}
    study_record.write_record(store.root, plan.study.name, record)


def look_decisions(state: Sequential, k: int) -> dict[str, str]:
    """Each comparison tested at look k (0-based) and its decision there."""
    return {f"{g} {m}": t.looks[k].decision for (g, m), t in state.traces.items() if len(t.looks) > k}


def look_mismatch(record: dict, state: Sequential, k: int) -> str | None:
    """How the replay of look k differs from the record's, or None when it agrees."""
    recorded = record["looks"][k].get("decisions") if isinstance(record["looks"][k], dict) else None
    now_ = look_decisions(state, k)
    if recorded == now_:
        return None
    recorded = recorded if isinstance(recorded, dict) else {}
    which = next((c for c in sorted(set(now_) | set(recorded)) if recorded.get(c) != now_.get(c)), "")
    return (
        f"look {k + 1} recorded {which}: {recorded.get(which, 'not tested')}; the runs now give "
        f"{now_.get(which, 'not tested')} (a run was retrained, replaced or removed since)"
    )


# --- words for the progress view -----------------------------------------------------------


def look_lines(plan: SequentialPlan, state: Sequential, k: int) -> list[str]:
    """Each comparison tested at look k: its decision, difference and repeated interval."""
    lines = []
    for (group, metric), trace in state.traces.items():
        if len(trace.looks) <= k:
            continue
        look = trace.looks[k]
        ci = f"  repeated CI [{look.ci[0]:+.4f}, {look.ci[1]:+.4f}]" if look.ci else ""
        power = f"  predictive power {look.predictive_power:.2f}" if look.predictive_power is not None else ""
        lines.append(
            f"  {plan.labels[group]} vs {plan.labels[plan.reference]} ({metric}): {look.decision}"
            f"  diff {look.diff:+.4f}{ci}{power}"
        )
    settled = [g for g in plan.groups[1:] if _settled_at(state, g) == k]
    if settled and not state.sequence.done:
        lines.append(f"  settled, no more seeds: {', '.join(plan.labels[g] for g in settled)}")
    return lines


def _settled_at(state: Sequential, group: str) -> int | None:
    """The look (0-based) at which a group's last comparison settled; None while one is open."""
    traces = [t for (g, _), t in state.traces.items() if g == group]
    if not all(t.settled for t in traces):
        return None
    return max(len(t.looks) for t in traces) - 1
