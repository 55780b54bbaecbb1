"""masklab search: tune a spec's ops on validation with Optuna, then confirm on the test split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from masklab.cli.common import Format, FormatOption, HeaderOption, RunsDirOption, ThreadsOption, cli_command, say


@cli_command
def search(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="A YAML spec with a search: section.")],
    trials: Annotated[int, typer.Option("--trials", "-n", min=1, help="Finished trials the study should hold.")] = 20,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a spec key before searching (repeatable).")
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, help="Trials trained at once, each by a worker process.")
    ] = 1,
    confirm: Annotated[
        int,
        typer.Option(
            "--confirm",
            min=0,
            help="Then train the best configuration and the spec's own over N fresh seeds and compare them on the test split.",
        ),
    ] = 0,
    runs_dir: RunsDirOption = None,
    threads: ThreadsOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output on stderr.")] = False,
    fmt: FormatOption = Format.table,
    header: HeaderOption = True,
) -> None:
    """Search a spec's `search:` space with Optuna on the validation split.

    Every trial is an ordinary run (runs/<name>-search-<hash>-s<seed>) that never
    evaluates on the test split; Optuna's TPE sampler proposes, a median pruner stops
    trials whose validation curve trails, and the study lives in
    <runs dir>/<name>.search.db, so a killed search continues where it stopped and
    several processes can share it. The best configuration and its validation value
    end the output; --confirm N then retrains it and the spec's own configuration over
    N seeds the search never used and compares them on the test split, with the
    statistics of `masklab compare`. Needs Optuna: pip install 'masklab[search]'.
    A study on Fashion-MNIST: experiments/adaptive-search.yaml.

    Examples:

      masklab search experiments/search-quickstart.yaml --trials 4

      masklab search experiments/search-quickstart.yaml --trials 4 --confirm 2

      masklab search experiments/search-quickstart.yaml --trials 4 --format json
    """
    from masklab import threads as threads_mod

    threads_mod.configure(threads)  # before torch is imported
    from masklab.cli.study_view import StudyView
    from masklab.cli.tables import Column, render
    from masklab.store.runs import RunStore
    from masklab.study import search as search_mod

    store = RunStore(runs_dir)
    plan = search_mod.plan_search(spec_path, list(overrides or []), store.root)
    search_mod.require_optuna()
    note = (lambda message: None) if quiet else (lambda message: say(f"search {plan.name}: {message}"))
    execute = search_mod.through_executor(executor_for(jobs), store, StudyView(plan.name, quiet))
    note(f"study {plan.study_name} in {plan.db}; trials train with seed {plan.seed}, validated on {plan.metric}")
    result = search_mod.run_search(plan, trials, store, execute, jobs, note)
    keys = [k for k in (result.trials[0] if result.trials else {}) if k.startswith("search.")]
    columns = [Column(k) for k in ("trial", "state", plan.metric, "epochs")]
    columns += [Column(k, fmt=".4g") for k in keys] + [Column("run")]  # proposals: 4 significant digits
    body = {"study": result.study_name, "db": str(plan.db), "metric": plan.metric, "trials": result.trials}
    body["best"] = result.best
    confirmed = confirm_best(plan, result.best, confirm, store, execute) if confirm and result.best else None
    if fmt.value == "json":
        render([], [], "json", json_body=body | ({"confirm": confirmed[3]} if confirmed else {}))
        return
    if confirmed and fmt.value in ("csv", "jsonl"):  # one table per stream: the final answer
        render(*confirmed[:2], fmt.value, header=header)
        return
    render(result.trials, columns, fmt.value, title=f"search {result.study_name}", header=header)
    if result.best:
        best = result.best
        params = ", ".join(f"{k}={shown_value(v)}" for k, v in best["params"].items())
        typer.echo(f"\nbest: trial {best['trial']}, {plan.metric} {best[plan.metric]:.4f}: {params}")
    if confirmed:
        typer.echo()
        render(confirmed[0], confirmed[1], fmt.value, title=confirmed[2], header=header)


def shown_value(value) -> str:
    """A proposed value as a person reads it: floats to 4 significant digits (0.1493, not
    0.1493115016854058; --format json has every digit)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def executor_for(jobs: int):
    """Trials train in this process, or in `jobs` worker processes."""
    from masklab.study.executors.local import InProcess, Pool

    return Pool(jobs) if jobs > 1 else InProcess()


def confirm_best(plan, best: dict, n_seeds: int, store, execute) -> tuple[list[dict], list, str, dict]:
    """Train both configurations over fresh seeds; compare's rows, columns, title and JSON for the two."""
    from masklab.analysis import compare as cmp
    from masklab.cli.compare import comparison_columns
    from masklab.study import search as search_mod

    own, best_spec, seeds = search_mod.confirm_specs(plan, best["params"], n_seeds)
    say(f"search {plan.name}: confirming on seeds {seeds}: the spec's own configuration, then trial {best['trial']}'s")
    execute([own, best_spec])
    groups = []
    for spec in (own, best_spec):
        runs = [store.get(f"{spec.name}-{spec.group_hash()}-s{s}") for s in seeds]
        groups += cmp.group_runs([r for r in runs if r is not None and r.status == "done"])
    c = cmp.compare(groups, ["test_acc", "test_macro_f1"])
    cols = comparison_columns(c.keys)
    title = f"confirmation on the test split, seeds {seeds}: the spec's own ({own.name}) against trial {best['trial']} ({best_spec.name})"
    return cmp.rows(c), cols, title, cmp.json_body(c) | {"seeds": seeds}
