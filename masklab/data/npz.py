"""The .npz files that `masklab mask` and `masklab noise` write, and reading them back.

A file holds `images` (float32, the corrupted images), `masks` (bool, True = masked;
(K, N, H, W) for K copies), `labels` and `manifest`, a JSON text: the ops, seed, mode,
copies, split, masklab version, the source dataset and its fingerprint, and the SHA-256
of each array. `dataset: npz:FILE` trains on it: the file supplies the split it was
written from and the source dataset the other one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from masklab.data.dataset import MAX_CLASSES, Dataset, Lookup, class_names
from masklab.data.memory import available_memory
from masklab.errors import DataError
from masklab.files import readable

SCHEMA_VERSION = 1
MAX_CHAIN = 8  # a file made from a file made from ... a dataset
HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
SPLIT_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


def array_sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def write(path: Path, arrays: dict[str, np.ndarray], manifest: dict) -> None:
    """Write arrays plus a manifest (with their SHA-256) atomically to path."""
    manifest = dict(manifest, schema_version=SCHEMA_VERSION, sha256={k: array_sha256(v) for k, v in arrays.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez_compressed(tmp, manifest=np.array(json.dumps(manifest)), **arrays)
        readable(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read(path: Path) -> tuple[dict[str, np.ndarray], dict | None]:
    """All arrays of an .npz file (never unpickling) and its manifest, if it has one.
    Array headers are checked against the archive and the memory available before any
    array is read, so a hostile header cannot allocate gigabytes."""
    if not path.is_file():
        raise DataError(f"{path}: no such file; npz:FILE names an .npz written by masklab mask/noise")
    _check_sizes(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, zlib.error) as exc:
        raise DataError(
            f"{path}: not a readable .npz file ({exc}); write it with masklab mask/noise or numpy.savez"
        ) from None
    except MemoryError:
        raise DataError(f"{path}: its arrays do not fit in memory") from None
    manifest = None
    if "manifest" in arrays:
        try:
            manifest = json.loads(str(arrays.pop("manifest")))
        except (json.JSONDecodeError, RecursionError):
            raise DataError(f"{path}: its manifest is not JSON; the file is damaged") from None
    return arrays, manifest


def _check_sizes(path: Path) -> None:
    """Every member is a .npy array whose header agrees with its size in the archive, and
    the arrays together fit in the memory available."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise DataError(
            f"{path}: not a readable .npz file (not a zip archive: a .npy array or another file?); write it with masklab mask/noise or numpy.savez"
        ) from None
    total = 0
    with archive:
        for member in archive.infolist():
            try:
                with archive.open(member) as fh:
                    version = np.lib.format.read_magic(fh)
                    read_header = HEADER_READERS[version]  # KeyError: a format numpy.savez does not write
                    shape, _, dtype = read_header(fh)  # the header only, never the data
            except Exception:  # noqa: BLE001 - any unreadable header means a damaged or foreign file
                raise DataError(f"{path}: member {member.filename} is not a .npy array; the file is damaged") from None
            if dtype.hasobject:
                raise DataError(
                    f"{path}: member {member.filename} holds Python objects; masklab reads only plain arrays"
                )
            nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
            if nbytes > member.file_size:
                raise DataError(
                    f"{path}: member {member.filename} claims {nbytes:,} bytes but holds {member.file_size:,}; the file is damaged"
                )
            total += nbytes
    free = available_memory()
    if free is not None and total > free:
        raise DataError(f"{path}: its arrays need {total / 2**30:.1f} GiB but only {free / 2**30:.1f} GiB are free")


def _verify(path: Path, arrays: dict[str, np.ndarray], manifest: dict) -> None:
    digests = manifest.get("sha256", {})
    if not isinstance(digests, dict):
        raise DataError(f"{path}: its manifest's sha256 is not a mapping; the file is damaged")
    for key, digest in digests.items():
        if key in arrays and array_sha256(arrays[key]) != digest:
            raise DataError(f"{path}: array {key!r} does not match its SHA-256 in the manifest; the file is damaged")


def _images(array: np.ndarray, path: Path, key: str) -> np.ndarray:
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4:
        raise DataError(f"{path}: {key} must be (N, H, W) or (N, C, H, W), got shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{path}: {key} must be uint8 or float, got {array.dtype}")
    return array.astype(np.float32)


def _labels(array: np.ndarray, n: int, path: Path, key: str) -> np.ndarray:
    if array.ndim != 1 or len(array) != n or not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{path}: {key} must be {n} integer labels, got {array.dtype} {array.shape}")
    if len(array) and array.min() < 0:
        raise DataError(f"{path}: {key} holds negative labels")
    if len(array) and int(array.max()) >= MAX_CLASSES:
        raise DataError(
            f"{path}: {key} go up to {int(array.max())}; labels must be class indices 0..C-1 with C <= {MAX_CLASSES:,}"
        )
    return array.astype(np.int64)


