"""Per-example test predictions of a run, stored compactly beside its summary.

    predictions.npz    labels and predicted classes on the clean test split (uint8, or
                       uint16 past 255 classes), and for every robustness cell one bit per
                       example (right or wrong), packed: `cells` (C, ceil(N/8)) uint8
                       with their names in `cell_names` and suites in `cell_suites`

About 30 KB for Fashion-MNIST's 10,000 test images and 15 corruption cells. Training
writes it next to summary.json, `masklab eval` next to eval/<name>.json. `compare` reads
it to treat the test set as a sample (seeds x test examples) and to run McNemar's test
between two single runs; runs without it still compare, on their seeds alone.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from masklab.store.runs import Run, write_atomic

if TYPE_CHECKING:  # compare reads predictions without importing torch
    from masklab.evaluation.metrics import Predictions

FILE = "predictions.npz"
MATCH_TOL = 1e-9  # per-example scores must average to the stored metric


@dataclass
class Stored:
    labels: np.ndarray  # (N,)
    predicted: np.ndarray  # (N,)
    cells: dict[str, np.ndarray]  # cell name -> (N,) bool, True = right
    suites: dict[str, str]  # cell name -> the suite it belongs to ("" for none)

    def scores(self, metric: str) -> np.ndarray | None:
        """Per-example scores whose mean is `metric`: 1/0 correctness for test_acc and
        acc@<cell>, the share of cells right for robust_acc (and acc@<suite> over a
        suite's cells); None for other metrics."""
        if metric == "test_acc":
            return (self.predicted == self.labels).astype(float)
        if metric.startswith("acc@") and metric[4:] in self.cells:
            return self.cells[metric[4:]].astype(float)
        if metric == "robust_acc" and self.cells:
            return np.mean(list(self.cells.values()), axis=0)
        members = [c for name, c in self.cells.items() if metric.startswith("acc@") and self.suites[name] == metric[4:]]
        return np.mean(members, axis=0) if members else None


def has_scores(metric: str) -> bool:
    """Whether a metric has per-example scores in stored predictions."""
    return metric in ("test_acc", "robust_acc") or metric.startswith("acc@")  # acc@<cell>, acc@<suite>


def _small(a: np.ndarray) -> np.ndarray:
    return a.astype(np.uint8 if a.max(initial=0) < 256 else np.uint16)


def save(path: Path, clean: Predictions, cells: dict[str, np.ndarray], grid: list[dict] | None = None) -> None:
    """Write the clean predictions and the cells' correctness atomically (one .npz);
    `grid`, the summary's robustness cells, says which suite a cell belongs to."""
    names = list(cells)
    suites = {c["name"]: c["op"].get("suite", "") for c in grid or []}
    packed = np.stack([np.packbits(cells[n].astype(bool)) for n in names]) if names else np.zeros((0, 0), np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        labels=_small(clean.labels),
        predicted=_small(clean.predicted),
        cell_names=np.array(names, dtype=str),
        cell_suites=np.array([suites.get(n, "") for n in names], dtype=str),
        cells=packed,
    )
    write_atomic(path, buf.getvalue())


def load(path: Path) -> Stored | None:
    """The stored predictions, or None when the file is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            labels, predicted = z["labels"].astype(np.int64), z["predicted"].astype(np.int64)
            names, packed = [str(n) for n in z["cell_names"]], z["cells"]
            suites = [str(s) for s in z["cell_suites"]] if "cell_suites" in z.files else [""] * len(names)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    n = len(labels)
    cells = {name: np.unpackbits(row, count=n).astype(bool) for name, row in zip(names, packed)}
    return Stored(labels, predicted, cells, dict(zip(names, suites)))


def sources(run: Run) -> list[Path]:
    """A run's prediction files, the ones whose metrics `compare` reads last first."""
    evals = sorted((run.path / "eval").glob("*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
    return [*evals, run.path / FILE]


def run_scores(run: Run, metric: str, value: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(labels, per-example scores) of `metric` for a run, from the stored predictions that
    reproduce its value; None when no stored file does (older runs, other metrics)."""
    for path in sources(run):
        stored = load(path) if path.is_file() else None
        scores = stored.scores(metric) if stored else None
        if scores is not None and len(scores) and abs(float(scores.mean()) - value) <= MATCH_TOL:
            return stored.labels, scores
    return None
