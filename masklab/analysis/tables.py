"""Where a table is rendered: rows -> table | json | jsonl | csv | md.

Every listing command feeds its rows through `render`, so the formats agree: the same
columns, the same rows. Tables use rich on a TTY and plain aligned text in a pipe; the
other formats are plain and stable, and JSON carries `schema_version`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from dataclasses import dataclass
from typing import Any, TextIO

FORMATS = ("table", "json", "jsonl", "csv", "md")
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Column:
    key: str
    header: str = ""
    digits: int = 4  # for floats in table and md
    fmt: str = ""  # a format spec that replaces `digits`, e.g. ".3g" for p-values

    @property
    def title(self) -> str:
        return self.header or self.key


def columns(*keys: str | Column) -> list[Column]:
    return [k if isinstance(k, Column) else Column(k) for k in keys]


def cell_text(value: Any, digits: int = 4, fmt: str = "") -> str:
    """A value as shown in a table or Markdown."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if fmt:
            return format(value, fmt)
        return f"{value:.{digits}f}" if abs(value) < 1e5 else f"{value:.3g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _plain(value: Any) -> Any:
    """A value for JSON: NaN and infinities become null (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def to_json(body: Any) -> str:
    return json.dumps(_plain(body), indent=2)


def render(
    rows: list[dict],
    cols: list[Column],
    fmt: str,
    *,
    title: str | None = None,
    json_body: dict | None = None,
    out: TextIO | None = None,
) -> None:
    """Write rows to stdout (or `out`) in one of FORMATS."""
    out = out or sys.stdout
    if fmt == "json":
        body = json_body if json_body is not None else {"rows": [{c.key: r.get(c.key) for c in cols} for r in rows]}
        out.write(to_json({"schema_version": SCHEMA_VERSION, **body}) + "\n")
    elif fmt == "jsonl":
        for r in rows:
            out.write(json.dumps(_plain({c.key: r.get(c.key) for c in cols})) + "\n")
    elif fmt == "csv":
        out.write(csv_text(rows, cols))
    elif fmt == "md":
        out.write(markdown(rows, cols))
    elif out.isatty():
        rich_table(rows, cols, title, out)
    else:
        out.write(plain_table(rows, cols, title))


def csv_text(rows: list[dict], cols: list[Column]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([c.key for c in cols])
    for r in rows:
        writer.writerow([_csv_value(r.get(c.key)) for c in cols])
    return buf.getvalue()


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return value


def markdown(rows: list[dict], cols: list[Column]) -> str:
    lines = ["| " + " | ".join(c.title for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        lines.append(
            "| " + " | ".join(cell_text(r.get(c.key), c.digits, c.fmt).replace("|", "\\|") for c in cols) + " |"
        )
    return "\n".join(lines) + "\n"


def plain_table(rows: list[dict], cols: list[Column], title: str | None) -> str:
    """The table for a pipe or a file: aligned columns two spaces apart, no box drawing,
    no padding past the last column, so grep, awk and column -t read it."""
    cells = [[c.title for c in cols]] + [[cell_text(r.get(c.key), c.digits, c.fmt) for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cols))]
    right = [_numeric(rows, c.key) for c in cols]
    lines = [title] if title else []
    for line in cells:
        padded = (t.rjust(w) if r else t.ljust(w) for t, w, r in zip(line, widths, right))
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines) + "\n"


def rich_table(rows: list[dict], cols: list[Column], title: str | None, out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left", header_style="bold")
    for c in cols:
        table.add_column(c.title, justify="right" if _numeric(rows, c.key) else "left", overflow="fold")
    for r in rows:
        table.add_row(*(cell_text(r.get(c.key), c.digits, c.fmt) for c in cols))
    console = Console(file=out)
    console.print(table)


def _numeric(rows: list[dict], key: str) -> bool:
    values = [r.get(key) for r in rows if r.get(key) is not None]
    return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
