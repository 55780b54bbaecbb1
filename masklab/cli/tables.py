"""Where a table is rendered: rows -> table | json | jsonl | csv | md.

Every listing command feeds its rows through `render`, so the formats agree: the same
columns, the same rows. A table on a terminal is fitted to its width (long text cells
shortened, then the least important columns left out, never an id split over lines); a
table in a pipe is tab-separated text whose first line is the header row (`header=False`
leaves it out), for cut -f, awk -F'\\t' and column -t -s$'\\t'. The other formats are
plain and stable, carry every column, and JSON carries `schema_version`. Floats print without binary noise (0.003, not
0.0030000000000000027) in every format.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
from dataclasses import dataclass
from typing import Any, TextIO

FORMATS = ("table", "json", "jsonl", "csv", "md")
SCHEMA_VERSION = 1
SIGNIFICANT = 12  # digits a float keeps in json/jsonl/csv: enough for any metric, none of the noise
_TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$")


@dataclass(frozen=True)
class Column:
    """A column of a listing.

    `key` names the value in each row. In the two table views (terminal and pipe):
    `table=False` leaves the column out (a path that repeats the id: json/csv keep it);
    an `id` column is never shortened, dropped or wrapped; when a terminal is too narrow,
    columns give way by `keep`, least important first: at each level text cells are
    shortened (to MIN_TEXT characters), then columns left out, the rightmost first."""

    key: str
    header: str = ""
    digits: int = 4  # decimals of floats in table and md
    fmt: str = ""  # a format spec that replaces `digits`, e.g. ".3g" for p-values
    table: bool = True
    id: bool = False
    keep: int = 1

    @property
    def title(self) -> str:
        return self.header or self.key


def columns(*keys: str | Column) -> list[Column]:
    return [k if isinstance(k, Column) else Column(k) for k in keys]


def cell_text(value: Any, digits: int = 4, fmt: str = "") -> str:
    """A value as shown in a table or Markdown: floats to `digits` decimals or by `fmt`
    (those that would print as zero in scientific notation), timestamps to the second."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if fmt:
            return format(value, fmt)
        if value != 0 and abs(value) < 0.5 * 10**-digits:  # would print as zero
            return f"{value:.2e}"
        return f"{value:.{digits}f}" if abs(value) < 1e5 else f"{value:.3g}"
    if isinstance(value, str):
        m = _TIMESTAMP.match(value)
        return f"{m.group(1)} {m.group(2)}" if m else value
    if isinstance(value, (list, dict)):
        return json.dumps(_plain(value), separators=(",", ":"))
    return str(value)


def clean_float(value: float) -> float:
    """The shortest float that agrees with `value` to 12 significant digits."""
    return float(f"{value:.{SIGNIFICANT}g}")


def _plain(value: Any) -> Any:
    """A value for JSON/CSV: NaN and infinities become null (JSON has no NaN), floats lose
    their binary noise."""
    if isinstance(value, float):
        return clean_float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
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
    header: bool = True,
) -> None:
    """Write rows to stdout (or `out`) in one of FORMATS. The title shows on a terminal
    only; `header=False` leaves the header row out of a piped table and of csv."""
    out = out or sys.stdout
    if fmt == "json":
        body = json_body if json_body is not None else {"rows": [{c.key: r.get(c.key) for c in cols} for r in rows]}
        out.write(to_json({"schema_version": SCHEMA_VERSION, **body}) + "\n")
    elif fmt == "jsonl":
        for r in rows:
            out.write(json.dumps(_plain({c.key: r.get(c.key) for c in cols})) + "\n")
    elif fmt == "csv":
        out.write(csv_text(rows, cols, header))
    elif fmt == "md":
        out.write(markdown(rows, [c for c in cols if c.table]))
    elif out.isatty():
        rich_table(rows, [c for c in cols if c.table], title, out)
    else:
        out.write(plain_table(rows, [c for c in cols if c.table], header))


def csv_text(rows: list[dict], cols: list[Column], header: bool = True) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header:
        writer.writerow([c.key for c in cols])
    for r in rows:
        writer.writerow([_csv_value(r.get(c.key)) for c in cols])
    return buf.getvalue()


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(_plain(value), separators=(",", ":"))
    return _plain(value)


