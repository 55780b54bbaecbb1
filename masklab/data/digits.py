"""`digits`: scikit-learn's 8x8 digits (1,797 images), scaled to 0..255 and split 80/20
stratified with seed 0."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from masklab.data.dataset import Dataset, Lookup
from masklab.data.stratified import stratified_split


def load(name: str, lookup: Lookup) -> Dataset:
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    n_test = int(np.ceil(0.2 * len(labels)))
    tr, te = stratified_split(labels, len(labels) - n_test, n_test, 0)
    return Dataset(
        "digits",
        images[tr],
        labels[tr],
        images[te],
        labels[te],
        "sklearn.datasets.load_digits",
        [str(c) for c in range(10)],
    )


def inputs(name: str, lookup: Lookup) -> list[Path]:
    """scikit-learn's digits.csv.gz (none when scikit-learn is not installed)."""
    found = importlib.util.find_spec("sklearn")
    where = Path(found.origin).parent / "datasets" / "data" / "digits.csv.gz" if found and found.origin else None
    return [where] if where and where.is_file() else []
