"""masklab compare: groups of runs over seeds, differences with CIs and p-values, gates."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from masklab.cli.common import Format, FormatOption, HeaderOption, RunsDirOption, cli_command, say

GROUP_COLUMNS = ("metric", "n", "mean", "std", "min", "max")
FORMATS = {"p": ".3g", "p_adj": ".3g", "diff": "+.4f", "ci_low": "+.4f", "ci_high": "+.4f"}  # p never a bare 0.0000
CURVE_COLUMNS = ("group", "epoch", "metric", "mean", "std", "min", "max")
# On a narrow terminal columns go least important first: the difference, its 95% interval and
# the verdict are the result and go last; then the metric and the group's mean; p_adj before
# them; spec keys, n, std, min, max, the interval's kind, p and why first (csv has them all).
KEEP = {"diff": 4, "ci_low": 4, "ci_high": 4, "verdict": 4, "metric": 3, "mean": 3, "p_adj": 2}


@cli_command
def compare(
    refs: Annotated[
        list[str],
        typer.Argument(
            metavar="RUN_OR_GROUP...",
            help="Runs (id, id prefix, <name>-s<seed>, a path in the runs folder), spec names, groups (name-hash) or studies. The first group is the reference; a name that stands for several groups of one name is refused: name the group.",
        ),
    ],
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            "-m",
            metavar="METRIC",
            help="Metric(s) to compare (default: test_acc; test_mlm_acc for masked-language-model runs); any summary, eval or last-epoch metric (acc@gaussian(sigma=0.2), robust_acc, val_acc, ...).",
        ),
    ] = None,
    fail_if: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-if",
            metavar="EXPR",
            help="Exit 3 when a comparison meets it: 'test_acc < -0.005' (difference vs the reference); fields .ci_high .ci_low .p .p_adj (Holm) .mean. "
            "Also exit 3 when it cannot be evaluated: a failed, interrupted or damaged run, a missing or NaN value, a statistic that does not exist (p with n=1).",
        ),
    ] = None,
    min_effect: Annotated[
        float,
        typer.Option(
            "--min-effect",
            help="Smallest difference that matters, in metric units (0.002 = 0.2 points): 'better'/'worse' only when the 95% interval clears +-it, 'equivalent' when it lies inside.",
            min=0.0,
        ),
    ] = 0.0,
    p_outperform: Annotated[
        bool,
        typer.Option(
            "--p-outperform", help="Add P(a seed of the group beats a seed of the reference) and its 95% interval."
        ),
    ] = False,
    per_example: Annotated[
        bool,
        typer.Option(
            "--per-example/--seeds-only",
            help="Use the runs' stored per-example test predictions (the test set as a sample, McNemar for single runs) when all have them; --seeds-only treats the test set as fixed.",
        ),
    ] = True,
    allow_missing: Annotated[
        bool,
        typer.Option(
            "--allow-missing",
            help="With --fail-if: gate only on what can be evaluated (warn about failed runs, missing values and "
            "statistics that do not exist instead of failing).",
        ),
    ] = False,
    all_keys: Annotated[bool, typer.Option("--all", help="Show every spec key, not only those that differ.")] = False,
    per_run: Annotated[bool, typer.Option("--per-run", help="One row per run instead of per seed group.")] = False,
    sort: Annotated[
        str | None,
        typer.Option(
            "--sort",
            metavar="COLUMN",
            help="Sort rows by a column (mean, diff, p, group, ...); prefix - for descending.",
        ),
    ] = None,
    curve: Annotated[
        str | None,
        typer.Option(
            "--curve",
            metavar="COLUMN",
            help="Draw the groups' per-epoch curves of a metrics.jsonl column (val_acc, train_loss, ...).",
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            metavar="PNG",
            help="Write a PNG: the --curve curves (mean, band min..max over seeds), else each group's difference from the reference with its 95% interval, per metric.",
        ),
    ] = None,
    name_by: Annotated[
        str | None,
        typer.Option(
            "--name-by",
            metavar="TAG",
            help="Name each group by the value of this tag (set with masklab tag) that its runs share.",
        ),
    ] = None,
    by: Annotated[
        str | None,
        typer.Option(
            "--by", metavar="KEY", help="Pivot along a spec key: rows are its values, e.g. --by 'train_ops[0].rate'."
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option("--split", metavar="KEY", help="With --by: a column (and a plotted line) per value of this key."),
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where", metavar="KEY=VALUE", help="With --by: only runs whose spec has key=value (repeatable)."
        ),
    ] = None,
    fixed_n: Annotated[
        bool,
        typer.Option(
            "--fixed-n",
            help="Over a sequential study (masklab train --until decided): the fixed-n table anyway, p-values and Holm; "
            "it ignores the looks that chose the seeds, so its p-values and intervals do not hold their level.",
        ),
    ] = False,
    runs_dir: RunsDirOption = None,
    fmt: FormatOption = Format.table,
    header: HeaderOption = True,
) -> None:
    """Compare groups of runs (runs that differ only in seed) against the first group.

    For each group and metric: n, mean, std, min, max. Against the reference: the
    difference of means with its 95% interval (paired t on the seeds both groups have,
    Welch otherwise; with stored predictions, seeds x test examples), p and its
    Holm-adjusted value over every comparison of the call (a single run's McNemar p
    stays out), a verdict (better, worse, equivalent, inconclusive, too few seeds) and why.

    Each name is one group, or the groups of one study: a name that stands for groups of
    different specs (a spec trained again with other settings under its name, a study
    trained again, a study and a spec name at once) is refused in one line listing them,
    never pooled or added as an unseen group and test; name the group (<name>-<hash>).

    Over a sequential study (masklab train --until decided) it reports the study's own
    verdicts instead: each decision, where it was decided ("look 3 (8 seeds)") and the
    repeated confidence interval valid for the stopping rule, never a fixed-n p (which
    would ignore the looks); --fixed-n shows the fixed-n table anyway, labelled.

    Examples:

      masklab compare quickstart quickstart-static

      masklab compare quickstart quickstart-static -m test_acc -m robust_acc \\
          --format json

      masklab compare quickstart quickstart-static --fail-if 'test_acc < -0.05'

      masklab compare quickstart quickstart-static --min-effect 0.002 \\
          --p-outperform

      masklab compare quickstart quickstart-static \\
          --fail-if 'acc@gaussian(sigma=0.2).mean < 0.5'

      masklab compare quickstart quickstart-static --curve val_acc --plot val.png

      masklab compare patch-grid --by 'train_ops[0].rate' \\
          --split 'train_ops[0].mode' --plot rate.png

      masklab compare rate-seq --format json
    """
    from masklab.analysis import compare as cmp, gates as gate_mod
    from masklab.analysis.plots import check_plot_path
    from masklab.cli.tables import Column, render
    from masklab.errors import UsageError
    from masklab.store.runs import RunStore

    if plot:
        check_plot_path(plot)
    store = RunStore(runs_dir)
    gates = [gate_mod.parse_gate(g) for g in fail_if or []]
    named = [r for ref in refs for r in _named(store, ref, study_only=by is not None)]
    chosen = metric or [cmp.default_metric([r for r in named if r.status == "done"])]
    metrics = list(dict.fromkeys([cmp.canonical(m) for m in chosen] + [g.metric for g in gates]))
    usable, problems = gate_mod.gate_runs(named, gates) if gates else ([r for r in named if r.status == "done"], [])
    for r in named:
        if r.status != "done" and not gates:
            say(f"warning: skipping {r.id}: status {r.status}")
    from masklab.cli import sequential as seq_cli

    records = seq_cli.records_of(store, named)
    if len(records) == 1 and not fixed_n and not by and all(r.info.get("study") in records for r in named):
        if per_run or p_outperform or name_by:
            raise UsageError(
                "--per-run, --p-outperform and --name-by are fixed-n views; over a sequential study add --fixed-n"
            )
        study, record = next(iter(records.items()))
        c = seq_cli.compare_recorded(store, study, record, named, metric, gates, min_effect, all_keys)
        return _report_sequential(c, study, store, gates, problems, allow_missing, sort, curve, plot, fmt.value, header)
    for study in records:
        why = "--fixed-n asks for them" if fixed_n else "these runs are compared outside its design"
        say(f"note: {seq_cli.fixed_n_note(study, store, '--by pivots them' if by else why)}")
    if by:
        from masklab.cli.compare_axis import compare_by

        if fail_if or curve or per_run or min_effect or p_outperform or name_by:
            raise UsageError(
                "--by makes a pivot table; --fail-if, --curve, --per-run, --min-effect, --p-outperform and --name-by compare groups, without --by"
            )
        if len(metrics) > 1:
            raise UsageError(f"--by pivots one metric; got {', '.join(metrics)}: give one --metric")
        return compare_by(usable, metrics[0], by, split, where or [], plot, fmt.value, header)
    if split or where:
        raise UsageError("--split and --where go with --by, e.g. --by 'train_ops[0].rate' --split 'train_ops[0].mode'")
    if gates and not usable and problems and not allow_missing:
        _fail_gates([f"--fail-if cannot be evaluated: {p}" for p in problems])
    groups = cmp.group_runs(usable, per_run)
    if name_by:
        groups = _named_by_tag(groups, name_by)
    c = cmp.compare(groups, metrics, all_keys, min_effect, per_example)
    for w in c.warnings:
        say(f"warning: {w}")
    for note in c.notes:
        say(f"note: {note}")
    rows = cmp.rows(c)
    if sort:
        rows = _sorted(rows, sort)
    curves = cmp.curves(c, curve) if curve else None
    body = cmp.json_body(c) | ({"curves": {"metric": curve, "groups": curves}} if curves else {})
    cols = comparison_columns(c.keys, p_outperform)
    if curves and fmt.value in ("csv", "jsonl", "md"):  # one table per stream: the curve's, as asked
        say(
            f"--curve {curve} with --format {fmt.value}: writing the per-epoch curve rows; drop --curve for the comparison rows"
        )
        render(curve_rows(curves, curve), [Column(k) for k in CURVE_COLUMNS], fmt.value, header=header)
    else:
        render(rows, cols, fmt.value, title=f"compare (reference: {c.reference.key})", json_body=body, header=header)
    _draw(c, curves, curve, plot, metrics, fmt.value)
    _gate(c, gates, problems, allow_missing)


def _report_sequential(
    c, study, store, gates, problems, allow_missing, sort, curve, plot, fmt: str, header: bool
) -> None:
    """compare's output over a sequential study: its table, the curves and plot asked for, its gates."""
    from masklab.analysis import compare as cmp
    from masklab.cli import sequential as seq_cli
    from masklab.store.study_record import record_path

    seq_cli.render_study(
        c,
        fmt,
        study,
        record_path(store.root, study),
        sort=lambda rows: _sorted(rows, sort) if sort else rows,
        header=header,
    )
    _draw(c, cmp.curves(c, curve) if curve else None, curve, plot, c.metrics, fmt)
    _gate(c, gates, problems, allow_missing)


