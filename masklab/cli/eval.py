"""masklab eval: reload runs, measure the clean test split and a corruption grid."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from masklab.cli.common import Format, FormatOption, HeaderOption, RunsDirOption, ThreadsOption, cli_command, say


def grid_ops(op_texts: list[str], ops_file: Path | None) -> list[dict]:
    """Ops from --op texts and/or an --ops YAML file (a list of ops, or a spec's eval.ops)."""
    from masklab import schema, spec as spec_mod
    from masklab.errors import SpecError
    from masklab.ops import registry

    ops = [registry.validate(registry.parse_op_text(t), f"--op {t}", grid=True) for t in op_texts]
    if ops_file is not None:
        raw = spec_mod.read_spec_file(ops_file) if ops_file.suffix in (".yaml", ".yml") else None
        items = raw.get("eval", {}).get("ops") if isinstance(raw, dict) else None
        if not isinstance(items, list):
            raise SpecError(f"{ops_file}: expected a spec whose eval.ops lists the grid")
        ops += [registry.validate(o, schema.join(f"{ops_file}: eval.ops", i), grid=True) for i, o in enumerate(items)]
    return ops


@cli_command
def eval(  # noqa: A001 - the command is called eval
    run_refs: Annotated[
        list[str],
        typer.Argument(metavar="RUN...", help="Runs (id, unique prefix, path) or a spec name for all its runs."),
    ],
    op: Annotated[
        list[str] | None,
        typer.Option(
            "--op",
            metavar="OP",
            help="A grid op: gaussian:sigma=0.1,0.2,0.4 or patch:rate=0.25,0.5,size=4 (repeatable).",
        ),
    ] = None,
    ops_file: Annotated[
        Path | None, typer.Option("--ops", metavar="SPEC", help="A YAML spec whose eval.ops is the grid.")
    ] = None,
    suite: Annotated[str | None, typer.Option("--suite", metavar="NAME", help="A corruption suite: mnist-c.")] = None,
    spec_grid: Annotated[
        bool, typer.Option("--spec-grid", help="Also evaluate each run's own eval.ops grid from its spec.")
    ] = False,
    baseline: Annotated[
        str | None,
        typer.Option(
            "--baseline",
            metavar="RUN",
            help="A reference run: adds corruption errors against it (mCE and relative mCE, in their own columns).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the corruptions (the same for every run).")] = 0,
    device: Annotated[str, typer.Option("--device", metavar="DEVICE", help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    plot: Annotated[Path | None, typer.Option("--plot", help="Write accuracy against strength as a PNG.")] = None,
    runs_dir: RunsDirOption = None,
    threads: ThreadsOption = None,
    fmt: FormatOption = Format.table,
    header: HeaderOption = True,
) -> None:
    """Evaluate runs on the clean test split and, optionally, a grid of corruptions.

    Accuracy, macro F1 and per-class recall on the test split; with --op/--ops/--suite,
    accuracy per corruption cell, drawn with the same keyed ops as training and a fixed
    seed so every model sees the identical corrupted test set. Results are stored in
    each run's eval/ folder, where `masklab compare` finds them.

    Examples:

      masklab eval quickstart

      masklab eval quickstart --op gaussian:sigma=0.1,0.2,0.4 \\
          --op patch:rate=0.25,0.5,0.75,size=4

      masklab eval quickstart-static --suite mnist-c --baseline quickstart-s0
    """
    from masklab import threads as threads_mod

    threads_mod.configure(threads)  # before torch is imported: how its threads wait, how many
    from masklab.devices import resolve_device
    from masklab.errors import MasklabError, RunError
    from masklab.ops.suites import check_suite
    from masklab.store.runs import RunStore

    check_suite(suite)
    if plot:
        from masklab.analysis.plots import check_plot_path

        check_plot_path(plot)
    ops = grid_ops(op or [], ops_file)
    store = RunStore(runs_dir)
    runs = [r for ref in run_refs for r in store.resolve_many(ref)]
    dev = resolve_device(device)
    base_body = None
    if baseline:
        base_run = store.resolve(baseline)
        base_body, _ = evaluate_one(base_run, ops + _own_grid(base_run, spec_grid), suite, seed, dev, None)
    bodies, failed = [], []
    for run in runs:
        if base_body is not None and run.path == base_run.path:
            bodies.append(base_body)
            continue
        try:
            body, warnings = evaluate_one(run, ops + _own_grid(run, spec_grid), suite, seed, dev, base_body)
        except MasklabError as exc:  # one run's problem never stops the others
            if len(runs) == 1:
                raise
            failed.append(f"{run.id} ({exc})")
            continue
        for w in warnings:
            say(f"warning: {w}")
        bodies.append(body)
    if not bodies:
        raise RunError(f"no run could be evaluated: {'; '.join(failed)}")
    _render(bodies, fmt.value, header)
    if plot:
        from masklab.analysis.plots import robustness_plot

        robustness_plot(bodies, plot)
        say(f"wrote {plot}")
    if failed:
        raise RunError(f"{len(failed)} of {len(runs)} runs could not be evaluated: {'; '.join(failed)}")


def evaluate_one(run, ops: list[dict], suite, seed: int, device, baseline: dict | None):
    """evaluate_run for a run that is finished and sound; anything else is a RunError."""
    from masklab.errors import RunError
    from masklab.evaluation.stored import evaluate_run

    status = run.status
    if status != "done":
        if status == "damaged":
            raise RunError(f"damaged: {run.damage()}")
        raise RunError(f"status {status}; only finished runs can be evaluated")
    return evaluate_run(run, ops, suite, seed, device, baseline)


def _own_grid(run, wanted: bool) -> list[dict]:
    return list(run.spec.get("eval", {}).get("ops", [])) if wanted else []


def _render(bodies: list[dict], fmt: str, header: bool = True) -> None:
    from masklab.cli.tables import Column, render

    if fmt == "json":
        render([], [], "json", json_body={"evals": bodies})
        return
    rows = []
    for body in bodies:
        clean = body["clean"]
        rows.append(
            {
                "run": body["run_id"],
                "corruption": "clean",
                "acc": clean["acc"],
                "macro_f1": clean["macro_f1"],
                **{f"recall[{k}]": v for k, v in clean["per_class_recall"].items()},
            }
        )
        for cell in body["cells"]:
            rows.append(
                {"run": body["run_id"], "corruption": cell["name"], "acc": cell["acc"], "macro_f1": cell["macro_f1"]}
            )
        if body["cells"]:
            ce = body.get("corruption_error") or {}
            key = f"robust_acc@{body['name']}"
            mean_row = {
                "run": body["run_id"],
                "corruption": f"mean over corruptions ({key})",
                "acc": body["metrics"][key],
            }
            if ce:  # corruption errors against the baseline: their own columns, never the accuracy's
                mean_row.update(mce=ce["mce"], relative_mce=ce["relative_mce"])
            rows.append(mean_row)
    cols = [Column("run", id=True), Column("corruption"), Column("acc"), Column("macro_f1")]
    if any("mce" in r for r in rows):
        cols += [Column("mce", "mCE"), Column("relative_mce", "relative_mCE")]  # against --baseline
    if len(rows) == len(bodies):  # clean only: show per-class recall
        cols += [Column(k) for k in rows[0] if k.startswith("recall[")]
    render(rows, cols, fmt, title="evaluation on the test split", header=header)
