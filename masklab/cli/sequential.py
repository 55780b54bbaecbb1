"""What train and compare print for a sequential study: the plan that --dry-run shows,
and the table of its comparisons (each decision, where it was decided, the difference
and its repeated confidence interval) with the runs spent next to a fixed design's."""

from __future__ import annotations

from masklab.cli.common import say
from masklab.cli.tables import Column, render

FIXED = "; --fixed-n shows the fixed-n table (it ignores the looks)"

STUDY_COLUMNS = (
    "metric",
    "n",
    "mean",
    "std",
    "min",
    "max",
    "diff",
    "ci_low",
    "ci_high",
    "interval",
    "verdict",
    "decided_at",
    "why",
)
FORMATS = {"diff": "+.4f", "ci_low": "+.4f", "ci_high": "+.4f"}
KEEP = {"metric": 3, "mean": 3, "diff": 2, "verdict": 3, "decided_at": 3}  # on a narrow terminal these go last
FIXED_N_ONLY = ("p", "p_adj", "p_equiv", "p_equiv_adj", "p_outperform", "p_outperform_ci", "seeds_for_power")
PLAN_COLUMNS = ("look", "seeds", "runs_at_most", "alpha_spent", "nominal_p", "t_critical")
PLAN_FORMATS = {"alpha_spent": ".3g", "nominal_p": ".3g", "t_critical": ".4g"}


def spent(c, record_path=None) -> dict:
    """Runs the sequence used, next to the fixed design's groups x max_seeds."""
    s = c.sequential
    body = {
        "runs_spent": sum(s.seeds_used.values()),
        "fixed_design_runs": len(s.seeds_used) * s.design.max_seeds,
    }
    return body | ({"record": str(record_path)} if record_path else {})


def title(name: str, c) -> str:
    s, used = c.sequential, spent(c)
    where = "settled" if s.sequence.done else f"open after look {s.sequence.looks_done}"
    return (
        f"sequential study {name}: {where} ({s.sequence.looks_done} of {len(s.design.looks)} looks); "
        f"{used['runs_spent']} runs, a fixed design with {s.design.max_seeds} seeds: {used['fixed_design_runs']}"
    )


def render_study(c, fmt: str, name: str, record_path=None, sort=None, header: bool = True) -> None:
    """The comparisons of a sequential study on stdout (notes on stderr)."""
    from masklab.analysis import compare as cmp
    from masklab.analysis.sequential_compare import RULES

    for w in c.warnings:
        say(f"warning: {w}")
    for note in c.notes:
        say(f"note: {note}")
    rows = cmp.rows(c)
    for row in rows:
        row["decided_at"] = c.sequential.decided_at(row["group"], row["metric"])
    rows = sort(rows) if sort else rows
    cols = [Column("group", id=True)] + [Column(k) for k in c.keys]
    cols += [Column(k, fmt=FORMATS.get(k, ""), keep=KEEP.get(k, 1)) for k in STUDY_COLUMNS]
    body = cmp.json_body(c) | {"verdict_rules": RULES}
    for entry in body["comparisons"]:
        for key in FIXED_N_ONLY:
            entry.pop(key, None)
        entry["decided_at"] = c.sequential.decided_at(entry["group"], entry["metric"])
    body["sequential"] = c.sequential.as_dict() | spent(c, record_path)
    render(rows, cols, fmt, title=title(name, c), json_body=body, header=header)


def show_plan(plan, store, fmt: str, header: bool = True) -> None:
    """--dry-run of a sequential study: the design, each look's boundary and the most runs
    it may train; checks a recorded study against the command; creates nothing."""
    from masklab.analysis.sequential import boundary_table
    from masklab.store import study_record
    from masklab.study.sequential import check_record
    from masklab.study.states import read_states

    design, groups = plan.design, len(plan.groups)
    record = study_record.read_record(store.root, plan.study.name)
    if record is not None:
        check_record(plan, record, store.root)
    done = sum(s.state == "done" for s in read_states(plan.study, store))
    rows = [row | {"runs_at_most": groups * row["seeds"]} for row in boundary_table(design)]
    most = groups * design.max_seeds
    say(f"sequential study {plan.study.name}: {design.describe()}")
    say(
        f"comparisons ({len(plan.comparisons)}): each of {', '.join(plan.labels[g] for g in plan.groups[1:])} "
        f"against {plan.labels[plan.reference]} on {', '.join(plan.metrics)}; seeds 0-{design.max_seeds - 1} in order"
    )
    say(
        f"at most {most} runs ({groups} groups x {design.max_seeds} seeds, a fixed design's count); {done} done already"
    )
    state = None
    if record is not None:
        state = {"path": str(study_record.record_path(store.root, plan.study.name)), "status": record.get("status")}
        state["looks_done"] = len(record.get("looks") or [])
        say(f"recorded in {state['path']}: {state['looks_done']} look(s) done, {state['status']}")
    body = {
        "study": plan.study.name,
        "design": design.as_dict(),
        "describe": design.describe(),
        "reference": plan.reference,
        "groups": plan.groups,
        "comparisons": [{"group": c.group, "metric": c.metric} for c in plan.comparisons],
        "looks": rows,
        "max_runs": most,
        "runs_done": done,
        "record": state,
    }
    cols = [Column("look", id=True), *(Column(k, fmt=PLAN_FORMATS.get(k, "")) for k in PLAN_COLUMNS[1:])]
    render(
        rows, cols, fmt, title=f"sequential study {plan.study.name}: at most {most} runs", json_body=body, header=header
    )


