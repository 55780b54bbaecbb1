"""Seeded, class-stratified splits of a label array, in numpy alone.

The draws are those of scikit-learn's `train_test_split` (StratifiedShuffleSplit, or
ShuffleSplit without stratification) with `random_state=seed`: the same
`numpy.random.RandomState` calls in the same order, so every split masklab made with
scikit-learn is made again here bit for bit (tests compare the two). The point is the
import: scikit-learn's model_selection costs 0.8 s per process, more than the
training of a quickstart epoch.

Per split, each class gets its share of the first part by the approximate mode of the
multivariate hypergeometric: floor(count * n / total), then the leftover draws go to
the classes with the largest remainders, ties broken at random; the second part is
allotted the same way from what is left. Each class's samples are then taken in a
random permutation.
"""

from __future__ import annotations

import numpy as np


def _allot(counts: np.ndarray, draws: int, rng: np.random.RandomState) -> np.ndarray:
    """How many of `draws` each class gets: proportional shares floored, the rest to
    the largest remainders (ties broken by rng)."""
    share = counts / counts.sum() * draws
    allotted = np.floor(share)
    missing = int(draws - allotted.sum())
    remainder = share - allotted
    for value in np.sort(np.unique(remainder))[::-1]:
        if missing <= 0:
            break
        tied = np.flatnonzero(remainder == value)
        take = min(len(tied), missing)
        allotted[rng.choice(tied, size=take, replace=False)] += 1
        missing -= take
    return allotted.astype(int)


def stratified_split(labels: np.ndarray, n_first: int, n_second: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(first, second): sorted indices of a stratified split of `labels` into parts of
    n_first and n_second samples. Every class needs at least 2 samples."""
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])  # per class, in index order
    rng = np.random.RandomState(seed)
    first_n = _allot(counts, n_first, rng)
    second_n = _allot(counts - first_n, n_second, rng)
    first, second = [], []
    for i in range(len(classes)):
        shuffled = members[i].take(rng.permutation(counts[i]), mode="clip")
        first.append(shuffled[: first_n[i]])
        second.append(shuffled[first_n[i] : first_n[i] + second_n[i]])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def shuffled_split(n: int, n_first: int, n_second: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(first, second): sorted indices of an unstratified random split of range(n); the
    second part is drawn first, as scikit-learn's ShuffleSplit draws its test part."""
    order = np.random.RandomState(seed).permutation(n)
    return np.sort(order[n_second : n_second + n_first]), np.sort(order[:n_second])


def stratified_subset(labels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a class-stratified subset of `size` labels, keyed by seed."""
    if size >= len(labels):
        return np.arange(len(labels))
    counts = np.bincount(labels)
    classes = int((counts > 0).sum())
    if counts[counts > 0].min() >= 2 and classes <= size <= len(labels) - classes:
        keep, _ = stratified_split(labels, size, len(labels) - size, seed)
    else:  # a class too small to stratify: a plain random subset, as scikit-learn draws it
        keep, _ = shuffled_split(len(labels), size, len(labels) - size, seed)
    return keep


def validation_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): a stratified split keyed by the run seed."""
    if fraction <= 0:
        return np.arange(len(labels)), np.arange(0)
    n_val = int(np.ceil(fraction * len(labels)))
    classes = len(np.unique(labels))
    counts = np.bincount(labels)
    if counts[counts > 0].min() >= 2 and classes <= n_val <= len(labels) - classes:
        return stratified_split(labels, len(labels) - n_val, n_val, seed)
    return shuffled_split(len(labels), len(labels) - n_val, n_val, seed)
