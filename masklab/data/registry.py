"""The dataset sources: a name in a spec -> its reader module -> train and test arrays,
checked. The table (names, kinds, docs, reader modules) is masklab/datasets.py; each
reader module of masklab/data has `load(name, lookup)` and `inputs(name, lookup)`.
Adding a source is its module and one line of that table."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from masklab import datasets
from masklab.data.dataset import Dataset, Lookup, validate
from masklab.data.text import TextCorpus
from masklab.errors import DataError, UsageError


def reader(name: str) -> ModuleType:
    """The module that reads dataset `name`; DataError for a name outside the table."""
    found = datasets.source(name)
    if found is None:
        raise DataError(f"unknown dataset {name!r}")
    return importlib.import_module(f"masklab.data.{found.reader}")


def load(name: str, root: str | None = None, download: bool = False, chain: tuple[str, ...] = ()) -> Dataset:
    """An image dataset by its spec name, validated. Raises DataError naming the problem and
    the fix. `chain` lists the npz files that led here (a file made from a file)."""
    return _load(name, Lookup(root, download, chain, _load, _inputs))


def _load(name: str, lookup: Lookup) -> Dataset:
    if datasets.is_text(name):
        raise UsageError(
            f"{name} is a text dataset; this command works on image datasets (train it with model.arch bert)"
        )
    return validate(reader(name).load(name, lookup))


def load_corpus(name: str, root: str | None = None) -> TextCorpus:
    """A text dataset by its spec name, as labelled texts. Raises DataError naming the problem and the fix."""
    if not datasets.is_text(name):
        raise UsageError(f"{name} is an image dataset, not a text one")
    return reader(name).load(name, Lookup(root))


def input_paths(name: str, root: str | None = None) -> list[Path]:
    """The files (or, for `text:DIR`, the folder) a dataset is read from, found as `load`
    finds them but without reading them: what a run pins by content (`data.fingerprint`).
    Raises DataError when the dataset cannot be located."""
    return _inputs(name, Lookup(root, False, (), _load, _inputs))


def _inputs(name: str, lookup: Lookup) -> list[Path]:
    return reader(name).inputs(name, lookup)