def _manifest_source(path: Path, manifest: object) -> tuple[str, str | None, str, str, int]:
    """(source dataset, its root, its fingerprint, split, copies) from a checked manifest."""
    source = manifest.get("source") if isinstance(manifest, dict) else None
    if not isinstance(source, dict):
        raise DataError(f"{path}: its manifest has no source dataset; write the file again with masklab mask/noise")
    dataset, root, fingerprint = source.get("dataset"), source.get("root"), source.get("fingerprint")
    split, copies = manifest.get("split"), manifest.get("copies", 1)
    if not isinstance(dataset, str) or not isinstance(fingerprint, str) or not isinstance(root, (str, type(None))):
        raise DataError(f"{path}: its manifest's source is incomplete; write the file again with masklab mask/noise")
    if split not in ("train", "test"):
        raise DataError(f"{path}: its manifest's split is {split!r}, not train or test; the file is damaged")
    if type(copies) is not int or copies < 1:
        raise DataError(f"{path}: its manifest's copies is {copies!r}, not a positive integer; the file is damaged")
    return dataset, root, fingerprint, split, copies


def manifest_source(path: Path, chain: tuple[str, ...] = ()) -> tuple[str, str | None] | None:
    """(source dataset, its root) named by the manifest of a masklab mask/noise file,
    reading only the manifest; None for a file without one (or one that cannot be read:
    loading it says why)."""
    if os.path.realpath(path) in chain or len(chain) >= MAX_CHAIN:
        return None  # a cycle or an endless chain: loading the file refuses it
    try:
        with np.load(path, allow_pickle=False) as z:
            if "manifest" not in z.files:
                return None
            manifest = json.loads(str(z["manifest"]))
        name, root, *_ = _manifest_source(path, manifest)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error, RecursionError, DataError):
        return None
    return name, root


def load(name: str, lookup: Lookup) -> Dataset:
    """`npz:FILE`: either train_/test_ arrays, or a masklab mask/noise file (whose source
    dataset is loaded too, through the source table; `lookup.chain` holds the files that
    led here)."""
    path = Path(name[4:])
    root, download, chain = lookup.root, lookup.download, lookup.chain
    here = os.path.realpath(path)
    if here in chain:
        raise DataError(f"{path}: its manifest names a source that leads back to this file; the file is damaged")
    if len(chain) >= MAX_CHAIN:
        raise DataError(
            f"{path}: made from a chain of more than {MAX_CHAIN} .npz files; write it from the dataset itself"
        )
    arrays, manifest = read(path)
    if all(k in arrays for k in SPLIT_KEYS):
        tx = _images(arrays["train_images"], path, "train_images")
        vx = _images(arrays["test_images"], path, "test_images")
        ty = _labels(arrays["train_labels"], len(tx), path, "train_labels")
        vy = _labels(arrays["test_labels"], len(vx), path, "test_labels")
        return Dataset(f"npz:{path}", tx, ty, vx, vy, str(path), class_names(f"npz:{path}", np.concatenate([ty, vy])))
    if not ("images" in arrays and "labels" in arrays and manifest):
        raise DataError(
            f"{path}: expected arrays {', '.join(SPLIT_KEYS)}, or images/labels/manifest as masklab mask/noise writes them"
        )
    source_name, source_root, fingerprint, split, copies = _manifest_source(path, manifest)
    _verify(path, arrays, manifest)
    raw = arrays["images"]
    if copies > 1:  # K masked copies of each image: K x N training samples, as BERT's dupe factor
        if raw.ndim < 2 or raw.shape[0] != copies:
            raise DataError(f"{path}: images have shape {raw.shape}, not {copies} copies as the manifest says")
        raw = raw.reshape(-1, *raw.shape[2:])
        arrays["labels"] = np.tile(arrays["labels"], copies)
    images = _images(raw, path, "images")
    labels = _labels(arrays["labels"], len(images), path, "labels")
    source = lookup.load(source_name, Lookup(root or source_root, download, (*chain, here), lookup.load, lookup.inputs))
    if source.fingerprint() != fingerprint:
        raise DataError(
            f"{path}: its source dataset {source_name} has changed since the file was written; write it again"
        )
    if images.shape[1:] != source.shape:
        raise DataError(f"{path}: images are {images.shape[1:]} but the source dataset's are {source.shape}")
    if split == "train":
        tx, ty, vx, vy = images, labels, source.test_x, source.test_y
    else:
        tx, ty, vx, vy = source.train_x, source.train_y, images, labels
    copied = copies if manifest["split"] == "train" else 1
    return Dataset(f"npz:{path}", tx, ty, vx, vy, str(path), source.classes, copies=copied)


def inputs(name: str, lookup: Lookup) -> list[Path]:
    """The file, then the inputs of the dataset a mask/noise file was made from."""
    path = Path(name[4:])
    source = manifest_source(path, lookup.chain)
    if not source:
        return [path]
    chain = (*lookup.chain, os.path.realpath(path))
    return [path] + lookup.inputs(
        source[0], Lookup(lookup.root or source[1], lookup.download, chain, lookup.load, lookup.inputs)
    )
