"""`mnist-mini`: 5,000 real MNIST digits shipped in data/mnist-mini.npz (the default
dataset; works offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from masklab.data.dataset import Dataset, Lookup
from masklab.errors import DataError

EMBEDDED = Path(__file__).resolve().parents[2] / "data"


def load(name: str, lookup: Lookup) -> Dataset:
    path = EMBEDDED / "mnist-mini.npz"
    if not path.is_file():
        raise DataError(
            f"{path}: the embedded dataset is missing; reinstall masklab from its source tree (pip install -e .)"
        )
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in ("train_images", "train_labels", "test_images", "test_labels")}
    return Dataset(
        "mnist-mini",
        arrays["train_images"][:, None],
        arrays["train_labels"].astype(np.int64),
        arrays["test_images"][:, None],
        arrays["test_labels"].astype(np.int64),
        str(path),
        [str(c) for c in range(10)],
    )


def inputs(name: str, lookup: Lookup) -> list[Path]:
    return [EMBEDDED / "mnist-mini.npz"]
