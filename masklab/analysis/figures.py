"""The figures a finished run folder holds, drawn from numbers (no torch here):

    curves.png     loss and accuracy (masked-token accuracy) per epoch, train and
                   validation, with how each was measured
    confusion.png  the test confusion matrix, class names on the axes
    recall.png     per-class test recall, with the overall accuracy for reference
                   (both up to FIGURE_CLASSES classes: a bar per class stops being a picture)
    ops.png        what the run's train ops did to a few of its training images

`preview_png` also draws `masklab mask/noise --preview`. Masked pixels are tinted in a
colour, so a zero-filled mask never vanishes into a black background. matplotlib is
imported when a figure is drawn, never on import.
"""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MASK_COLOUR = np.array([1.0, 0.45, 0.0])  # orange: far from every grey level
MASK_ALPHA = 0.7
FIGURE_FILES = ("curves.png", "confusion.png", "recall.png", "ops.png")
FIGURE_CLASSES = 200  # per-class figures are drawn up to this many classes
CHAR_IN = 0.07  # inches per character of 8-point text: fixed margins instead of a layout engine (3x cheaper)


@dataclass
class Preview:
    """Images before and after the ops: originals (N, C, H, W) and changed (V, N, C, H, W)
    in [0, 1], masks (V, N, H, W) True = masked or None, one label per view (row) and per
    image (column)."""

    originals: np.ndarray
    changed: np.ndarray
    masks: np.ndarray | None
    row_labels: list[str]
    column_labels: list[str]
    title: str
    notes: list[str] = field(default_factory=list)
    legend: str = "orange: masked pixels (the model sees the fill value there)"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, plt) -> Path:
    """Write a PNG atomically, never through a link planted at `path` (figures go into
    run folders)."""
    from masklab.store.folder import write_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", pil_kwargs={"compress_level": 1})  # zlib's fastest level: 3x faster to write
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
    return path


def write_run_figures(
    folder: Path, rows: list[dict], summary: dict, preview: Preview | None, curves_note: str = ""
) -> list[Path]:
    """Every figure the run's numbers allow, into its folder; returns the files written.
    `curves_note`: how the training and validation curves were measured."""
    run_id = summary.get("run_id", Path(folder).name)
    written = []
    if rows:
        written.append(curves_png(rows, Path(folder) / "curves.png", run_id, curves_note))
    few_classes = len(summary.get("per_class_recall") or {}) <= FIGURE_CLASSES
    if summary.get("test_confusion") and few_classes:
        written.append(confusion_png(summary["test_confusion"], Path(folder) / "confusion.png", run_id))
    if summary.get("per_class_recall") and few_classes:
        written.append(
            recall_png(summary["per_class_recall"], summary.get("test_acc"), Path(folder) / "recall.png", run_id)
        )
    if preview is not None:
        written.append(preview_png(preview, Path(folder) / "ops.png"))
    return written


CURVE_PANELS = (  # (panel, y label, [(metrics.jsonl column, legend, line style)])
    (
        "loss",
        "loss",
        [("train_loss", "train: mean over the epoch's steps", "-"), ("val_loss", "validation: after the epoch", "--")],
    ),
    (
        "accuracy",
        "accuracy",
        [("train_acc", "train: mean over the epoch's steps", "-"), ("val_acc", "validation: after the epoch", "--")],
    ),
    ("masked-token accuracy", "masked-token accuracy", [("val_mlm_acc", "validation: after the epoch", "--")]),
)


def curve_panels(rows: list[dict]) -> list[tuple[str, str, list[tuple[str, str, str]]]]:
    """The panels of curves.png that the run's metrics fill, with the series in each."""
    panels = []
    for name, ylabel, series in CURVE_PANELS:
        present = [s for s in series if any(r.get(s[0]) is not None for r in rows)]
        if present:
            panels.append((name, ylabel, present))
    return panels


def curves_png(rows: list[dict], path: Path, title: str, note: str = "") -> Path:
    """Loss and accuracy (a masked language model: masked-token accuracy) per epoch, one
    panel each. Training and validation numbers are not measured alike (a running mean
    over the epoch's steps on the train ops' inputs, with any label smoothing; against
    clean inputs after the epoch): `note` says how, under the panels."""
    plt = _pyplot()
    panels = curve_panels(rows)
    width = 4.2 * len(panels)
    note = "\n".join(textwrap.fill(line, int(width / CHAR_IN)) for line in note.splitlines())
    lines = note.count("\n") + 1 if note else 0
    height = 3.4 + 0.17 * lines
    fig, axes = plt.subplots(1, len(panels), figsize=(width, height), dpi=100, squeeze=False)
    fig.subplots_adjust(
        left=0.75 / width, right=0.98, bottom=(0.5 + 0.17 * lines) / height, top=1 - 0.4 / height, wspace=0.3
    )
    for ax, (_, ylabel, series) in zip(axes[0], panels):
        for key, label, style in series:
            points = [(r["epoch"], r[key]) for r in rows if r.get(key) is not None]
            x, y = zip(*points)
            colour = "C0" if key.startswith("train") else "C1"  # the same colour for a split in every panel
            ax.plot(x, y, style, color=colour, marker="o", markersize=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(title, fontsize=10)
    if note:
        fig.text(0.5, 0.08 / height, note, ha="center", va="bottom", fontsize=7)
    return _save(fig, path, plt)


def confusion_png(confusion: dict | list, path: Path, title: str) -> Path:
    """Counts of (true class, predicted class) on the test split."""
    plt = _pyplot()
    classes, matrix = _confusion_parts(confusion)
    n = len(classes)
    rotate = max(len(c) for c in classes) > 3
    label_in = 0.15 + CHAR_IN * max(len(c) for c in classes)  # the widest tick label, in inches
    left, bottom = 0.45 + label_in, 0.5 + (0.75 * label_in if rotate else 0.2)
    side = min(7.0, 1.8 + 0.4 * n)  # the matrix, in inches
    width, height = left + side + 1.3, bottom + side + 0.6
    fig = plt.figure(figsize=(width, height), dpi=100)
    ax = fig.add_axes((left / width, bottom / height, side / width, side / height))
    bar = fig.add_axes(((left + side + 0.25) / width, bottom / height, 0.18 / width, side / height))
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, cax=bar, label="test images")
    if n <= 30:
        ticks = np.arange(n)
        ax.set_xticks(ticks, classes, rotation=45 if rotate else 0, ha="right" if rotate else "center", fontsize=8)
        ax.set_yticks(ticks, classes, fontsize=8)
    if n <= 15:
        top = matrix.max() or 1
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                colour = "white" if count > top / 2 else "black"
                ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color=colour)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{title}\ntest confusion matrix ({int(matrix.sum())} images)", fontsize=10)
    return _save(fig, path, plt)


