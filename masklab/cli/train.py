"""masklab train: every run of a spec's study (variants x grid x seeds)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from masklab.cli.common import Format, FormatOption, HeaderOption, RunsDirOption, ThreadsOption, cli_command
from masklab.cli.study import (
    AddressOption,
    DryRunOption,
    ExecutorName,
    ExecutorOption,
    GpuFractionOption,
    GridOption,
    JobsOption,
    MaxSeedsOption,
    MetricOption,
    MinEffectOption,
    NumCpusOption,
    NumGpusOption,
    UntilOption,
)


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
    grid: GridOption = None,
    seeds: Annotated[
        str | None,
        typer.Option("--seeds", metavar="LIST", help="Seeds to train, replacing the spec's: --seeds 0,1,2 or 0-4."),
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
    until: UntilOption = None,
    max_seeds: MaxSeedsOption = None,
    min_effect: MinEffectOption = None,
    metric: MetricOption = None,
    dry_run: DryRunOption = False,
    jobs: JobsOption = 1,
    executor: ExecutorOption = ExecutorName.local,
    address: AddressOption = None,
    num_cpus: NumCpusOption = None,
    num_gpus: NumGpusOption = None,
    gpu_fraction: GpuFractionOption = None,
    runs_dir: RunsDirOption = None,
    threads: ThreadsOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only one line per finished run on stderr.")] = False,
    fmt: FormatOption = Format.table,
    header: HeaderOption = True,
) -> None:
    """Train every run of SPEC (its variants, grid and seeds) and print a summary table.

    A run folder runs/<name>-<spec hash>-s<seed>/ holds the resolved spec, run.json,
    metrics.jsonl, summary.json, the weights and its figures: curves.png for every run,
    confusion.png and recall.png for classifiers, ops.png for train ops on images. Running the same command again skips finished runs, resumes
    interrupted ones from their checkpoints and trains the rest: nothing is trained
    twice. A finished or interrupted run whose inputs changed since (a data file by
    content, the init_from source's weights) is refused in one line, not reused:
    --force trains it again on the inputs as they are now. --dry-run lists what it would
    do and estimates how long, from the epochs that finished runs of the same model, data
    and batch size took on this machine (or says it cannot). --track also logs each run to
    MLflow or TensorBoard as it trains; a tracker that fails is a warning and never costs the run.

    A spec trained again with other settings (an edited file, another --set) is a new
    group beside the old one under the same name; commands that take the bare name then
    refuse it, listing both groups, until told which (<name>-<hash>). To keep one name
    per recipe, give the new one its own: --set name=quickstart-3ep.

    --until decided (or a spec with a sequential: section) trains a sequential study:
    seeds 0, 1, ... in looks (3, 5, 8, 12, 20 seeds per group for --max-seeds 20); after
    each look every variant or grid cell is compared with the first on --metric, under
    boundaries that hold the error rates over all looks and comparisons (O'Brien-Fleming
    alpha spending, Holm), and a variant stops taking seeds once its comparison is
    settled: better, worse, equivalent (with --min-effect), or futile. The table gives
    each decision, where it was decided and its repeated confidence interval; the design
    and every look are recorded in runs/<study>.sequential.json, so the same command
    continues the same sequence and refuses a changed one. Exit 0 whatever the verdicts.

    Examples:

      masklab train experiments/quickstart.yaml

      masklab train experiments/quickstart.yaml --set name=quickstart-3ep \\
          --set train.epochs=3 --seeds 0-2

      masklab train experiments/quickstart.yaml --seeds 0-4 --dry-run \\
          --grid 'train_ops[0].rate=0.1,0.25,0.5'

      masklab train experiments/quickstart.yaml --set name=patch-grid \\
          --grid 'train_ops[0].rate=0.25,0.5' --set train.epochs=2 \\
          --grid 'train_ops[0].mode=static,dynamic' --seeds 0-2 --jobs 2

      masklab train experiments/quickstart.yaml --track mlflow --format json

      masklab train experiments/quickstart.yaml --set name=rate-seq \\
          --set train.epochs=2 --grid 'train_ops[0].rate=0.25,0.9' \\
          --until decided --max-seeds 5
    """
    from masklab import spec as spec_mod
    from masklab.cli import study as study_cli
    from masklab.errors import UsageError
    from masklab.store.exporters import open_exporter
    from masklab.store.runs import RunStore
    from masklab.study import plan

    if resume and force:
        raise UsageError("--resume and --force exclude each other: resume continues a run, force starts it over")
    sets = list(overrides or []) + ([f"train.device={device}"] if device else [])
    raw = spec_mod.read_spec_file(spec_path)
    settings, sets = study_cli.sequential_settings(
        raw, sets, until and until.value, {"max_seeds": max_seeds, "min_effect": min_effect, "metric": metric}
    )
    if settings and seeds:
        raise UsageError(
            "--seeds with --until decided: a sequential study trains seeds 0, 1, ... as its looks need them; "
            "drop --seeds (--max-seeds sets the most), or use --until all for a fixed design"
        )
    if settings and force:
        raise UsageError(
            "--force with --until decided: retraining runs the study has looked at would change its recorded "
            "decisions; to start a study over, remove its record (runs/<study>.sequential.json) or give it another "
            "name (--set name=...)"
        )
    study = plan.plan_study(
        raw,
        plan.study_name(raw, spec_path, sets),
        sets=sets,
        grid=grid or [],
        seeds=list(range(settings.max_seeds)) if settings else plan.parse_seeds(seeds) if seeds else None,
        only=variant,
        source=str(spec_path),
    )
    store = RunStore(runs_dir)
    sequence = None
    if settings:
        from masklab.study.sequential_plan import plan_sequential

        sequence = plan_sequential(study, settings)
    if dry_run:
        if sequence:
            from masklab.cli.sequential import show_plan

            return show_plan(sequence, store, fmt.value, header)
        study_cli.show_plan(study, store, force, resume, fmt.value, header)
        return
    from masklab import threads as threads_mod

    threads_mod.configure(threads, jobs)  # before torch is imported: how its threads wait, how many
    exporters = [open_exporter(t, "--track") for t in track or []]  # fails here, before any training
    runner = study_cli.make_executor(
        executor, jobs, threads, address, num_cpus, num_gpus, gpu_fraction, study.resources
    )

    from masklab.cli.study_view import StudyView
    from masklab.study.executors import run_study
    from masklab.study.tracking import TrackedEvents

    events = StudyView(study.name, quiet)
    if exporters:
        events = TrackedEvents(events, exporters, store)
    if sequence:
        from masklab.study.sequential import run_sequential

        outcome = run_sequential(sequence, store, runner, events, resume=resume)
        study_cli.report_sequential(outcome, store, fmt.value, header)
        return
    results = run_study(study, store, runner, events, force=force, resume=resume)
    study_cli.report(results, fmt.value, title=study.name, header=header)