# --- compare over a recorded study ------------------------------------------------------------


def records_of(store, runs) -> dict[str, dict]:
    """The records of the sequential studies these runs belong to (study name -> record)."""
    from masklab.store import study_record

    out = {}
    for study in dict.fromkeys(r.info.get("study") for r in runs):
        if isinstance(study, str):
            record = study_record.read_record(store.root, study)
            if record is not None:
                out[study] = record
    return out


def fixed_n_note(study: str, store, why: str) -> str:
    from masklab.store.study_record import record_path

    return (
        f"{study} is a sequential study ({record_path(store.root, study)}) and {why}: fixed-n p-values and "
        "intervals ignore the looks that chose its seeds and do not hold their stated level (exploratory)"
    )


def compare_recorded(
    store, study: str, record: dict, named, asked: list[str] | None, gates, min_effect: float, all_keys: bool = False
):
    """compare over a recorded sequential study: the design's verdicts and repeated intervals
    for the groups and metrics named. Returns the Comparison (filtered to them)."""
    from masklab.analysis.sequential_compare import compare_study
    from masklab.store.study_record import record_path
    from masklab.study.sequential import recorded_design

    design = recorded_design(record, store.root, study)
    path = record_path(store.root, study)
    metrics, keys = _asked(study, record, design, named, asked, gates, min_effect, path)
    c = compare_study(
        _design_groups(store, study, record["groups"], path), record["metrics"], design, record["seeds"], all_keys
    )
    _check_against_record(c, record, path)
    c.notes.append(
        f"{study} is a sequential study ({path}): verdicts and repeated confidence intervals follow its design "
        f"({design.describe()}), seeds only; no fixed-n p is shown, as it would ignore the looks{FIXED}"
    )
    return _only(c, set(keys) | {record["groups"][0]}, metrics, all_keys)


def _asked(study: str, record: dict, design, named, asked, gates, min_effect: float, path) -> tuple[list, list]:
    """The metrics and groups a compare command asks of a sequential study, refused (exit 2,
    with the fix) where the design has no answer: a fixed-n p, another metric, another
    min_effect, a group outside the study, another reference."""
    from masklab.analysis import compare as cmp
    from masklab.errors import UsageError

    for gate in gates:
        if gate.field in ("p", "p_adj"):
            raise UsageError(
                f"--fail-if {gate.text!r}: a sequential study has no fixed-n p (its verdicts follow the boundaries of "
                f"its looks); gate on ci_low or ci_high, its repeated confidence interval{FIXED}"
            )
    metrics = list(dict.fromkeys([cmp.canonical(m) for m in (asked or record["metrics"])] + [g.metric for g in gates]))
    outside = [m for m in metrics if m not in record["metrics"]]
    if outside:
        raise UsageError(
            f"--metric {outside[0]}: study {study}'s design compares {', '.join(record['metrics'])} ({path}){FIXED}"
        )
    if min_effect and min_effect != design.min_effect:
        raise UsageError(
            f"--min-effect {min_effect:g}: study {study}'s design has min_effect {design.min_effect:g} ({path})"
        )
    keys = [g.key for g in cmp.group_runs(named)]
    strange = [k for k in keys if k not in record["groups"]]
    if strange:
        raise UsageError(f"{strange[0]}: not a group of sequential study {study} ({path}){FIXED}")
    if len(keys) > 1 and keys[0] != record["groups"][0]:
        raise UsageError(f"study {study}'s design compares each group with {record['groups'][0]}: name it first{FIXED}")
    return metrics, keys


def _design_groups(store, study: str, keys: list[str], path) -> list:
    """The finished runs of every group of the design, in its order (all of them: the
    sequence is replayed whole, whatever the command names)."""
    from masklab.analysis import compare as cmp
    from masklab.errors import RunError

    runs = [r for r in store.all() if r.info.get("group") in keys and r.status == "done"]
    by_key = {g.key: g for g in cmp.group_runs(runs)}
    empty = [k for k in keys if k not in by_key]
    if empty:
        raise RunError(f"study {study}: group {empty[0]} of its design has no finished runs in {store.root} ({path})")
    return [by_key[k] for k in keys]


def _check_against_record(c, record: dict, path) -> None:
    """A warning for every look where the runs no longer give the recorded decisions."""
    from masklab.study.sequential import look_mismatch

    done = c.sequential.sequence.looks_done
    for k in range(min(len(record["looks"]), done)):
        differs = look_mismatch(record, c.sequential, k)
        if differs:
            c.warnings.append(f"{path}: {differs}")
    if done < len(record["looks"]):
        c.warnings.append(f"{path} records {len(record['looks'])} looks; the runs give {done}")


def _only(c, keys: set[str], metrics: list[str], all_keys: bool):
    """The Comparison of the groups and metrics asked for (the reference always)."""
    import dataclasses

    from masklab.analysis import compare as cmp

    kept = [g for g in c.groups if g.key in keys]
    return dataclasses.replace(
        c,
        groups=kept,
        metrics=metrics,
        keys=c.keys if all_keys or len(kept) < 2 else cmp.differing_keys(kept),
        differences={k: {m: d[m] for m in metrics} for k, d in c.differences.items() if k in keys},
    )
