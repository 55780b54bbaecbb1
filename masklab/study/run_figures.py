"""The hook that leaves figures in a finished run folder (see analysis/figures.py).

Drawing is cheap next to training (measured in bench/README.md) but it is still paid per
run, so it reuses what the run already holds: its metrics, its summary, its device-
resident training split and its op pipeline. A figure that cannot be drawn is a warning,
never a failed run: the numbers are already safe in the folder.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

from masklab.analysis.figures import Preview, write_run_figures
from masklab.data.materialize import draw_views
from masklab.data.splits import TrainData
from masklab.ops import registry
from masklab.ops.pipeline import OpPipeline
from masklab.spec import Spec
from masklab.store.runs import Run

PREVIEW_EPOCHS = 3


def write_figures(run: Run, spec: Spec, data: TrainData, pipeline: OpPipeline, warn: Callable[[str], None]) -> None:
    """Draw them, unless MASKLAB_FIGURES=0 (a sweep of thousands of tiny runs, a test suite);
    a figure that fails is a `warn`ing."""
    if os.environ.get("MASKLAB_FIGURES", "1") == "0":
        return
    try:
        note = curves_note(spec, len(data.classes))
        write_run_figures(run.path, run.metrics(), run.summary, ops_preview(spec, data, pipeline), note)
    except Exception as exc:  # a figure must never cost the run
        warn(f"warning: {run.id}: figures not drawn: {type(exc).__name__}: {exc}")


def curves_note(spec: Spec, classes: int) -> str:
    """How curves.png's training and validation numbers were measured, which is not alike."""
    t = spec.train
    if t.objective == "masked-modeling":
        loss = (
            "cross-entropy on the chosen word pieces"
            if spec.model.arch == "bert"
            else "mean squared error on the masked patches (normalised pixels)"
        )
        return (
            f"loss: {loss}. train: each step's own draws of the train ops, averaged over the epoch's steps; "
            "validation: after each epoch, on the validation split, one fixed draw"
        )
    train = ["train: averaged over the epoch's steps while the weights changed"]
    if spec.train_ops:
        train.append("on inputs after the train ops (" + "; ".join(registry.label(op) for op in spec.train_ops) + ")")
    if t.label_smoothing:
        floor = smoothed_loss_floor(t.label_smoothing, classes)
        train.append(f"loss with label smoothing {t.label_smoothing:g} (never below {floor:.2f})")
    return ", ".join(train) + ".\nvalidation: after each epoch, on clean inputs, plain cross-entropy."


def smoothed_loss_floor(smoothing: float, classes: int) -> float:
    """The lowest cross-entropy against smoothed labels: the entropy of the smoothed target."""
    if classes < 2:
        return 0.0
    right, wrong = 1 - smoothing + smoothing / classes, smoothing / classes
    return -(right * math.log(right) + (classes - 1) * (wrong * math.log(wrong) if wrong > 0 else 0.0))


def ops_preview(spec: Spec, data: TrainData, pipeline: OpPipeline) -> Preview | None:
    """The run's train ops on 8 of its training images, in its first epochs."""
    if not spec.train_ops or all(op["op"] == "attention" for op in spec.train_ops):
        return None  # nothing an image can show
    if getattr(data, "vocab", None) is not None:
        return None  # token ids (the text track): no image to draw
    epochs = list(range(min(PREVIEW_EPOCHS, spec.train.epochs)))
    pos, originals, changed, masks = draw_views(data.train, pipeline, epochs)
    labels = data.train.y.cpu().numpy()[pos]
    return Preview(
        originals=originals,
        changed=changed,
        masks=masks,
        row_labels=[f"epoch {e + 1}" for e in epochs],
        column_labels=[str(data.classes[k]) for k in labels],
        title="train ops: " + "; ".join(registry.label(op) for op in spec.train_ops),
        notes=[mode_note(op) for op in spec.train_ops],
        legend=legend(spec.train_ops),
    )


TOKEN_LEGEND = {
    "drop": "orange: patch tokens dropped before the encoder (the model never sees them)",
    "mask": "orange: patch tokens replaced by the [MASK] embedding",
    "mlm": "orange: patch tokens chosen for BERT's 80/10/10 ([MASK], another image's token, unchanged)",
}


def legend(ops: list[dict]) -> str:
    tokens = next((op for op in ops if op["op"] == "tokens"), None)
    if tokens is not None:
        return TOKEN_LEGEND[tokens["action"]]
    return Preview.legend


def mode_note(op: dict) -> str:
    name = op["op"]
    if op.get("mode") == "static":
        k = op.get("copies", 1)
        if k == 1:
            return f"{name}: static, one fixed draw per image, the same in every epoch"
        return f"{name}: static, {k} fixed draws per image (epoch e uses copy (e - 1) mod {k}, copies counted from 0)"
    if op.get("mode") == "scheduled":
        return f"{name}: scheduled, a new draw every epoch at the scheduled strength"
    return f"{name}: dynamic, a new draw every epoch"
