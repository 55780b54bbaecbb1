"""masklab runs (list) and masklab show (one run)."""

from __future__ import annotations

from typing import Annotated

import typer

from masklab.cli.common import Format, FormatOption, HeaderOption, RunsDirOption, cli_command, say
from masklab.errors import RunError


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
        "test_mlm_acc": summary.get("test_mlm_acc"),
        "tags": tags_text(info.get("tags")),
        "note": info.get("note"),
        "created": info.get("created"),
        "path": str(run.path),
        "damage": run.damage(),
    }


def list_columns() -> list:
    from masklab.cli.tables import Column

    return [
        Column("id", id=True),
        Column("status", keep=3),
        Column("name", table=False),  # the id starts with it
        Column("label", keep=1),  # a study's grid values (and variant); left out when no run has one
        Column("group", table=False),  # the id without its seed
        Column("seed", keep=2),
        Column("dataset"),
        Column("epochs"),
        Column("test_acc", keep=3),
        Column("test_macro_f1", "macro_f1", keep=0),
        Column("test_mlm_acc", "mlm_acc", keep=3),  # masked-language-model runs: masked-token accuracy
        Column("tags", keep=2),
        Column("note", keep=0),
        Column("created", keep=2),
        Column("path", table=False),
        Column("damage", keep=2),  # empty (and left out) unless a run's files are not what masklab wrote
    ]


def tags_text(tags: dict | None) -> str | None:
    return ",".join(f"{k}={v}" for k, v in tags.items()) if tags else None


def has_tags(run, wanted: dict[str, str]) -> bool:
    """The run carries every wanted tag with that value (a run without the key never matches)."""
    tags = run.info.get("tags") or {}
    return all(k in tags and str(tags[k]) == v for k, v in wanted.items())


@cli_command
def runs(
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Only the runs this name stands for, as compare, rm, tag and export read it: a spec name, group, "
            "study, <name>-s<seed>, run id or id prefix (a note on stderr when they would refuse it).",
        ),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help="Only runs with this status (done, failed, interrupted, running, pruned, stale, damaged).",
        ),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", metavar="KEY=VALUE", help="Only runs with this tag (masklab tag sets them; repeatable)."),
    ] = None,
    runs_dir: RunsDirOption = None,
    fmt: FormatOption = Format.table,
    header: HeaderOption = True,
) -> None:
    """List runs, oldest first.

    On a terminal the table fits its width; in a pipe it is tab-separated, the header
    row first (--no-header leaves it out). JSON, JSONL and CSV carry every column
    (name, group, note, path).

    Examples:

      masklab runs

      masklab runs --name quickstart --format csv

      masklab runs | awk -F'\\t' 'NR == 1 || $2 == "done"'

      masklab runs --no-header | sort -t$'\\t' -k7,7r

      masklab runs --format jsonl | wc -l
    """
    from masklab.cli.tables import render
    from masklab.keyvalue import parse_key_values
    from masklab.store.runs import RunStore

    store = RunStore(runs_dir)
    wanted = parse_key_values(tag or [], "--tag", "--tag paper=fig2")
    named = None if name is None else named_paths(store, name)
    selected = [
        r
        for r in store.all()
        if (named is None or r.path in named) and (status is None or r.status == status) and has_tags(r, wanted)
    ]
    render([run_row(r) for r in selected], list_columns(), fmt.value, title=f"runs in {store.root}", header=header)


def named_paths(store, name: str) -> set:
    """The folders of every run `name` stands for, as compare, rm, tag and export read it;
    when those refuse it (it stands for several groups where one is meant), a note says why."""
    from masklab.store.names import Ambiguous

    try:
        store.resolve_many(name)
    except Ambiguous as exc:
        say(f"note: {exc.reason}; other commands refuse the name: name a group or a run id")
    except RunError:  # names nothing: an empty list
        pass
    return {r.path for r in store.lookup(name).runs}


@cli_command
def show(
    run_ref: Annotated[
        str,
        typer.Argument(
            metavar="RUN",
            help="A run id, unique id prefix, <name>-s<seed>, or a path to its folder in the runs folder.",
        ),
    ],
    runs_dir: RunsDirOption = None,
    fmt: FormatOption = Format.table,
    header: HeaderOption = True,
) -> None:
    """Show one run: identity, final metrics, per-class recall, robustness grid, per-epoch log.

    In a table view the parts follow each other, each under its own header row; JSON holds
    everything (run.json, the spec, summary.json, metrics.jsonl, stored evaluations);
    JSONL and CSV hold the per-epoch log.

    Examples:

      masklab show quickstart-s0

      masklab show quickstart-s0 --format json
    """
    from masklab.cli.tables import Column, render
    from masklab.store.runs import RunStore

    run = RunStore(runs_dir).resolve(run_ref)
    info, summary, metrics = run.info, run.summary, run.metrics()
    damage = run.damage()
    if fmt.value == "json":
        body = {
            "run": {**info, "status": run.status, "damage": damage, "path": str(run.path)},
            "spec": run.spec,
            "summary": summary,
            "metrics": metrics,
            "evals": run.evals(),
        }
        render([], [], "json", json_body=body)
        return
    if fmt.value in ("jsonl", "csv"):
        keys = sorted({k for row in metrics for k in row if not isinstance(row[k], (list, dict))}, key=_metric_order)
        render(metrics, [Column(k) for k in keys], fmt.value, header=header)
        return
    parts = [(_facts(run), [Column("key"), Column("value")], run.id)]
    recall = summary.get("per_class_recall") or {}
    if recall:
        parts.append(
            (
                [{"class": k, "test_recall": v} for k, v in recall.items()],
                [Column("class", id=True), Column("test_recall")],
                "per-class recall (test)",
            )
        )
    grid = summary.get("robustness") or []
    if grid:
        parts.append(
            (
                [{"corruption": c["name"], "acc": c["acc"], "macro_f1": c.get("macro_f1")} for c in grid],
                [Column("corruption", id=True), Column("acc"), Column("macro_f1")],
                "robustness grid (test)",
            )
        )
    if metrics:
        keys = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_mlm_acc", "lr", "seconds"]
        parts.append((metrics, [Column(k) for k in keys if k in metrics[0]], "per epoch"))
        for title, rows, names in adaptive_tables(metrics, info.get("data", {}).get("classes") or []):
            parts.append((rows, [Column(k) for k in names], title))
    for i, (rows, cols, title) in enumerate(parts):
        if i:
            print()
        render(rows, cols, fmt.value, title=title, header=header)