def _confusion_parts(confusion: dict | list) -> tuple[list[str], np.ndarray]:
    if isinstance(confusion, dict):
        return list(confusion["classes"]), np.asarray(confusion["matrix"], dtype=np.int64)
    matrix = np.asarray(confusion, dtype=np.int64)
    return [str(i) for i in range(len(matrix))], matrix


def recall_png(recall: dict[str, float], accuracy: float | None, path: Path, title: str) -> Path:
    """Per-class test recall as bars, the overall accuracy as a dashed line."""
    plt = _pyplot()
    classes, values = list(recall), np.array(list(recall.values()), dtype=float)
    labels = [f"{c}  {v:.3f}" for c, v in zip(classes, values)]
    left = 0.3 + CHAR_IN * max(len(t) for t in labels)
    width, height = left + 5.0, 1.3 + 0.3 * len(classes)
    fig = plt.figure(figsize=(width, height), dpi=100)
    ax = fig.add_axes((left / width, 0.55 / height, 4.8 / width, (height - 1.15) / height))
    y = np.arange(len(classes))
    ax.barh(y, values, color="#4c72b0")
    subtitle = "per-class test recall"
    if accuracy is not None:
        ax.axvline(accuracy, color="#c44e52", linestyle="--", linewidth=1)
        subtitle += f" (red dashes: overall test accuracy {accuracy:.3f})"
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("recall: share of the class's test images classified correctly")
    ax.set_title(f"{title}\n{subtitle}", fontsize=10)
    return _save(fig, path, plt)


def tinted(images: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> (N, H, W, 3) RGB with masked pixels tinted MASK_COLOUR."""
    rgb = np.clip(images, 0.0, 1.0).transpose(0, 2, 3, 1)
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    rgb = rgb[..., :3].astype(np.float32)
    if masks is not None:
        m = masks[..., None]
        rgb = np.where(m, (1 - MASK_ALPHA) * rgb + MASK_ALPHA * MASK_COLOUR, rgb)
    return rgb


def montage(rows: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """Rows of (N, H, W, 3) tiles -> one (R*(H+gap)-gap, N*(W+gap)-gap, 3) white-gapped image."""
    n, h, w, _ = rows[0].shape
    out = np.ones((len(rows) * (h + gap) - gap, n * (w + gap) - gap, 3), dtype=np.float32)
    for r, tiles in enumerate(rows):
        for c in range(n):
            out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = tiles[c]
    return out


def preview_png(preview: Preview, path: Path) -> Path:
    """Originals in the first row, one row per view below; masked pixels tinted. One
    image (a montage) with labels around it: a figure per run must be cheap."""
    plt = _pyplot()
    n, h, w = preview.originals.shape[0], preview.originals.shape[-2], preview.originals.shape[-1]
    rows = [tinted(preview.originals, None)] + [
        tinted(preview.changed[v], None if preview.masks is None else preview.masks[v])
        for v in range(len(preview.row_labels))
    ]
    notes = list(preview.notes)
    if preview.masks is not None:
        notes.append(preview.legend)
    tile = 0.95  # inches per image
    left = max(1.0, 0.3 + CHAR_IN * max(len(label) for label in preview.row_labels + ["original"]))
    top, bottom = 0.65, 0.15 + 0.2 * len(notes)
    width, height = left + 0.2 + tile * n, top + bottom + tile * len(rows)
    fig = plt.figure(figsize=(width, height), dpi=100)
    ax = fig.add_axes((left / width, bottom / height, tile * n / width, tile * len(rows) / height))
    ax.imshow(montage(rows), interpolation="nearest", aspect="auto")
    ax.set_xticks([(c + 0.5) * (w + 2) - 1 for c in range(n)], preview.column_labels, fontsize=8)
    ax.set_yticks([(r + 0.5) * (h + 2) - 1 for r in range(len(rows))], ["original"] + preview.row_labels, fontsize=8)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    fig.suptitle(preview.title, fontsize=9, y=1 - 0.12 / height, va="top")
    if notes:
        fig.text(0.5, 0.08 / height, "\n".join(notes), ha="center", va="bottom", fontsize=8)
    return _save(fig, path, plt)
