"""masklab train: one run per seed of a spec."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from masklab.cli.common import Format, FormatOption, RunsDirOption, ThreadsOption, cli_command, say

SUMMARY_COLUMNS = (
    "run",
    "seed",
    "status",
    "epochs",
    "test_acc",
    "test_macro_f1",
    "test_loss",
    "val_acc",
    "train_seconds",
)


def parse_seeds(text: str) -> list[int]:
    from masklab.errors import UsageError

    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--seeds {text}: expected integers separated by commas, e.g. --seeds 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise UsageError(f"--seeds {text}: expected distinct non-negative integers, e.g. --seeds 0,1,2")
    return seeds


@cli_command
def train(
    spec_path: Annotated[
        Path, typer.Argument(metavar="SPEC", help="A YAML experiment spec, e.g. experiments/quickstart.yaml.")
    ],
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Override a spec key: --set train.lr=0.01 --set 'train_ops[0].rate=0.5' (repeatable).",
        ),
    ] = None,
    seeds: Annotated[
        str | None, typer.Option("--seeds", metavar="LIST", help="Seeds to train, replacing the spec's: --seeds 0,1,2.")
    ] = None,
    device: Annotated[
        str | None,
        typer.Option("--device", metavar="DEVICE", help="auto, cpu, cuda, cuda:N or mps (sets train.device)."),
    ] = None,
    variant: Annotated[
        list[str] | None,
        typer.Option(
            "--variant", metavar="LABEL", help="Train only this variant of a spec with variants: (repeatable)."
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue interrupted runs from their last completed epoch.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Train again even if a finished run with the same id exists.")
    ] = False,
    track: Annotated[
        list[str] | None,
        typer.Option(
            "--track",
            metavar="TRACKER",
            help="Also log each run to mlflow[:URI] (default sqlite:///mlflow.db) or tensorboard[:DIR] (default ./tensorboard); repeatable. Needs pip install 'masklab[mlflow]' or 'masklab[tensorboard]'.",
        ),
    ] = None,
    runs_dir: RunsDirOption = None,
    threads: ThreadsOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output on stderr.")] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Train one run per seed of SPEC and print a summary table.

    A run folder runs/<name>-<spec hash>-s<seed>/ holds the resolved spec, run.json,
    metrics.jsonl, summary.json, the weights and its figures (curves.png, confusion.png,
    recall.png, ops.png). Training the same spec and seed again reports the finished run
    instead of duplicating it. --track also logs each run to MLflow or TensorBoard as it
    trains; a tracker that fails is a warning and never costs the run.

    Examples:

      masklab train experiments/quickstart.yaml

      masklab train experiments/quickstart.yaml --set train.epochs=3 --seeds 0,1,2

      masklab train experiments/quickstart.yaml --track mlflow --format json
    """
    from masklab import spec as spec_mod, threads as threads_mod

    threads_mod.configure(threads)  # before torch is imported: how its threads wait, how many
    from masklab.errors import UsageError

    if resume and force:
        raise UsageError("--resume and --force exclude each other: resume continues a run, force starts it over")
    sets = list(overrides or []) + ([f"train.device={device}"] if device else [])
    specs = spec_mod.load_study(spec_path, sets, variant)  # before torch is imported: a bad spec costs nothing

    from masklab.analysis.tables import Column, columns, render
    from masklab.cli.progress import make_reporter
    from masklab.store.exporters import open_exporter
    from masklab.store.runs import RunStore
    from masklab.study import runner as experiment
    from masklab.study.tracking import TrackingReporter

    store = RunStore(runs_dir)
    exporters = [open_exporter(t, "--track") for t in track or []]  # fails here, before any training
    reporter = make_reporter(quiet)
    tracking = TrackingReporter(reporter, exporters, store) if exporters else None

    def announce(outcome) -> None:
        if outcome.reused:
            say(f"{outcome.run.id}: already done, reusing it (--force trains it again)")
        if tracking:
            tracking.run_ended(outcome.run)

    try:
        outcomes = experiment.train_specs(
            specs,
            parse_seeds(seeds) if seeds else None,
            store,
            tracking or reporter,
            force=force,
            resume=resume,
            on_done=announce,
        )
    except BaseException:
        if tracking and tracking.run is not None:  # the run that stopped: its final status, tracked
            tracking.run_ended(tracking.run)
        raise
    rows = [
        {
            "run": o.run.id,
            "seed": o.run.info.get("seed"),
            "status": "reused" if o.reused else o.run.status,
            "epochs": o.summary.get("epochs"),
            "test_acc": o.summary.get("test_acc"),
            "test_macro_f1": o.summary.get("test_macro_f1"),
            "test_loss": o.summary.get("test_loss"),
            "val_acc": o.summary.get("val_acc"),
            "train_seconds": o.summary.get("train_seconds"),
            "path": str(o.run.path),
        }
        for o in outcomes
    ]
    cols = columns(Column("run", id=True), *SUMMARY_COLUMNS[1:], Column("path", table=False))
    render(rows, cols, fmt.value, title=specs[0].study or specs[0].name)
