"""What `masklab train` does with a study: the options that plan and execute it, the
--dry-run table, the choice of executor, the summary rows and the exit status."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from masklab.cli import tables
from masklab.cli.tables import Column, columns


class ExecutorName(str, Enum):
    local = "local"
    ray = "ray"


GridOption = Annotated[
    list[str] | None,
    typer.Option(
        "--grid",
        metavar="KEY=V1,V2",
        help="Train every value of a key: --grid 'train_ops[0].rate=0.1,0.25,0.5' (repeatable: the study is the product).",
        show_default=False,
    ),
]
DryRunOption = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="List every run of the study (id, label, state, estimated seconds, action) and the time it would take here; train nothing.",
    ),
]
JobsOption = Annotated[
    int,
    typer.Option(
        "--jobs", "-j", metavar="N", min=1, help="Worker processes on this machine, each with its share of the cores."
    ),
]
ExecutorOption = Annotated[
    ExecutorName,
    typer.Option(
        "--executor",
        metavar="local|ray",
        help="local (this machine, --jobs workers) or ray (one Ray task per run; pip install 'masklab[ray]').",
    ),
]
AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        metavar="ADDRESS",
        help="Ray cluster: auto (a running cluster) or ray://host:port; default: start one here.",
    ),
]
NumCpusOption = Annotated[
    float | None,
    typer.Option("--num-cpus", metavar="N", min=0, help="Ray: CPUs per run (default: resources.num_cpus, else 1)."),
]
NumGpusOption = Annotated[
    float | None,
    typer.Option(
        "--num-gpus",
        metavar="N",
        min=0,
        help="Ray: GPUs per run, fractional packs runs onto a GPU (0.25: four per GPU).",
    ),
]
GpuFractionOption = Annotated[
    float | None,
    typer.Option(
        "--gpu-fraction",
        metavar="F",
        help="With --jobs on a GPU machine: the share of a GPU's memory each run may use.",
    ),
]


class Until(str, Enum):
    decided = "decided"
    all = "all"


UntilOption = Annotated[
    Until | None,
    typer.Option(
        "--until",
        metavar="decided|all",
        help="decided: train seeds in looks until every group's comparison with the first is settled (a sequential study; the default when the spec has sequential:); all: every planned seed.",
        show_default=False,
    ),
]
MaxSeedsOption = Annotated[
    int | None,
    typer.Option(
        "--max-seeds",
        metavar="N",
        min=3,
        help="With --until decided: at most N seeds per group (default 20).",
        show_default=False,
    ),
]
MinEffectOption = Annotated[
    float | None,
    typer.Option(
        "--min-effect",
        metavar="D",
        min=0.0,
        help="With --until decided: differences within +-D are practically equal; 'equivalent' becomes a decision.",
        show_default=False,
    ),
]
MetricOption = Annotated[
    list[str] | None,
    typer.Option(
        "--metric",
        "-m",
        metavar="METRIC",
        help="With --until decided: the metric(s) compared (default test_acc; repeatable).",
        show_default=False,
    ),
]

PLAN_COLUMNS = ("id", "label", "seed", "state", "epochs", "action", "detail")


def show_plan(study, store, force: bool, resume: bool, fmt: str, header: bool = True) -> None:
    """--dry-run: every run, where it stands, what the study would do with it."""
    from masklab.study import pins, sources
    from masklab.study.executors import work_items
    from masklab.study.states import TRAINING_ACTIONS, counts, read_states

    study = sources.pin_study(study, store)
    states = read_states(study, store, force, resume)
    problems = pins.check_states(states, store, force)
    rows = [s.row() for s in states]
    for row in rows:  # what a real run would refuse, and runs waiting for their init_from source
        if row["id"] in problems:
            row["action"], row["detail"] = problems[row["id"]]
    batches = {
        rid: ",".join(map(str, item.seeds))
        for item in work_items([s for s in states if s.action in TRAINING_ACTIONS and s.id not in problems])
        if len(item.seeds) > 1
        for rid in item.ids
    }
    if batches:  # train.seed_batch: the seeds that train together as one batched model
        rows = [{**row, "batch": batches.get(row["id"])} for row in rows]
    tally = counts(states)
    keys = [f"grid.{a.path}" for a in study.axes] + (["batch"] if batches else [])
    rows, estimate = estimated(states, rows, store)
    body = {
        "study": study.name,
        "runs": len(rows),
        "counts": tally,
        "axes": {a.path: list(a.values) for a in study.axes},
        "estimate": estimate,
        "rows": rows,
    }
    title = f"study {study.name}: {len(rows)} runs ({', '.join(f'{n} {k}' for k, n in tally.items())})"
    shown = (*PLAN_COLUMNS, *keys[len(study.axes) :]) if fmt in ("table", "md") else (*PLAN_COLUMNS, *keys)
    cols = columns(Column("id", id=True), *shown[1:4], Column("estimate_s", "est_s", fmt=".0f"), *shown[4:])
    tables.render(rows, cols, fmt, title=title, json_body=body, header=header)
    from masklab.cli.common import say

    say(estimate["text"])


def estimated(states, rows: list[dict], store) -> tuple[list[dict], dict]:
    """Each row with its estimated seconds here (None: nothing to train, or no measured
    run of its kind), and the study's total with the words that explain it."""
    from masklab.study import estimate
    from masklab.study.states import TRAINING_ACTIONS

    rates, full = estimate.measured_rates(store)
    out, total, used, missing = [], 0.0, {}, {}
    for state, row in zip(states, rows):
        spec, trains = state.planned.spec, state.action in TRAINING_ACTIONS
        left = spec.train.epochs - ((state.epochs_done or 0) if state.action == "resume" else 0)
        found = estimate.seconds(spec, left, rates, full) if trains else None
        if found:
            total += found[0]
            used[found[1]] = True
        elif trains:
            reason = estimate.why_not(spec, rates, full)
            missing[reason] = missing.get(reason, 0) + 1
        out.append({**row, "estimate_s": round(found[0], 1) if found else None})
    known = sum(r["estimate_s"] is not None for r in out)
    text = estimate_text(total, known, list(used), missing)
    return out, {"seconds": round(total, 1), "runs": known, "runs_without": sum(missing.values()), "text": text}