def markdown(rows: list[dict], cols: list[Column]) -> str:
    lines = ["| " + " | ".join(c.title for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        lines.append(
            "| " + " | ".join(cell_text(r.get(c.key), c.digits, c.fmt).replace("|", "\\|") for c in cols) + " |"
        )
    return "\n".join(lines) + "\n"


def plain_table(rows: list[dict], cols: list[Column], header: bool = True) -> str:
    """The table for a pipe or a file: tab-separated, the header row first (unless
    `header=False`), one line per row, values as a terminal shows them (`-` for none). A
    value never holds a tab or a line break (each becomes a space), so `cut -f`,
    `awk -F'\\t'` and `column -t -s$'\\t'` always find the same fields, spaces and all."""
    lines = ["\t".join(_one_field(c.title) for c in cols)] if header else []
    for r in rows:
        lines.append("\t".join(_one_field(cell_text(r.get(c.key), c.digits, c.fmt)) for c in cols))
    return "".join(line + "\n" for line in lines)


def _one_field(text: str) -> str:
    return _FIELD_BREAKS.sub(" ", text)


_FIELD_BREAKS = re.compile(r"[\t\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")  # what would split a field or a line


GAP = 2  # characters between two columns of a terminal table
MIN_TEXT = 12  # a shortened text column keeps at least this many characters (or its header's)


def fit_columns(rows: list[dict], cols: list[Column], width: int) -> tuple[list[Column], dict[str, int], list[str]]:
    """Which columns a terminal of `width` characters shows, the widths text columns are
    shortened to, and the columns left out. Ids are never shortened or left out."""
    texts = {c.key: [cell_text(r.get(c.key), c.digits, c.fmt) for r in rows] for c in cols}
    natural = {c.key: max([len(c.title)] + [len(t) for t in texts[c.key]]) for c in cols}
    caps: dict[str, int] = {}
    shown = list(cols)

    def total() -> int:
        return sum(caps.get(c.key, natural[c.key]) for c in shown) + GAP * (len(shown) - 1)

    shortenable = [c for c in cols if not c.id and not _numeric(rows, c.key) and not _timestamps(rows, c.key)]
    left_out = []
    # level by level, least important first: shorten that level's text, then leave out its columns
    for level in sorted({c.keep for c in cols if not c.id}):
        while total() > width:  # the widest text cell loses a character, down to MIN_TEXT
            candidates = [
                c
                for c in shortenable
                if c in shown and c.keep <= level and caps.get(c.key, natural[c.key]) > max(MIN_TEXT, len(c.title))
            ]
            if not candidates:
                break
            widest = max(candidates, key=lambda c: caps.get(c.key, natural[c.key]))
            caps[widest.key] = caps.get(widest.key, natural[widest.key]) - 1
        while total() > width:  # then columns go, the least important (then the rightmost) first
            droppable = [c for c in shown if not c.id and c.keep <= level]
            if not droppable:
                break
            victim = min(reversed(droppable), key=lambda c: c.keep)
            shown.remove(victim)
            left_out.append(victim.title)
        if total() <= width:
            break
    # columns dropped late may have made room to undo shortening
    for key in [c.key for c in shown if c.key in caps]:
        spare = width - total()
        if spare <= 0:
            break
        caps[key] = min(natural[key], caps[key] + spare)
    return shown, {k: v for k, v in caps.items() if v < natural[k]}, left_out


def rich_table(rows: list[dict], cols: list[Column], title: str | None, out: TextIO) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out)
    if rows:  # on a terminal a column with no value in any row says nothing (a pipe keeps it, for awk)
        cols = [c for c in cols if c.id or any(r.get(c.key) is not None for r in rows)]
    shown, caps, left_out = fit_columns(rows, cols, console.width)
    table = Table(
        title=title,
        title_justify="left",
        min_width=len(title or ""),  # a title never wraps over a narrow table
        header_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,  # with the box's blank divider: GAP characters between columns
    )
    for c in shown:
        table.add_column(
            c.title,
            justify="right" if _numeric(rows, c.key) else "left",
            no_wrap=True,
            overflow="ellipsis",
            max_width=caps.get(c.key),
            min_width=len(c.title) if c.id else None,
        )
    for r in rows:
        table.add_row(*(cell_text(r.get(c.key), c.digits, c.fmt) for c in shown))
    console.print(table, crop=False)
    if left_out:
        console.print(
            f"left out to fit {console.width} columns: {', '.join(left_out)} (--format csv has all)",
            style="dim",
            markup=False,  # column names such as train_ops[0].mode are text, not markup
            highlight=False,
        )


def _timestamps(rows: list[dict], key: str) -> bool:
    values = [r.get(key) for r in rows if r.get(key) is not None]
    return bool(values) and all(isinstance(v, str) and _TIMESTAMP.match(v) for v in values)


def _numeric(rows: list[dict], key: str) -> bool:
    values = [r.get(key) for r in rows if r.get(key) is not None]
    return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