def _draw(c, curves: dict | None, curve: str | None, plot: Path | None, metrics: list[str], fmt: str) -> None:
    """The --curve text under a table, and the --plot PNG (the curves, else the differences with their intervals)."""
    from masklab.analysis import compare as cmp

    if curves and fmt == "table":
        from masklab.analysis.plots import text_curves

        typer.echo(text_curves(curves, curve, cmp.display_names(c.groups)), nl=False)
    if plot:
        from masklab.analysis.plots import curves_png, differences_png

        names = cmp.display_names(c.groups)
        if curves:
            curves_png(curves, curve, plot, names)
        else:
            differences_png(cmp.rows(c), metrics, plot, names)
        say(f"wrote {plot}")


def _gate(c, gates: list, problems: list[str], allow_missing: bool) -> None:
    """Exit 3 for the gates that tripped or cannot be evaluated (warnings with --allow-missing)."""
    from masklab.analysis import gates as gate_mod

    tripped, unknown = gate_mod.check_gates(c, gates) if gates else ([], [])
    unknown = [f"--fail-if cannot be evaluated: {p}" for p in problems] + unknown
    if allow_missing:
        for u in unknown:
            say(f"warning: {u} (--allow-missing)")
        unknown = []
    _fail_gates(tripped + unknown)