def estimate_text(total: float, known: int, rates: list, missing: dict[str, int]) -> str:
    """The dry run's line on stderr: the total, what it rests on, what it leaves out."""
    if not known and not missing:
        return "estimate: nothing to train"
    parts = []
    if known:
        basis = "; ".join(
            f"{r.runs} finished run(s) here on {r.device}: {r.epoch_seconds:.1f} s an epoch of {r.samples:,} "
            f"samples, {r.overhead:.1f} s beyond their epochs"
            for r in rates
        )
        parts.append(f"estimate: about {duration_words(total)} for {known} run(s), one after another ({basis})")
    for reason, n in missing.items():
        parts.append(
            f"no estimate for {n} run(s): {reason}; train one epoch of one (e.g. --seeds 0 --set train.epochs=1) "
            "and ask again"
        )
    return "\n".join(parts)


def duration_words(seconds: float) -> str:
    minutes = round(seconds / 60)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def make_executor(
    name: ExecutorName, jobs: int, threads: int | None, address, num_cpus, num_gpus, gpu_fraction, resources: dict
):
    from masklab.errors import UsageError

    if name == ExecutorName.ray:
        from masklab.study.executors.ray_tasks import RayTasks

        cpus = num_cpus if num_cpus is not None else resources.get("num_cpus", 1.0)
        gpus = num_gpus if num_gpus is not None else resources.get("num_gpus", 0.0)
        return RayTasks(address, cpus, gpus)  # names the install command when Ray is missing
    if address or num_cpus is not None or num_gpus is not None:
        raise UsageError("--address, --num-cpus and --num-gpus are for --executor ray")
    from masklab.study.executors.local import InProcess, Pool

    if jobs == 1 and gpu_fraction is None:
        return InProcess()
    warn_oversubscribed(jobs, threads)
    return Pool(jobs, threads, gpu_fraction)


