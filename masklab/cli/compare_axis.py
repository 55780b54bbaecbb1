"""`masklab compare STUDY --by KEY [--split KEY]`: a pivot of a metric along an axis."""

from __future__ import annotations

from pathlib import Path

from masklab.cli.common import say
from masklab.cli.tables import Column, render


def compare_by(
    runs, metric: str, by: str, split: str | None, where: list[str], plot: Path | None, fmt: str, header: bool = True
) -> None:
    from masklab.analysis.compare import group_runs, refuse_mixed_data
    from masklab.analysis.pivot import LEVEL, parse_where, pivot

    refuse_mixed_data(group_runs(runs))
    p = pivot(runs, metric, by, split, parse_where(where))
    for note in p.notes:
        say(f"note: {note}")
    cells = p.cell_rows()
    title = f"{metric}: mean ± {LEVEL:.0%} t-interval half-width (n seeds), by {by}" + (
        f", split by {split}" if split else ""
    )
    if fmt in ("table", "md"):
        rows, cols = _wide(p)
        render(rows, cols, fmt, title=title, header=header)
    else:
        keys = [by] + ([split] if split else []) + ["n", "mean", "ci_low", "ci_high", "std", "seeds"]
        body = {
            "metric": metric,
            "by": by,
            "split": split,
            "level": LEVEL,
            "rows": p.rows,
            "columns": p.columns if split else [],
            "cells": cells,
        }
        render(cells, [Column(k) for k in keys], fmt, json_body=body, header=header)
    if plot:
        from masklab.analysis.plots import axis_png

        axis_png(p, plot)
        say(f"wrote {plot}")


def _wide(p) -> tuple[list[dict], list[Column]]:
    """Rows: values of --by; a column per value of --split, each cell `mean ± half (95% CI, n=k)`:
    the cell says what its ± is, also in a pipe, where there is no title."""
    heads = [f"{p.split.rsplit('.', 1)[-1]}={c}" if p.split else p.metric for c in p.columns]
    rows = []
    for r in p.rows:
        row = {p.by: str(r)}
        for head, c in zip(heads, p.columns):
            cell = p.row(r, c)
            row[head] = _cell_text(cell) if cell else None
        rows.append(row)
    return rows, [Column(p.by), *(Column(h) for h in heads)]


def _cell_text(row: dict) -> str:
    if row["ci_low"] is None:
        spread = ", no spread" if row["n"] > 1 else ""  # seeds that agree measure no noise: no interval
        return f"{row['mean']:.4f} (n={row['n']}{spread})"
    return f"{row['mean']:.4f} ± {(row['ci_high'] - row['ci_low']) / 2:.4f} (95% CI, n={row['n']})"
