"""Tables as users read them: fitted to a terminal without splitting an id, plain in a
pipe with the header row first, numbers without float noise in every format."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from masklab.cli.tables import Column, cell_text, fit_columns, render

ROWS = [
    {
        "id": f"quickstart-static-a8642325-s{i}",
        "status": "done",
        "dataset": "npz:/home/someone/experiments/data/noisy-copies.npz",
        "test_acc": 0.964 + i / 1000,
        "lr": 0.0030000000000000027,
        "created": "2026-11-23T16:05:31.123+00:00",
        "path": f"runs/quickstart-static-a8642325-s{i}",
    }
    for i in range(3)
]
COLS = [
    Column("id", id=True),
    Column("status", keep=3),
    Column("dataset"),
    Column("test_acc", keep=3),
    Column("lr", keep=0),
    Column("created", keep=2),
    Column("path", table=False),
]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def terminal_table(width: int, monkeypatch) -> list[str]:
    monkeypatch.setenv("COLUMNS", str(width))
    out = Terminal()
    render(ROWS, COLS, "table", title="runs", out=out)
    return re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue()).splitlines()  # what the terminal shows


@pytest.mark.parametrize("width", [60, 80, 100, 160])
def test_a_terminal_table_fits_and_never_splits_an_id(width, monkeypatch):
    lines = terminal_table(width, monkeypatch)
    assert all(len(line.rstrip()) <= width for line in lines), "\n".join(lines)
    for row in ROWS:  # every id whole, on one line, at the start of its row
        assert sum(line.startswith(row["id"] + " ") or line == row["id"] for line in lines) == 1
    assert not any("runs/quickstart" in line for line in lines)  # path repeats the id: json/csv only


def test_narrow_terminals_shorten_text_then_leave_out_the_least_important_columns(monkeypatch):
    shown, caps, left_out = fit_columns(ROWS, [c for c in COLS if c.table], 86)
    assert [c.key for c in shown] == ["id", "status", "dataset", "test_acc", "created"] and left_out == ["lr"]
    assert caps == {"dataset": 86 - (29 + 6 + 8 + 19 + 2 * 4)}  # the text shortened to what is left
    lines = terminal_table(86, monkeypatch)
    assert lines[-1].strip() == "left out to fit 86 columns: lr (--format csv has all)"
    assert "npz:/home/someo…" in lines[3]
    assert "2026-11-23 16:05:31" in lines[3]  # timestamps whole, to the second
    shown, _, left_out = fit_columns(ROWS, [c for c in COLS if c.table], 40)
    assert [c.key for c in shown] == ["id", "status"] and left_out == ["lr", "dataset", "created", "test_acc"]


def test_a_piped_table_starts_with_its_header_row(monkeypatch):
    out = io.StringIO()
    render(ROWS, COLS, "table", title="runs", out=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["id", "status", "dataset", "test_acc", "lr", "created"]
    assert lines[1].split()[0] == ROWS[0]["id"] and lines[1].split()[-2:] == ["2026-11-23", "16:05:31"]
    assert [line.split()[3] for line in lines[1:]] == ["0.9640", "0.9650", "0.9660"]


def test_numbers_print_without_float_noise_in_every_format():
    for fmt in ("json", "jsonl", "csv", "md"):
        out = io.StringIO()
        render(ROWS, COLS, fmt, out=out)
        text = out.getvalue()
        assert "0.0030000000000000027" not in text and "0.0030" in text or "0.003" in text, fmt
    out = io.StringIO()
    render(ROWS, COLS, "json", out=out)
    assert json.loads(out.getvalue())["rows"][0]["lr"] == 0.003
    out = io.StringIO()
    render(ROWS, COLS, "csv", out=out)
    row = next(csv.DictReader(io.StringIO(out.getvalue())))
    assert row["lr"] == "0.003" and row["path"] == "runs/quickstart-static-a8642325-s0"  # csv keeps every column
    assert row["created"] == "2026-11-23T16:05:31.123+00:00"  # and the full timestamp
    assert cell_text(3e-05) == "3.00e-05" and cell_text(0.0) == "0.0000" and cell_text(0.25) == "0.2500"


def test_an_important_text_column_outlasts_the_numbers_beside_it():
    """compare's verdict (keep=3) stays whole while min/max-like columns (keep=1) go."""
    rows = [
        {
            "group": "quickstart-a8642325",
            "mean": 0.96,
            "min": 0.95,
            "max": 0.97,
            "verdict": "no difference detected (n=3)",
        }
    ]
    cols = [Column("group", id=True), Column("mean", keep=3), Column("min"), Column("max"), Column("verdict", keep=3)]
    shown, caps, left_out = fit_columns(rows, cols, 62)
    assert [c.key for c in shown] == ["group", "mean", "verdict"] and caps == {} and left_out == ["max", "min"]


def test_compare_on_80_columns_keeps_the_difference_its_interval_and_the_verdict():
    """The tour's two groups: their names and two spec keys leave no room for every
    column; what goes are the spec keys, the spread, p, why and the mean, never the
    result (diff, ci_low, ci_high, verdict)."""
    from masklab.cli.compare import comparison_columns

    keys = ["name", "train_ops[0].mode", "train_ops[0].share_views"]
    ref = {"group": "quickstart-4e1e9704", "name": "quickstart", "train_ops[0].mode": "dynamic"}
    ref |= {"metric": "test_acc", "n": 3, "mean": 0.9427, "std": 0.0015, "min": 0.941, "max": 0.944}
    ref |= {"verdict": "reference"}
    other = ref | {"group": "quickstart-static-b11ba1af", "name": "quickstart-static", "train_ops[0].mode": "static"}
    other |= {"train_ops[0].share_views": False, "diff": -0.0003, "ci_low": -0.0196, "ci_high": 0.019}
    other |= {"interval": "paired-t x examples", "p": 0.948, "p_adj": 0.948, "verdict": "inconclusive"}
    other |= {"why": "-0.0003333: the 95% CI [-0.01963, +0.01896] includes 0 (p=0.948); about 4264 seeds ..."}
    shown, _, left_out = fit_columns([ref, other], comparison_columns(keys), 80)
    assert [c.key for c in shown] == ["group", "metric", "diff", "ci_low", "ci_high", "verdict"]
    assert left_out[-2:] == ["p_adj", "mean"]  # the last to go
