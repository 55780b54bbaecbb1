"""Compare along an axis: a metric for each value of one spec key (`--by`), and of a
second (`--split`), as mean, interval and n over the runs in each cell.

This is the table (and the figure, plots.axis_png) that masking papers show: accuracy
against mask ratio, one line per masking mode. Cells pool runs that differ only in the
two keys and the seed; runs that also differ in anything else are refused with the keys
named, since a cell would then mix recipes (`--where key=value` picks one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from masklab import keyvalue, schema, spec as spec_mod
from masklab.analysis import stats
from masklab.analysis.compare import quantum, run_metrics
from masklab.errors import UsageError
from masklab.store.runs import Run

LEVEL = 1 - stats.ALPHA
IGNORED = ("name", "seeds")  # a grid run's name carries its label; seeds are the replicates


@dataclass
class Cell:
    by: Any
    split: Any
    values: dict[int, float] = field(default_factory=dict)  # seed -> metric
    runs: list[str] = field(default_factory=list)

    def as_row(self, by: str, split: str | None, step: float = 0.0) -> dict:
        """The cell as a row; `step` is the metric's quantum (see compare.quantum)."""
        numbers = list(self.values.values())
        d = stats.describe(numbers)
        interval = stats.mean_interval(numbers, step)
        row = {by: self.by}
        if split:
            row[split] = self.split
        return row | {
            "n": d.n,
            "mean": d.mean,
            "ci_low": interval[0] if interval else None,
            "ci_high": interval[1] if interval else None,
            "std": d.std,
            "seeds": sorted(self.values),
        }


@dataclass
class Pivot:
    metric: str
    by: str
    split: str | None
    rows: list  # values of --by, in order
    columns: list  # values of --split ([None] without it)
    cells: dict[tuple, Cell]
    step: float = 0.0  # the metric's quantum: seeds that differ by less measured no noise
    notes: list[str] = field(default_factory=list)

    def row(self, by_value: Any, split_value: Any) -> dict | None:
        cell = self.cells.get((by_value, split_value))
        return cell.as_row(self.by, self.split, self.step) if cell else None

    def cell_rows(self) -> list[dict]:
        return [row for r in self.rows for c in self.columns if (row := self.row(r, c))]


def parse_where(texts: list[str]) -> dict[str, Any]:
    """--where KEY=VALUE filters by masklab.keyvalue's rule, each value read as YAML (empty: null)."""
    pairs = keyvalue.parse_key_values(texts, "--where", "--where train.epochs=8", keyvalue.PATH)
    return {key: spec_mod.parse_yaml_text(value, f"--where {key}") if value else None for key, value in pairs.items()}


def pivot(runs: list[Run], metric: str, by: str, split: str | None = None, where: dict | None = None) -> Pivot:
    """The cells of `metric` over the values of `by` (and `split`)."""
    flats = [(run, spec_mod.flatten(run.spec)) for run in runs]
    for key, value in (where or {}).items():
        _require(flats, key, "--where")
        flats = [(r, f) for r, f in flats if _same(f.get(key), value)]
    if not flats:
        raise UsageError("nothing to compare: no finished runs match" + (" --where" if where else ""))
    _require(flats, by, "--by")
    if split:
        _require(flats, split, "--split")
    notes = _refuse_mixed(flats, {by, split, *(where or {})}, by, split)
    cells: dict[tuple, Cell] = {}
    for run, flat in flats:
        value = run_metrics(run).get(metric)
        if value is None:
            known = sorted(run_metrics(run))
            raise UsageError(f"--metric {metric}: run {run.id} has no such metric{schema.suggest(metric, known)}")
        key = (_hashable(flat[by]), _hashable(flat.get(split)) if split else None)
        cell = cells.setdefault(key, Cell(*key))
        cell.values[run.info.get("seed")] = float(value)  # the same seed twice (a rerun under another name) counts once
        cell.runs.append(run.id)
    rows, columns = _ordered(k[0] for k in cells), _ordered(k[1] for k in cells)
    return Pivot(metric, by, split, rows, columns, cells, quantum([r for r, _ in flats], metric), notes)


def _require(flats: list, key: str, option: str) -> None:
    missing = [r.id for r, f in flats if key not in f]
    if missing:
        known = sorted(k for k in flats[0][1] if k not in IGNORED)
        raise UsageError(
            f"{option} {key}: not a key of run {missing[0]}'s spec{schema.suggest(key, known)}; keys look like train_ops[0].rate, model.width"
        )


def _refuse_mixed(flats: list, chosen: set, by: str, split: str | None) -> list[str]:
    """Refuse runs that differ in another key within one cell (a cell would mix recipes);
    return notes on keys that change only along the axes (confounded with them). A key
    that some runs lack (None: it does not apply to them, as share_views to a dynamic
    mask) is no difference on its own."""
    keys = sorted(set().union(*(f for _, f in flats)) - set(IGNORED) - chosen)
    cells: dict[tuple, list[dict]] = {}
    for _, f in flats:
        cells.setdefault((repr(f.get(by)), repr(f.get(split)) if split else None), []).append(f)
    mixed = [k for k in keys if any(len({repr(f.get(k)) for f in cell}) > 1 for cell in cells.values())]
    if mixed:
        k = mixed[0]
        seen = sorted({repr(f.get(k)) for _, f in flats})
        raise UsageError(
            f"the runs also differ in {', '.join(mixed[:4])} ({k}: {', '.join(seen[:4])}); a cell would mix them: "
            f"pick one with --where '{k}=...' or compare it with --split {k}"
        )
    notes = []
    for k in keys:
        values = sorted({repr(f.get(k)) for _, f in flats if f.get(k) is not None})
        if len(values) > 1:
            notes.append(
                f"{k} changes along the axes too ({', '.join(values[:4])}): the pivot cannot separate its effect"
            )
    return notes


def _same(a: Any, b: Any) -> bool:
    return a == b or (isinstance(a, (int, float)) and isinstance(b, (int, float)) and float(a) == float(b))


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _ordered(values) -> list:
    """Distinct values: numbers ascending, anything else in order of appearance."""
    distinct = list(dict.fromkeys(values))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in distinct):
        return sorted(distinct)
    return distinct