def comparison_columns(keys: list[str], p_outperform: bool = False) -> list:
    """compare's columns: the group, the spec keys that differ, the statistics."""
    from masklab.analysis.compare import DIFFERENCE_COLUMNS, OUTPERFORM_COLUMNS
    from masklab.cli.tables import Column

    stats = GROUP_COLUMNS + DIFFERENCE_COLUMNS + (OUTPERFORM_COLUMNS if p_outperform else ())
    return [
        Column("group", id=True),
        *(Column(k) for k in keys),
        *(Column(k, fmt=FORMATS.get(k, ""), keep=KEEP.get(k, 1)) for k in stats),
    ]


def _fail_gates(failures: list[str]) -> None:
    """Name every failed gate check on stderr and exit 3 (one line when there is one)."""
    from masklab.errors import GateTripped

    if not failures:
        return
    if len(failures) == 1:
        raise GateTripped(failures[0])
    for f in failures:
        say(f)
    tripped = sum("tripped" in f for f in failures)
    raise GateTripped(
        f"--fail-if: {tripped} comparison(s) tripped, {len(failures) - tripped} could not be evaluated"
        + ("" if tripped == len(failures) else " (--allow-missing gates only on what can be evaluated)")
    )


def _named(store, ref: str, study_only: bool) -> list:
    """The runs a name stands for, refused when it stands for several groups where one is
    meant; with --by, a study's name stands for its runs only (not runs outside it that
    share the spec's name: a note names them)."""
    from masklab.store.names import group_of

    runs = store.resolve_many(ref, study_only=study_only)
    if study_only:
        left_out = sorted({group_of(r) for r in store.lookup(ref).runs} - {group_of(r) for r in runs})
        if left_out:
            say(
                f"note: {ref}: --by pivots the study {ref}; runs of the spec name {ref} outside it are left out ({', '.join(left_out)})"
            )
    return runs