def _facts(run) -> list[dict]:
    info, summary = run.info, run.summary
    figures = sorted(p.name for p in run.path.glob("*.png"))
    mlflow = info.get("mlflow") if isinstance(info.get("mlflow"), dict) else {}
    damage = run.damage()
    facts = {
        "id": run.id,
        "status": run.status,
        "seed": info.get("seed"),
        "device": info.get("device"),
        "dataset": info.get("data", {}).get("dataset"),
        "data fingerprint": info.get("data", {}).get("fingerprint"),
        "data inputs": _inputs_text(info.get("data", {}).get("inputs")),
        "init from": _init_text(info.get("init_from")),
        "model": (run.spec.get("model") or {}).get("arch"),
        "parameters": info.get("parameters"),
        "epochs": info.get("epochs_done"),
        "test_acc": summary.get("test_acc"),
        "test_macro_f1": summary.get("test_macro_f1"),
        "test_mlm_acc": summary.get("test_mlm_acc"),
        "val_mlm_acc": summary.get("val_mlm_acc", (run.metrics() or [{}])[-1].get("val_mlm_acc")),
        "test_loss": summary.get("test_loss") if "test_acc" not in summary else None,  # masked modeling's own
        "robust_acc": summary.get("robust_acc"),
        "train_seconds": summary.get("train_seconds"),
        "created": info.get("created"),
        "tags": tags_text(info.get("tags")),
        "note": info.get("note"),
        "mlflow run": f"{mlflow.get('run_id')} in {mlflow.get('tracking_uri')}" if mlflow.get("run_id") else None,
        "figures": " ".join(figures) if figures else None,
        "error": info.get("error"),
        "damaged": damage,
        "path": str(run.path),
    }
    return [{"key": k, "value": v} for k, v in facts.items() if v is not None]


def _inputs_text(inputs: object) -> str | None:
    """The files a run's data was read from, with their SHA-256 (12 digits), and whether
    they still hold what the run read."""
    from masklab.data import fingerprint

    if not isinstance(inputs, list) or not all(isinstance(p, dict) and isinstance(p.get("path"), str) for p in inputs):
        return None
    shown = ", ".join(f"{p['path']} (sha256 {str(p.get('sha256'))[:12]})" for p in inputs[:4])
    shown += f", ... ({len(inputs)} in all)" if len(inputs) > 4 else ""
    change = fingerprint.pin_difference(inputs, fingerprint.pin([p["path"] for p in inputs]))
    return f"{shown}; {change}" if change else shown


def _init_text(init: object) -> str | None:
    """The run a fine-tune's weights came from, and their SHA-256 (16 digits)."""
    if not isinstance(init, dict) or not init.get("run"):
        return None
    digest = init.get("model_sha256")
    return f"{init['run']}" + (f" (model.pt sha256 {str(digest)[:16]})" if digest else "")


def adaptive_tables(metrics: list[dict], classes: list[str]) -> list[tuple[str, list[dict], list[str]]]:
    """One table per adaptive parameter: its values per epoch, a column per class (adapt:
    class) or their spread over the training examples (adapt: sample)."""
    tables = []
    names = sorted({k for row in metrics for k in row.get("adaptive", {})})
    for name in names:
        rows, columns = [], ["epoch"]
        for row in metrics:
            entry = row.get("adaptive", {}).get(name)
            if entry is None:
                continue
            if entry["adapt"] == "class":
                labels = [str(c) for c in classes] if len(classes) == len(entry["values"]) else None
                labels = labels or [str(i) for i in range(len(entry["values"]))]
                columns = ["epoch", *labels]
                rows.append({"epoch": row["epoch"], **dict(zip(labels, entry["values"]))})
            else:
                columns = ["epoch", "mean", "min", "max", "loss_avg"]
                rows.append({"epoch": row["epoch"], **{k: entry[k] for k in columns[1:]}})
        kind = "per class" if columns[1:2] != ["mean"] else "over the training examples"
        tables.append((f"{name} {kind}, the value each epoch trained with", rows, columns))
    return tables


def _metric_order(key: str) -> tuple:
    order = [
        "epoch",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "val_mlm_acc",
        "lr",
        "train_seconds",
        "seconds",
        "samples_per_s",
    ]
    return (order.index(key) if key in order else len(order), key)
