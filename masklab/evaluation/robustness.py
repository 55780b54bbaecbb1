"""The robustness grid: a model's accuracy on the test split under each corruption cell.

The cells use the same keyed ops as training, drawn once at the eval view with the eval
seed: every model sees the identical corrupted test set.
"""

from __future__ import annotations

import hashlib
import itertools
import json

import numpy as np
import torch

from masklab.data.batches import DeviceSplit
from masklab.errors import SpecError
from masklab.evaluation.metrics import classification_metrics, predict
from masklab.ops import registry
from masklab.ops.pipeline import OpPipeline, TextOpPipeline
from masklab.ops.word_pieces import Vocabulary


def _is_axis(value: object, kind: str) -> bool:
    if not isinstance(value, list):
        return False
    return bool(value) and isinstance(value[0], list) if kind in ("pair", "box") else True


def expand_grid(op: dict) -> list[dict]:
    """An eval.ops entry with list-valued axes -> one concrete op per grid cell.
    Severity lists move together with the strength they set."""
    definition = registry.OPS[op["op"]]
    rest = {k: v for k, v in op.items() if k not in ("op", "suite")}
    tag = {"suite": op["suite"]} if "suite" in op else {}  # a suite's cells are averaged as acc@<suite>
    linked: list[dict] = [{}]
    if isinstance(op.get("severity"), list):
        strength = definition.strength
        linked = [{"severity": s, strength: v} for s, v in zip(op["severity"], op[strength])]
        rest.pop("severity")
        rest.pop(strength)
    params = registry.allowed_params(definition, grid=True)
    axes = [[(k, x) for x in v] if _is_axis(v, params[k].kind) else [(k, v)] for k, v in rest.items()]
    cells = []
    for link in linked:
        for combo in itertools.product(*axes):
            cells.append({"op": op["op"], **dict(combo), **link, **tag, "mode": "static", "copies": 1})
    return cells


def cell_name(op: dict) -> str:
    if op.get("severity") is not None:
        return f"{op['op']}(severity={op['severity']})"
    return registry.label(op)


def robustness_grid(
    model: torch.nn.Module,
    split: DeviceSplit,
    ops: list[dict],
    seed: int,
    classes: list[str],
    batch_size: int,
    precision: str = "auto",
    fill: tuple[float, float] = (0.0, 1.0),
    vocab: Vocabulary | None = None,
    keep: dict[str, np.ndarray] | None = None,
) -> list[dict]:
    """Accuracy per corruption cell: [{name, op, acc, macro_f1}] in grid order. Text
    (a `vocab` given) takes tokens cells, images every other op. `keep` collects each
    cell's per-example correctness (name -> (N,) bool)."""
    check_grid_fits(ops, vocab is not None)
    shape = tuple(split.x.shape[1:])
    cells = []
    for op in ops:
        for cell in expand_grid(op):
            if vocab is not None:
                pipeline = TextOpPipeline([cell], seed, vocab)
            else:
                pipeline = OpPipeline([cell], seed, shape, fill_mean=fill[0], fill_std=fill[1])
            p = predict(model, split, batch_size, precision, pipeline)
            metrics = classification_metrics(p, classes)
            if keep is not None:
                keep[cell_name(cell)] = p.predicted == p.labels
            public = {k: v for k, v in cell.items() if k not in ("mode", "copies")}
            cells.append(
                {"name": cell_name(cell), "op": public, "acc": metrics["acc"], "macro_f1": metrics["macro_f1"]}
            )
    return cells


def check_grid_fits(ops: list[dict], text: bool) -> None:
    """Text runs are corrupted by tokens ops only, image runs by every other op."""
    for op in ops:
        if (op["op"] == "tokens") != text:
            kind, fix = (
                ("a text", "use tokens, e.g. --op tokens:rate=0.1,0.3")
                if text
                else ("an image", "tokens corrupts text")
            )
            raise SpecError(f"--op {op['op']}: does not apply to {kind} run; {fix}")


def grid_name(ops: list[dict], suite: str | None, seed: int) -> str:
    """A stable name for one corruption grid: a suite's name, or a hash of the grid."""
    if suite and not ops:
        return suite if seed == 0 else f"{suite}-seed{seed}"
    text = json.dumps({"ops": ops, "suite": suite, "seed": seed}, sort_keys=True)
    return "grid-" + hashlib.sha256(text.encode()).hexdigest()[:8]


def cell_metric(cell: dict, seed: int) -> str:
    """`acc@<cell>`, with the corruption seed when it is not 0: the name fixes the draw."""
    return f"acc@{cell['name']}" + (f"[seed={seed}]" if seed else "")


def grid_summary(cells: list[dict], seed: int = 0, mean_name: str = "robust_acc") -> dict:
    """Flat metrics for compare: `acc@<cell>` per cell, their mean under `mean_name`
    (`robust_acc` for the spec's own grid, `robust_acc@<grid name>` for any other), so a
    name always means the same computation; and the mean over a suite's cells
    `acc@<suite>` (acc@mnist-c)."""
    flat = {cell_metric(c, seed): c["acc"] for c in cells}
    if cells:
        flat[mean_name] = float(np.mean([c["acc"] for c in cells]))
    for suite in dict.fromkeys(c["op"]["suite"] for c in cells if "suite" in c["op"]):
        name = f"acc@{suite}" + (f"[seed={seed}]" if seed else "")
        flat[name] = float(np.mean([c["acc"] for c in cells if c["op"].get("suite") == suite]))
    return flat
