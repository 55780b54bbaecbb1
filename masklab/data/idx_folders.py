"""IDX-file sources: `mnist` and `fashion-mnist`, found in the usual folders (or
downloaded with checked sums), and `idx:DIR`, any folder of the four MNIST-style files.
A gzipped folder is decoded once into masklab's cache (data/cache.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from masklab.data import cache, download as dl
from masklab.data.dataset import Dataset, Lookup, class_names
from masklab.data.idx import read_idx_pair
from masklab.errors import DataError

IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
NAMED_CLASSES = {
    "fashion-mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
}


def load(name: str, lookup: Lookup) -> Dataset:
    """`mnist`/`fashion-mnist` from the first folder holding all four files, or `idx:DIR`."""
    if not name.startswith("idx:"):
        return load_public(name, lookup.root, lookup.download)
    folder = Path(name[4:])
    if not folder.is_dir():
        raise DataError(f"{name}: {folder} is not a folder; idx:DIR names a folder of four IDX files")
    return load_idx_folder(folder, name)


def inputs(name: str, lookup: Lookup) -> list[Path]:
    """The four IDX files `load` would read (none when they are not found)."""
    if name.startswith("idx:"):
        return _idx_inputs(Path(name[4:]))
    folder = next(
        (f for f in _search_folders(name, lookup.root) if _idx_files(f, "train") and _idx_files(f, "test")), None
    )
    return _idx_inputs(folder) if folder else []


def _classes(name: str, labels: np.ndarray) -> list[str]:
    return NAMED_CLASSES.get(name) or class_names(name, labels)


def _search_folders(name: str, root: str | None) -> list[Path]:
    folders = []
    if root:
        if not Path(root).is_dir():
            raise DataError(
                f"data.root {root}: no such folder; fix the path, or remove data.root to search the usual places"
            )
        folders += [Path(root), Path(root) / name]
    if os.environ.get("MASKLAB_DATA"):
        folders.append(Path(os.environ["MASKLAB_DATA"]) / name)
    folders += [Path("data") / name, Path("/usr/share/datasets") / name, dl.cache_dir() / name]
    return folders


def _idx_files(folder: Path, split: str) -> tuple[Path, Path] | None:
    found = []
    for stem in IDX_NAMES[split]:
        match = next((folder / (stem + ext) for ext in (".gz", "") if (folder / (stem + ext)).is_file()), None)
        if match is None:
            return None
        found.append(match)
    return found[0], found[1]


def load_idx_folder(folder: Path, name: str) -> Dataset:
    splits = {split: _idx_files(folder, split) for split in IDX_NAMES}
    missing = [split for split, files in splits.items() if files is None]
    if missing:
        wanted = ", ".join(s + "[.gz]" for split in missing for s in IDX_NAMES[split])
        raise DataError(f"{folder}: missing IDX files ({wanted})")
    files = [*splits["train"], *splits["test"]]
    compressed = any(f.suffix == ".gz" for f in files)  # worth caching: gunzip is what costs
    key = cache.source_key(files) if compressed else None  # before decoding: what the entry will be for
    hit = cache.load(key)
    if hit is not None:
        arrays, known = hit
        classes = _classes(name, np.concatenate([arrays["train_y"], arrays["test_y"]]))
        return Dataset(name, *(arrays[k] for k in cache.ARRAYS), str(folder), classes, known_fingerprint=known)
    train_x, train_y = read_idx_pair(*splits["train"])
    test_x, test_y = read_idx_pair(*splits["test"])
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(f"{folder}: train images are {train_x.shape[2:]} but test images are {test_x.shape[2:]}")
    ds = Dataset(name, train_x, train_y, test_x, test_y, str(folder), _classes(name, np.concatenate([train_y, test_y])))
    if compressed:
        cache.store(files, key, dict(zip(cache.ARRAYS, (train_x, train_y, test_x, test_y))), ds.fingerprint())
    return ds


def load_public(name: str, root: str | None, download: bool) -> Dataset:
    """mnist or fashion-mnist from the first folder holding all four IDX files."""
    folders = _search_folders(name, root)
    for folder in folders:
        if _idx_files(folder, "train") and _idx_files(folder, "test"):
            return load_idx_folder(folder, name)
    if download:
        return load_idx_folder(dl.download(name), name)
    hint = "apt-get install dataset-fashion-mnist" if name == "fashion-mnist" else "put the IDX files in ./data/mnist"
    raise DataError(
        f"{name}: IDX files not found in {', '.join(str(f) for f in folders[:4])}, ...; {hint}, set data.root, or set data.download: true"
    )


def _idx_inputs(folder: Path) -> list[Path]:
    return [f for split in IDX_NAMES for f in (_idx_files(folder, split) or ())]