def warn_oversubscribed(jobs: int, threads: int | None) -> None:
    """Say so when --jobs workers x their threads ask for more cores than this process may use."""
    from masklab import threads as threads_mod
    from masklab.cli.common import say

    each, cores, source = threads_mod.choose_threads(threads, jobs)
    if jobs * each > cores:
        given = f"{each} thread(s) each ({source})" if source != "cores" else "1 thread each"
        fit = max(1, cores // each)
        say(
            f"warning: --jobs {jobs} with {given} asks for {jobs * each} cores, {cores} usable: runs slow each other; --jobs {fit} fits"
        )


SUMMARY_COLUMNS = (
    "run",
    "seed",
    "status",
    "epochs",
    "test_acc",
    "test_macro_f1",
    "test_mlm_acc",
    "test_loss",
    "val_acc",
    "val_mlm_acc",
    "train_seconds",
    "path",
)


def summary_rows(results) -> list[dict]:
    return [
        {
            "run": r.id,
            "seed": r.seed,
            "status": r.status,
            "epochs": r.summary.get("epochs"),
            "test_acc": r.summary.get("test_acc"),
            "test_macro_f1": r.summary.get("test_macro_f1"),
            "test_mlm_acc": r.summary.get("test_mlm_acc"),  # masked-language modeling: masked-token accuracy
            "test_loss": r.summary.get("test_loss"),
            "val_acc": r.summary.get("val_acc"),
            "val_mlm_acc": r.summary.get("val_mlm_acc"),
            "train_seconds": r.summary.get("train_seconds"),
            "path": r.path or None,
        }
        for r in results
    ]


def report(results, fmt: str, title: str, header: bool = True) -> None:
    """The summary table on stdout; then an error for the runs that did not finish."""
    from masklab.errors import MasklabError, RunError

    bad = [r for r in results if r.status not in ("done", "reused")]
    if len(results) == 1 and bad:
        error = MasklabError(bad[0].error)
        error.exit_code = bad[0].exit_code or 1
        raise error
    cols = columns(Column("run", id=True), *SUMMARY_COLUMNS[1:-1], Column("path", table=False))
    tables.render(summary_rows(results), cols, fmt, title=title, header=header)
    if bad:
        listed = "; ".join(f"{r.id}: {r.error}" for r in bad[:3]) + ("; ..." if len(bad) > 3 else "")
        raise RunError(f"{len(bad)} of {len(results)} runs did not finish ({listed})")


def sequential_settings(raw: dict, sets: list[str], until: str | None, options: dict):
    """(the sequential settings, the --set assignments of the runs): settings when the
    study is sequential (--until decided, or a spec with `sequential:` and no --until),
    else None; a `sequential:` section is checked either way."""
    from masklab.errors import UsageError
    from masklab.study.sequential_plan import SECTION, read_settings, section_sets

    mine, others = section_sets(sets)
    declared = SECTION in raw or bool(mine)
    if until == "decided" or (until is None and declared):
        return read_settings(raw.get(SECTION), mine, options), others
    given = [f"--{k.replace('_', '-')}" for k, v in options.items() if v is not None]
    if given:
        now = "--until all trains every planned seed" if until else "without it every planned seed trains"
        raise UsageError(f"{given[0]} goes with --until decided (a sequential study); {now}")
    if declared:
        from masklab.cli.common import say

        read_settings(raw.get(SECTION), mine, {})
        say(f"note: --until all: the spec's {SECTION}: section is left aside and every planned seed trains")
    return None, others


def report_sequential(outcome, store, fmt: str, header: bool = True) -> None:
    """The study's comparisons on stdout; then an error for runs of a look that did not finish."""
    from masklab.analysis.sequential_compare import compare_study
    from masklab.cli.common import say
    from masklab.cli.sequential import render_study
    from masklab.errors import RunError
    from masklab.store.study_record import record_path
    from masklab.study.sequential import study_groups

    plan = outcome.plan
    if outcome.state is not None:
        groups = study_groups(plan, store, plan.design.max_seeds)
        c = compare_study(groups, plan.metrics, plan.design, plan.seeds)
        render_study(c, fmt, plan.study.name, record_path(store.root, plan.study.name), header=header)
        say(
            f"{outcome.runs_spent} runs in the sequence ({len(outcome.trained)} trained by this command); "
            f"a fixed design with {plan.design.max_seeds} seeds per group trains {outcome.fixed_runs}"
        )
    if outcome.failed:
        look = (outcome.state.sequence.looks_done if outcome.state else 0) + 1
        bad = outcome.failed
        listed = "; ".join(f"{r.id}: {r.error}" for r in bad[:3]) + ("; ..." if len(bad) > 3 else "")
        raise RunError(
            f"{len(bad)} run(s) of look {look} did not finish, so the study stops before that look's decisions "
            f"({listed}); run the same command again with --resume to retry them"
        )
