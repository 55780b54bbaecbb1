"""A loaded dataset: train and test arrays with their class names, checked before any
run folder exists, and how a source is looked up (`Lookup`). Every source module of
masklab/data returns this type; nothing here reads a file."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from masklab.data.fingerprint import fingerprint_arrays
from masklab.data.stratified import stratified_subset
from masklab.errors import DataError

MAX_CLASSES = 100_000  # a label beyond this is an error in the file, not a class


@dataclass
class Dataset:
    """Train and test splits as arrays: images (N, C, H, W) uint8 or float32 in [0, 1]."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    source: str
    classes: list[str]
    text: object | None = None  # text datasets: the tokenizer (data.tokenize.Tokenized); x holds token ids (N, L)
    copies: int = 1  # an npz written with `masklab mask --copies K` holds every training image K times
    known_fingerprint: str | None = field(default=None, repr=False, compare=False)  # memo of fingerprint()

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def fingerprint(self) -> str:
        """SHA-256 (16 hex digits) of the arrays: two runs saw the same data iff equal.
        Computed once per Dataset (the runs of a study share it), or read from the cache."""
        if self.known_fingerprint is None:
            self.known_fingerprint = fingerprint_arrays(self.train_x, self.train_y, self.test_x, self.test_y)
        return self.known_fingerprint


@dataclass(frozen=True)
class Lookup:
    """Where a source's files are looked for: data.root, whether a missing public dataset
    is downloaded, the npz files that led here (a file made from a file), and the source
    table's own `load` and `inputs` (an npz file names the dataset it was made from)."""

    root: str | None = None
    download: bool = False
    chain: tuple[str, ...] = ()
    load: Callable[[str, Lookup], Any] | None = None
    inputs: Callable[[str, Lookup], list[Path]] | None = None


def class_names(name: str, labels: np.ndarray) -> list[str]:
    """ "0".."C-1" for integer labels up to their largest; DataError past MAX_CLASSES."""
    top = int(labels.max()) if len(labels) else 0
    if top >= MAX_CLASSES:
        raise DataError(f"{name}: labels go up to {top}; labels must be class indices 0..C-1 with C <= {MAX_CLASSES:,}")
    return [str(c) for c in range(top + 1)]


def pixel_stats(images: np.ndarray) -> tuple[float, float]:
    """Mean and std of the pixels in [0, 1] units, without a float copy of the images:
    uint8 images through a 256-bin histogram, float images in chunks."""
    if images.dtype == np.uint8:
        flat = images.reshape(-1)
        counts = np.zeros(256, dtype=np.float64)
        for i in range(0, len(flat), 1 << 20):  # bincount widens to int64: chunk it
            counts += np.bincount(flat[i : i + (1 << 20)], minlength=256)
        values = np.arange(256, dtype=np.float64) / 255.0
        n = counts.sum()
        mean = float(counts @ values / n)
        var = float(counts @ (values - mean) ** 2 / n)
    else:
        flat = images.reshape(len(images), -1)
        total = sum(float(flat[i : i + 4096].sum(dtype=np.float64)) for i in range(0, len(flat), 4096))
        mean = total / flat.size
        var = (
            sum(float(((flat[i : i + 4096] - mean) ** 2).sum(dtype=np.float64)) for i in range(0, len(flat), 4096))
            / flat.size
        )
    return mean, float(np.sqrt(var)) or 1.0


def validate(ds: Dataset) -> Dataset:
    """Refuse a dataset masklab cannot train on, before anything costs time or leaves a
    folder: shapes, dtypes, label ranges, empty splits, non-finite pixels."""
    where = ds.source
    for split, x, y in (("train", ds.train_x, ds.train_y), ("test", ds.test_x, ds.test_y)):
        if x.ndim != 4 or min(x.shape[1:], default=0) < 1:
            raise DataError(f"{where}: {split} images have shape {x.shape}; expected (N, C, H, W) with C, H, W >= 1")
        if len(x) == 0:
            raise DataError(f"{where}: the {split} split holds no images")
        if x.dtype != np.uint8 and x.dtype != np.float32:
            raise DataError(f"{where}: {split} images are {x.dtype}; expected uint8 or float32")
        if x.dtype == np.float32 and not _all_finite(x):
            raise DataError(f"{where}: {split} images hold NaN or infinite pixels; fix or drop those images")
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{where}: {split} labels must be {len(x)} integers, got {y.dtype} {y.shape}")
        if y.min() < 0 or y.max() >= len(ds.classes):
            raise DataError(
                f"{where}: {split} labels span {int(y.min())}..{int(y.max())}, outside the {len(ds.classes)} classes 0..{len(ds.classes) - 1}"
            )
    if ds.train_x.shape[1:] != ds.test_x.shape[1:]:
        raise DataError(
            f"{where}: train images are (C, H, W) = {ds.train_x.shape[1:]} but test images are {ds.test_x.shape[1:]}; both splits must match"
        )
    return ds


def _all_finite(x: np.ndarray) -> bool:
    flat = x.reshape(-1)
    return all(np.isfinite(flat[i : i + (1 << 22)]).all() for i in range(0, len(flat), 1 << 22))


def limit(ds: Dataset, train_limit: int | None, test_limit: int | None) -> Dataset:
    """The same dataset cut to stratified subsets (fixed, independent of the run seed)."""
    if train_limit:
        keep = stratified_subset(ds.train_y, train_limit)
        ds = dataclasses.replace(ds, train_x=ds.train_x[keep], train_y=ds.train_y[keep], known_fingerprint=None)
    if test_limit:
        keep = stratified_subset(ds.test_y, test_limit)
        ds = dataclasses.replace(ds, test_x=ds.test_x[keep], test_y=ds.test_y[keep], known_fingerprint=None)
    return ds
