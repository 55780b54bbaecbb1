"""Metrics and the robustness grid.

Clean metrics come from scikit-learn (accuracy, macro F1, per-class recall). The grid
evaluates a model on test images corrupted by the same keyed ops as training, drawn
once with the eval seed: every model sees the identical corrupted test set.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from masklab.data.batches import DeviceSplit
from masklab.ops import registry
from masklab.ops.pipeline import EVAL_VIEW, OpPipeline


@dataclass
class Predictions:
    labels: np.ndarray
    predicted: np.ndarray
    loss: float


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CUDA when asked (auto or bf16); a no-op context elsewhere."""
    if device.type == "cuda" and precision in ("auto", "bf16"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.inference_mode()
def predict(
    model: torch.nn.Module,
    split: DeviceSplit,
    batch_size: int,
    precision: str = "auto",
    pipeline: OpPipeline | None = None,
) -> Predictions:
    """Predicted classes and mean cross-entropy over a split, optionally corrupted."""
    model.eval()
    plan = pipeline.plan(EVAL_VIEW, device=split.device) if pipeline else None
    preds, loss_sum = [], torch.zeros((), device=split.device)
    for x, y, idx in split.batches(batch_size):
        if pipeline is not None:
            x = pipeline(x, idx, plan).images
        with autocast(split.device, precision):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        preds.append(logits.argmax(1))
    predicted = torch.cat(preds).cpu().numpy() if preds else np.zeros(0, dtype=np.int64)
    return Predictions(split.y.cpu().numpy(), predicted, float(loss_sum) / max(1, len(split)))


@torch.inference_mode()
def reconstruction_loss(
    model: torch.nn.Module, split: DeviceSplit, batch_size: int, precision: str, pipeline: OpPipeline
) -> float:
    """Mean masked-modeling loss over a split, the token masks drawn at the eval view."""
    model.eval()
    plan = pipeline.plan(EVAL_VIEW, device=split.device)
    total, count = torch.zeros((), device=split.device), 0
    for x, _, idx in split.batches(batch_size):
        out = pipeline(x, idx, plan)
        with autocast(split.device, precision):
            total += model.reconstruction_loss(out.images, **out.model_inputs()).float() * len(idx)
        count += len(idx)
    return float(total) / max(1, count)


def classification_metrics(p: Predictions, classes: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    labels = list(range(len(classes)))
    recall = recall_score(p.labels, p.predicted, labels=labels, average=None, zero_division=0)
    return {
        "acc": float(accuracy_score(p.labels, p.predicted)),
        "macro_f1": float(f1_score(p.labels, p.predicted, labels=labels, average="macro", zero_division=0)),
        "loss": p.loss,
        "per_class_recall": {c: float(r) for c, r in zip(classes, recall)},
    }


def _is_axis(value: object, kind: str) -> bool:
    if not isinstance(value, list):
        return False
    return bool(value) and isinstance(value[0], list) if kind in ("pair", "box") else True


def expand_grid(op: dict) -> list[dict]:
    """An eval.ops entry with list-valued axes -> one concrete op per grid cell.
    Severity lists move together with the strength they set."""
    definition = registry.OPS[op["op"]]
    rest = {k: v for k, v in op.items() if k != "op"}
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
            cells.append({"op": op["op"], **dict(combo), **link, "mode": "static", "copies": 1})
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
) -> list[dict]:
    """Accuracy per corruption cell: [{name, op, acc, macro_f1}] in grid order."""
    shape = tuple(split.x.shape[1:])
    cells = []
    for op in ops:
        for cell in expand_grid(op):
            pipeline = OpPipeline([cell], seed, shape, fill_mean=fill[0], fill_std=fill[1])
            metrics = classification_metrics(predict(model, split, batch_size, precision, pipeline), classes)
            public = {k: v for k, v in cell.items() if k not in ("mode", "copies")}
            cells.append(
                {"name": cell_name(cell), "op": public, "acc": metrics["acc"], "macro_f1": metrics["macro_f1"]}
            )
    return cells


def grid_summary(cells: list[dict]) -> dict:
    """Flat metrics for compare: `acc@<cell>` per cell and their mean, `robust_acc`."""
    flat = {f"acc@{c['name']}": c["acc"] for c in cells}
    if cells:
        flat["robust_acc"] = float(np.mean([c["acc"] for c in cells]))
    return flat
