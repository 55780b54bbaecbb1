"""The dataset registry: a name in a spec -> train and test arrays, checked and fingerprinted.

| name | where it comes from |
|------|---------------------|
| mnist-mini | `data/mnist-mini.npz`, 5,000 real MNIST digits shipped with masklab |
| mnist, fashion-mnist | IDX files in data.root, $MASKLAB_DATA/<name>, ./data/<name>, /usr/share/datasets/<name>, the download cache; downloaded when data.download is true |
| digits | scikit-learn's 8x8 digits (1,797 images), split 80/20 |
| idx:DIR | a folder of the four MNIST-style IDX files |
| npz:FILE | train_/test_ arrays, or a file written by `masklab mask`/`masklab noise` |
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from masklab.data import cache, download as dl
from masklab.data.fingerprint import fingerprint_arrays
from masklab.data.idx import read_idx_pair
from masklab.data.stratified import shuffled_split, stratified_split
from masklab.errors import DataError, UsageError

EMBEDDED = Path(__file__).resolve().parents[2] / "data"
IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASSES = {
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


MAX_CLASSES = 100_000  # a label beyond this is an error in the file, not a class


def _classes(name: str, labels: np.ndarray) -> list[str]:
    if name in CLASSES:
        return CLASSES[name]
    top = int(labels.max()) if len(labels) else 0
    if top >= MAX_CLASSES:
        raise DataError(f"{name}: labels go up to {top}; labels must be class indices 0..C-1 with C <= {MAX_CLASSES:,}")
    return [str(c) for c in range(top + 1)]


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


def load_mnist_mini() -> Dataset:
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


def load_digits() -> Dataset:
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


def input_paths(name: str, root: str | None = None, chain: tuple[str, ...] = ()) -> list[Path]:
    """The files (or, for `text:DIR`, the folder) a dataset is read from, found as `load`
    finds them but without reading them: what a run pins by content (`data.fingerprint`).
    Raises DataError when the dataset cannot be located."""
    from masklab.data import npz
    from masklab.data.text import corpus_inputs, is_text_dataset

    if is_text_dataset(name):
        return corpus_inputs(name, root)
    if name == "mnist-mini":
        return [EMBEDDED / "mnist-mini.npz"]
    if name == "digits":
        found = importlib.util.find_spec("sklearn")
        where = Path(found.origin).parent / "datasets" / "data" / "digits.csv.gz" if found and found.origin else None
        return [where] if where and where.is_file() else []
    if name in ("mnist", "fashion-mnist"):
        folder = next(
            (f for f in _search_folders(name, root) if _idx_files(f, "train") and _idx_files(f, "test")), None
        )
        return _idx_inputs(folder) if folder else []
    if name.startswith("idx:"):
        return _idx_inputs(Path(name[4:]))
    if name.startswith("npz:"):
        path = Path(name[4:])
        source = npz.manifest_source(path, chain)
        return [path] + (input_paths(source[0], root or source[1], (*chain, os.path.realpath(path))) if source else [])
    raise DataError(f"unknown dataset {name!r}")


def _idx_inputs(folder: Path) -> list[Path]:
    return [f for split in IDX_NAMES for f in (_idx_files(folder, split) or ())]


def load(name: str, root: str | None = None, download: bool = False, chain: tuple[str, ...] = ()) -> Dataset:
    """Load a dataset by its spec name, validated. Raises DataError naming the problem and
    the fix. `chain` lists the npz files that led here (a file made from a file)."""
    return validate(_load(name, root, download, chain))


def _load(name: str, root: str | None, download: bool, chain: tuple[str, ...]) -> Dataset:
    from masklab.data import npz  # imported here: npz loads source datasets through load()
    from masklab.data.text import is_text_dataset

    if is_text_dataset(name):
        raise UsageError(
            f"{name} is a text dataset; this command works on image datasets (train it with model.arch bert)"
        )

    if name == "mnist-mini":
        return load_mnist_mini()
    if name == "digits":
        return load_digits()
    if name in ("mnist", "fashion-mnist"):
        return load_public(name, root, download)
    if name.startswith("idx:"):
        folder = Path(name[4:])
        if not folder.is_dir():
            raise DataError(f"{name}: {folder} is not a folder; idx:DIR names a folder of four IDX files")
        return load_idx_folder(folder, name)
    if name.startswith("npz:"):
        return npz.load_dataset(Path(name[4:]), root, download, chain)
    raise DataError(f"unknown dataset {name!r}")


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


def limit(ds: Dataset, train_limit: int | None, test_limit: int | None) -> Dataset:
    """The same dataset cut to stratified subsets (fixed, independent of the run seed)."""
    if train_limit:
        keep = stratified_subset(ds.train_y, train_limit)
        ds = dataclasses.replace(ds, train_x=ds.train_x[keep], train_y=ds.train_y[keep], known_fingerprint=None)
    if test_limit:
        keep = stratified_subset(ds.test_y, test_limit)
        ds = dataclasses.replace(ds, test_x=ds.test_x[keep], test_y=ds.test_y[keep], known_fingerprint=None)
    return ds


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