def _sorted(rows: list[dict], key: str) -> list[dict]:
    from masklab.errors import UsageError

    reverse = key.startswith("-")
    key = key.lstrip("-")
    if rows and key not in rows[0]:
        raise UsageError(f"--sort {key}: no such column (columns: {', '.join(rows[0])})")
    present = [r for r in rows if r.get(key) is not None]
    missing = [r for r in rows if r.get(key) is None]
    return sorted(present, key=lambda r: r[key], reverse=reverse) + missing


def curve_rows(curves: dict[str, dict[str, list[float]]], metric: str) -> list[dict]:
    """The --curve series in long form: one row per (group, epoch)."""
    return [
        {"group": g, "epoch": e, "metric": metric, "mean": m, "std": s, "min": lo, "max": hi}
        for g, c in curves.items()
        for e, m, s, lo, hi in zip(c["epoch"], c["mean"], c["std"], c["min"], c["max"])
    ]


def _named_by_tag(groups: list, tag: str) -> list:
    """Groups renamed by a tag's value that all their runs share (else left as they are)."""
    from masklab.errors import UsageError

    names = {}
    for g in groups:
        values = {(r.info.get("tags") or {}).get(tag) for r in g.runs}
        if len(values) == 1 and None not in values:
            names[g.key] = str(values.pop())
        else:
            say(
                f"warning: --name-by {tag}: the runs of {g.key} do not share one value of tag {tag!r}; keeping its name"
            )
    taken = [n for n in names.values()]
    clash = sorted({n for n in taken if taken.count(n) > 1})
    if clash:
        raise UsageError(
            f"--name-by {tag}: several groups have {tag}={clash[0]}; compare them by group, or tag them apart"
        )
    for g in groups:
        g.key = names.get(g.key, g.key)
    return groups
