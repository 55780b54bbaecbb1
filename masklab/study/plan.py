"""Plan a study: every run a spec file and a command line describe, as plain data.

A study is the product of the spec's `variants`, its `grid:` (key path -> values, and
`--grid 'key.path=v1,v2'` on the command line) and its seeds. Each element is a fully
resolved Spec with its run id and a readable label:

    name: quickstart            grid: {train_ops[0].rate: [0.25, 0.5], train_ops[0].mode: [static, dynamic]}
    ->  quickstart-rate=0.25-mode=static-<hash>-s0, quickstart-rate=0.25-mode=dynamic-<hash>-s0, ...

The label (`rate=0.25-mode=static`) is made of the grid axes with more than one value,
each written with the last part of its key path; it becomes part of the run's name, so
`ls runs/` and `masklab runs` read like the study. A spec without a grid keeps the
names and ids it always had. The id is a hash of the resolved spec, so the same id
means the same run: that is what lets a study be re-run to finish what is missing.

Nothing here imports torch or touches the disk.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

from masklab import schema as sc, spec as spec_mod
from masklab.errors import SpecError, UsageError
from masklab.spec import Spec
from masklab.store.runs import run_id

MAX_RUNS = 10_000  # a plan larger than this is a typo, not a study
MAX_VALUE_TEXT = 24  # longer values are written as their position in the axis (v1, v2, ...)
RESOURCE_KEYS = ("num_cpus", "num_gpus")
AUTO_LIMIT = (
    8  # seeds per batch with `train.seed_batch: auto`: each seed holds its own copy of the splits on the device
)


@dataclass(frozen=True)
class Axis:
    """One grid axis: a key path and the values it takes, in order."""

    path: str
    values: tuple
    tokens: tuple = field(repr=False, default=())

    @property
    def varies(self) -> bool:
        return len(self.values) > 1


@dataclass(frozen=True)
class PlannedRun:
    """One run of a study: a resolved spec (its seeds: this run's seed) and where it sits."""

    spec: Spec
    seed: int
    cell: tuple = ()  # (axis path, value) for every grid axis

    @property
    def id(self) -> str:
        return run_id(self.spec.name, self.spec.group_hash(), self.seed)

    @property
    def label(self) -> str:
        return self.spec.label or ""

    @property
    def values(self) -> dict[str, Any]:
        return dict(self.cell)


@dataclass
class Study:
    name: str
    axes: list[Axis]
    runs: list[PlannedRun]
    resources: dict[str, float] = field(default_factory=dict)  # per-run num_cpus / num_gpus for Ray


def study_name(raw: dict, path: str, sets: list[str] | tuple[str, ...] = ()) -> str:
    """The study's name: the spec's `name:` (else its file name), or the one a `--set
    name=...` gives it, which then names its runs and variants too."""
    body = {"name": raw.get("name")}
    for assignment in sets:
        if assignment.split("=", 1)[0].strip() == "name":
            spec_mod.apply_override(body, assignment)
    return spec_mod.name_of(body, path)


def parse_seeds(text: str) -> list[int]:
    """`0,1,2`, `0-4` or a mix (`0-2,7`): distinct non-negative integers, in order."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not m or (m.group(2) and int(m.group(2)) < int(m.group(1))):
            raise UsageError(
                f"--seeds {text}: expected integers or ranges separated by commas, e.g. --seeds 0-4 or 0,1,2"
            )
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        seeds.extend(range(lo, hi + 1))
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds {text}: a seed appears twice; list each seed once")
    if len(seeds) > MAX_RUNS:
        raise UsageError(f"--seeds {text}: {len(seeds)} seeds; at most {MAX_RUNS}")
    return seeds


def parse_grid_option(text: str) -> tuple[str, list]:
    """`--grid 'train_ops[0].rate=0.1,0.25,0.5'` as (key path, values); each value is read as YAML."""
    path, sep, rest = text.partition("=")
    if not sep or not path.strip() or not rest.strip():
        raise UsageError(f"--grid {text}: expected key.path=v1,v2,..., e.g. --grid 'train_ops[0].rate=0.1,0.25,0.5'")
    values = spec_mod.parse_yaml_text(f"[{rest}]", f"--grid {path}")
    return path.strip(), values


def axes_of(file_grid: Any, options: list[str]) -> list[Axis]:
    """The study's axes: the spec file's `grid:`, then `--grid` options (which replace a
    file axis with the same key path, or add one)."""
    axes: dict[tuple, Axis] = {}
    if file_grid is not None:
        for path, values in sc.need_mapping(file_grid, "grid").items():
            axis = _axis(str(path), values, f"grid.{path}")
            axes[axis.tokens] = axis
    for text in options:
        path, values = parse_grid_option(text)
        axis = _axis(path, values, f"--grid {path}")
        axes[axis.tokens] = axis
    return list(axes.values())


def _axis(path: str, values: Any, where: str) -> Axis:
    if not isinstance(values, list) or not values:
        raise SpecError(f"{where}: must be a non-empty list of values, e.g. [0.1, 0.25, 0.5], got {sc.show(values)}")
    texts = [json.dumps(v, sort_keys=True) for v in values]
    if len(set(texts)) != len(texts):
        dup = next(v for v, t in zip(values, texts) if texts.count(t) > 1)
        raise SpecError(f"{where}: the value {sc.show(dup)} appears twice; list each value once")
    return Axis(path, tuple(values), spec_mod.key_path_tokens(path, where))


def label_keys(axes: list[Axis]) -> dict[tuple, str]:
    """The name each varying axis has in labels: the last part of its key path, or more
    of it where two axes would read the same (`train_ops.0.rate`, `train_ops.1.rate`)."""
    varying = [a for a in axes if a.varies]

    def tail(tokens: tuple, depth: int) -> str:
        depth += isinstance(tokens[-1], int)  # a bare list index says nothing: keep its list's name
        return ".".join(map(str, tokens[-depth:]))

    for depth in range(1, max((len(a.tokens) for a in varying), default=1) + 1):
        names = {a.tokens: tail(a.tokens, depth) for a in varying}
        if len(set(names.values())) == len(names):
            return names
    return {a.tokens: ".".join(map(str, a.tokens)) for a in varying}


def value_text(value: Any) -> str:
    """A value as it is written in a run name: 0.25, static, true, 256x128."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif isinstance(value, (int, float, str)):
        text = str(value)
    elif isinstance(value, list) and all(isinstance(v, (int, float, str)) for v in value):
        text = "x".join(map(str, value))
    else:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def axis_texts(axis: Axis) -> list[str]:
    """How each value of an axis is written in labels: its text, or `v<position>` when
    texts would collide, be empty or run long."""
    texts = [value_text(v) for v in axis.values]
    if len(set(texts)) != len(texts) or any(not t or len(t) > MAX_VALUE_TEXT for t in texts):
        return [f"v{i + 1}" for i in range(len(texts))]
    return texts


def cell_label(axes: list[Axis], cell: tuple[int, ...]) -> str:
    """`rate=0.25-mode=static`: the varying axes of one grid cell (by value positions)."""
    keys = label_keys(axes)
    return "-".join(f"{keys[a.tokens]}={axis_texts(a)[i]}" for a, i in zip(axes, cell) if a.varies)


def plan_study(
    raw: dict,
    name: str,
    *,
    sets: list[str] | tuple[str, ...] = (),
    grid: list[str] | tuple[str, ...] = (),
    seeds: list[int] | None = None,
    only: list[str] | None = None,
    source: str = "",
) -> Study:
    """Every run of a spec mapping and its command line: variants x grid cells x seeds.

    Order: the variants in file order, then the grid cells (the last axis fastest), then
    the seeds, so each cell's seeds run together. Grid values are set on the spec first,
    then a variant's settings, then `--set`; an axis that a variant or `--set` also sets
    is refused, since every cell would end up the same."""
    raw = copy.deepcopy(raw)
    axes = axes_of(raw.pop("grid", None), list(grid))
    resources = _resources(raw.pop("resources", None))
    _refuse_overlap(axes, raw.get("variants"), sets)
    cells = list(itertools.product(*(range(len(a.values)) for a in axes)))
    per_cell = len(raw["variants"]) if isinstance(raw.get("variants"), dict) else 1
    if len(cells) * per_cell * len(seeds or [0]) > MAX_RUNS:
        raise UsageError(f"the study has {len(cells) * per_cell} specs; at most {MAX_RUNS} runs can be planned at once")
    specs: list[tuple[Spec, tuple]] = []
    for c, cell in enumerate(cells):
        body = copy.deepcopy(raw)
        label = cell_label(axes, cell)
        where = f"grid {label}" if label else "grid"
        for axis, i in zip(axes, cell):
            spec_mod.set_path(body, axis.path, copy.deepcopy(axis.values[i]), f"{where}: {axis.path}")
        try:
            expanded = spec_mod.expand_variants(body, name, sets, only, source)
        except SpecError as exc:
            raise SpecError(f"{where}: {exc}" if label else str(exc)) from None
        values = tuple((a.path, a.values[i]) for a, i in zip(axes, cell))
        for v, spec in enumerate(expanded):
            specs.append((_named(spec, name, label, c * len(expanded) + v, bool(axes)), values))
    _refuse_duplicate_names(specs)
    runs = [PlannedRun(spec, seed, values) for spec, values in specs for seed in (seeds or spec.seeds)]
    return Study(name, axes, runs, resources)


def seeds_per_batch(spec: Spec, pending: int) -> int:
    """How many seeds of one spec train together as one batched model: `train.seed_batch`
    N, or with auto all `pending` seeds up to AUTO_LIMIT where batching is supported and
    pays (1 otherwise)."""
    setting = spec.train.seed_batch
    if setting == "auto":
        if spec_mod.seed_batch_unsupported(spec) or not batching_pays(spec.train.device):
            return 1
        return max(1, min(pending, AUTO_LIMIT))
    return int(setting)


def batching_pays(device: str) -> bool:
    """auto batches seeds on CUDA only. A small model's GPU step is bound by kernel
    launches, which a seed axis shares; a CPU step is bound by arithmetic, which it does
    not: 5 quickstart seeds batched ran 0.93x-1.09x of one after another on a quiet
    2-core Xeon and 1.20x on a loaded 2-core EPYC (bench/seed_batch.py, bench/README.md),
    short of paying for itself, so on CPU auto trains them one after another
    (`train.seed_batch: N` still batches where the benchmark shows it pays)."""
    if device.startswith("cuda"):
        return True
    if device != "auto":
        return False
    import torch  # the planner runs after the thread settings are made (threads.configure)

    return torch.cuda.is_available()


def _named(spec: Spec, study: str, grid_label: str, position: int, gridded: bool) -> Spec:
    """The spec of one cell, named `<name>[-<variant>][-<grid label>]`."""
    if not gridded:
        return spec
    label = "-".join(p for p in (spec.label, grid_label) if p)
    full = f"{spec.name}-{grid_label}" if grid_label else spec.name
    if not re.fullmatch(spec_mod.RUN_NAME_PATTERN, full):
        raise SpecError(
            f"grid: the run name {full} is longer than 200 characters; shorten name: or split the study in two"
        )
    return dataclasses.replace(spec, name=full, study=study, variant=position, label=label or None)


def _refuse_overlap(axes: list[Axis], variants: Any, sets: list[str] | tuple[str, ...]) -> None:
    gridded = {a.tokens: a.path for a in axes}
    for text in sets:
        path = text.partition("=")[0]
        if spec_mod.key_path_tokens(path, f"--set {path}") in gridded:
            raise UsageError(f"--set {path}: {path} is a grid axis; drop the --set or the axis")
    for label, settings in (variants or {}).items() if isinstance(variants, dict) else ():
        for key in settings or {}:
            if spec_mod.key_path_tokens(str(key), f"variants.{label}.{key}") in gridded:
                raise SpecError(f"variants.{label}.{key}: {key} is also a grid axis; set it in one place")


def _refuse_duplicate_names(specs: list[tuple[Spec, tuple]]) -> None:
    seen: set[str] = set()
    for spec, _ in specs:
        if spec.name in seen:
            raise SpecError(f"the study names two different runs {spec.name}; give the variants distinct labels")
        seen.add(spec.name)


def _resources(raw: Any) -> dict[str, float]:
    """`resources: {num_cpus: 1, num_gpus: 0.25}`: what one run asks of a Ray cluster."""
    if raw is None:
        return {}
    raw = sc.need_mapping(raw, "resources")
    sc.reject_unknown(raw, list(RESOURCE_KEYS), "resources")
    return {k: sc.as_float(v, f"resources.{k}", 0.0) for k, v in raw.items()}
