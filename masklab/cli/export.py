"""masklab export: existing runs into MLflow or TensorBoard, idempotently."""

from __future__ import annotations

from typing import Annotated

import typer

from masklab.cli.common import Format, FormatOption, HeaderOption, RunRefsArgument, RunsDirOption, cli_command, say


@cli_command
def export(
    refs: RunRefsArgument,
    to: Annotated[
        list[str],
        typer.Option(
            "--to",
            metavar="TRACKER",
            help="mlflow[:URI] (default sqlite:///mlflow.db) or tensorboard[:DIR] (default ./tensorboard); repeatable.",
        ),
    ],
    runs_dir: RunsDirOption = None,
    fmt: FormatOption = Format.table,
    header: HeaderOption = True,
) -> None:
    """Export runs to MLflow or TensorBoard; exporting again creates nothing new.

    MLflow: one MLflow run per masklab run, in the experiment named after its study or
    spec: the resolved spec as params (train_ops.0.rate), per-epoch metrics with the epoch
    as step, summary metrics, tags (masklab.run_id, study, group, seed, version, data
    fingerprint, your tags), and spec.yaml, summary.json, metrics.jsonl and the figures
    as artifacts. The MLflow run id is recorded in run.json. A second export finds the
    MLflow run by its masklab.run_id tag and adds only what is missing. An experiment
    created in sqlite:///DIR/NAME.db keeps its artifacts in DIR/NAME-artifacts/. The URI
    is checked first (exit 2: it cannot work; exit 1: the store cannot be reached or
    written), and a store that fails midway stops the export in one line. TensorBoard:
    event files in DIR/<run id>/. Needs pip install 'masklab\\[mlflow]' or
    'masklab\\[tensorboard]'.

    Examples:

      masklab export quickstart --to mlflow

      masklab export quickstart quickstart-static \\
          --to mlflow:sqlite:///mlflow.db --to tensorboard:tensorboard
    """
    from masklab.cli.tables import Column, render
    from masklab.errors import RunError
    from masklab.store.exporters import StoreFailed, export_run, first_line, open_exporter
    from masklab.store.runs import RunStore

    store = RunStore(runs_dir)
    runs = list({str(r.path.absolute()): r for ref in refs for r in store.resolve_many(ref)}.values())
    for run in runs:
        store.own(run)  # run.json gets the MLflow run id: only run folders of this store
    exporters = [open_exporter(t, "--to") for t in to]
    rows, failures = [], 0
    for run in runs:
        damage = run.damage()
        if damage:  # what it holds is not what masklab wrote: nothing to copy faithfully
            failures += 1
            say(f"warning: {run.id}: damaged ({damage}); not exported")
            continue
        if run.is_locked():
            say(f"warning: {run.id}: being trained by another process; export it when it ends (or train with --track)")
            continue
        for exporter in exporters:
            try:
                with run.lock():
                    synced = export_run(run, exporter, locked_by_us=True)
            except StoreFailed as exc:  # every later run would fail the same way
                done = len(rows)
                raise RunError(
                    f"--to {exporter.kind}:{exporter.target}: the store failed while exporting {run.id} ({exc}); "
                    f"{done} export(s) done before it, the run folders are unchanged; free space or fix the store, "
                    "then run the same export again (it adds only what is missing)"
                ) from None
            except Exception as exc:
                failures += 1
                say(f"warning: {run.id}: {exporter.kind} export failed: {first_line(exc)}")
                continue
            where = synced.location.get("run_id") or synced.location.get("logdir")
            rows.append(
                {
                    "run": run.id,
                    "to": exporter.kind,
                    "action": synced.action,
                    "written": synced.written,
                    "where": where,
                    **synced.location,
                }
            )
    for exporter in exporters:
        exporter.close()
    cols = [Column("run", id=True), Column("to"), Column("action"), Column("written"), Column("where")]
    render(rows, cols, fmt.value, title="export", header=header)
    if failures:
        raise RunError(f"{failures} export(s) failed; the run folders are unchanged")
