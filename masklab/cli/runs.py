"""masklab runs (list) and masklab show (one run)."""

from __future__ import annotations

from typing import Annotated

import typer

from masklab.cli.common import Format, FormatOption, RunsDirOption, cli_command

LIST_COLUMNS = ("id", "status", "name", "label", "seed", "dataset", "epochs", "test_acc", "created")


def run_row(run) -> dict:
    info, summary = run.info, run.summary
    return {
        "id": run.id,
        "status": run.status,
        "name": info.get("name"),
        "label": info.get("label"),
        "group": info.get("group"),
        "seed": info.get("seed"),
        "dataset": info.get("data", {}).get("dataset"),
        "epochs": info.get("epochs_done"),
        "test_acc": summary.get("test_acc"),
        "test_macro_f1": summary.get("test_macro_f1"),
        "created": info.get("created"),
        "path": str(run.path),
    }


@cli_command
def runs(
    name: Annotated[str | None, typer.Option("--name", help="Only runs of this spec name.")] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only runs with this status (done, failed, interrupted, running, stale)."),
    ] = None,
    runs_dir: RunsDirOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """List runs, oldest first.

    Examples:

      masklab runs

      masklab runs --name quickstart --format csv

      masklab runs --format json | python -c 'import json,sys; print(len(json.load(sys.stdin)["rows"]))'
    """
    from masklab.analysis.tables import columns, render
    from masklab.store.runs import RunStore

    store = RunStore(runs_dir)
    rows = [run_row(r) for r in store.all()]
    rows = [r for r in rows if (name is None or r["name"] == name) and (status is None or r["status"] == status)]
    render(rows, columns(*LIST_COLUMNS, "group", "test_macro_f1", "path"), fmt.value, title=f"runs in {store.root}")


@cli_command
def show(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="A run id, unique id prefix, or path to a run folder.")],
    runs_dir: RunsDirOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Show one run: its identity, data, final metrics and per-epoch log.

    Examples:

      masklab show quickstart

      masklab show runs/quickstart-1a2b3c4d-s0 --format json
    """
    from masklab.analysis.tables import Column, render
    from masklab.store.runs import RunStore

    run = RunStore(runs_dir).resolve(run_ref)
    info, summary, metrics = run.info, run.summary, run.metrics()
    if fmt.value == "json":
        body = {
            "run": {**info, "status": run.status, "path": str(run.path)},
            "spec": run.spec,
            "summary": summary,
            "metrics": metrics,
            "evals": run.evals(),
        }
        render([], [], "json", json_body=body)
        return
    if fmt.value in ("jsonl", "csv"):
        keys = sorted({k for row in metrics for k in row if not isinstance(row[k], (list, dict))}, key=_metric_order)
        render(metrics, [Column(k) for k in keys], fmt.value)
        return
    facts = {
        "id": run.id,
        "status": run.status,
        "seed": info.get("seed"),
        "device": info.get("device"),
        "dataset": info.get("data", {}).get("dataset"),
        "data fingerprint": info.get("data", {}).get("fingerprint"),
        "model": run.spec.get("model", {}).get("arch"),
        "parameters": info.get("parameters"),
        "epochs": info.get("epochs_done"),
        "test_acc": summary.get("test_acc"),
        "test_macro_f1": summary.get("test_macro_f1"),
        "train_seconds": summary.get("train_seconds"),
        "created": info.get("created"),
        "error": info.get("error"),
        "path": str(run.path),
    }
    rows = [{"key": k, "value": v} for k, v in facts.items() if v is not None]
    render(rows, [Column("key"), Column("value")], fmt.value, title=run.id)
    if metrics:
        print()
        keys = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"]
        render(metrics, [Column(k) for k in keys if k in metrics[0]], fmt.value, title="per epoch")


def _metric_order(key: str) -> tuple:
    order = [
        "epoch",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "lr",
        "train_seconds",
        "seconds",
        "samples_per_s",
    ]
    return (order.index(key) if key in order else len(order), key)
