"""Predictions and clean metrics of a model on a split.

Clean metrics (accuracy, macro F1, per-class recall) come from per-class counts, in time
and memory linear in the examples and classes; the confusion matrix is kept whole up to
DENSE_CONFUSION_CLASSES classes and as its nonzero cells beyond (10,000 classes would be
10^8 cells). A split may be corrupted on the fly by an `OpPipeline` (the robustness grid
does that, in `grid`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from masklab.data.batches import DeviceSplit
from masklab.ops.pipeline import EVAL_VIEW, OpPipeline


@dataclass
class Predictions:
    labels: np.ndarray
    predicted: np.ndarray
    loss: float


def autocast(device: torch.device, precision: str):
    """bf16 autocast where asked: `bf16` on CUDA and CPU, `auto` on CUDA only (on CPU
    auto stays fp32: bf16 changes a run's numbers with the CPU's instruction set, see
    bench/README.md); fp32 and other devices: a no-op context."""
    if device.type in ("cuda", "cpu") and (precision == "bf16" or (precision == "auto" and device.type == "cuda")):
        return torch.autocast(device.type, dtype=torch.bfloat16)
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
    plan = pipeline.epoch_keys(EVAL_VIEW, device=split.device) if pipeline else None
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
def masked_modeling_metrics(
    model: torch.nn.Module, split: DeviceSplit, batch_size: int, precision: str, pipeline: OpPipeline
) -> dict:
    """The masked-modeling loss over a split, the token masks drawn at the eval view:
    {"loss"} for a ViT (mean over batches of the masked-patch MSE), {"loss", "acc"} for
    text (cross-entropy and accuracy over every masked token of the split)."""
    model.eval()
    plan = pipeline.epoch_keys(EVAL_VIEW, device=split.device)
    text = hasattr(model, "masked_token_logits")
    total, correct, count = torch.zeros((), device=split.device), torch.zeros((), device=split.device), 0
    for x, _, idx in split.batches(batch_size):
        out = pipeline(x, idx, plan)
        with autocast(split.device, precision):
            if text:
                logits, target = model.masked_token_logits(out.images, **out.model_inputs())
                total += F.cross_entropy(logits.float(), target, reduction="sum")
                correct += (logits.argmax(1) == target).sum()
                count += len(target)
            else:
                total += model.reconstruction_loss(out.images, **out.model_inputs()).float() * len(idx)
                count += len(idx)
    if not text:
        return {"loss": float(total) / max(1, count)}
    return {"loss": float(total) / max(1, count), "acc": float(correct) / max(1, count)}


DENSE_CONFUSION_CLASSES = 1000  # a matrix of 10^6 cells at most; beyond, its nonzero cells


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[true, predicted], (classes, classes) int64."""
    flat = labels.astype(np.int64) * num_classes + predicted.astype(np.int64)
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def confusion(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> dict:
    """{"matrix": counts[true][predicted]} up to DENSE_CONFUSION_CLASSES classes, else
    {"cells": [[true, predicted, count], ...]}, the nonzero cells in row-major order."""
    if num_classes <= DENSE_CONFUSION_CLASSES:
        return {"matrix": confusion_matrix(labels, predicted, num_classes).tolist()}
    flat = labels.astype(np.int64) * num_classes + predicted.astype(np.int64)
    cells, counts = np.unique(flat, return_counts=True)
    return {"cells": np.stack([cells // num_classes, cells % num_classes, counts], 1).tolist()}


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (scikit-learn's zero_division=0)."""
    return np.divide(num, den, out=np.zeros(len(num)), where=den > 0)


def classification_metrics(p: Predictions, classes: list[str]) -> dict:
    """Accuracy, macro F1 and per-class recall from the confusion matrix; the same
    numbers as scikit-learn's accuracy_score, f1_score(average="macro") and
    recall_score(average=None) with zero_division=0 (tests compare them), without its
    0.8 s import."""
    n = len(classes)
    labels, predicted = p.labels.astype(np.int64), p.predicted.astype(np.int64)
    hits = np.bincount(labels[labels == predicted], minlength=n).astype(np.float64)
    true, chosen = np.bincount(labels, minlength=n), np.bincount(predicted, minlength=n)
    recall = _ratio(hits, true)
    f1 = _ratio(2 * hits, true + chosen)  # 2 tp / (2 tp + fp + fn)
    return {
        "acc": float(hits.sum() / max(1, len(p.labels))),
        "macro_f1": float(f1.mean()) if len(f1) else 0.0,
        "loss": p.loss,
        "per_class_recall": {c: float(r) for c, r in zip(classes, recall)},
        "confusion": confusion(labels, predicted, n),  # rows: true class, columns: predicted
    }
