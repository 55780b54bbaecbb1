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
from pathlib import Path

import numpy as np

from masklab.errors import DataError
from masklab.store.runs import readable

SCHEMA_VERSION = 1
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
    """All arrays of an .npz file (never unpickling) and its manifest, if it has one."""
    if not path.is_file():
        raise DataError(f"{path}: no such file; npz:FILE names an .npz written by masklab mask/noise")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataError(
            f"{path}: not a readable .npz file ({exc}); write it with masklab mask/noise or numpy.savez"
        ) from None
    manifest = None
    if "manifest" in arrays:
        try:
            manifest = json.loads(str(arrays.pop("manifest")))
        except json.JSONDecodeError:
            raise DataError(f"{path}: its manifest is not JSON; the file is damaged") from None
    return arrays, manifest


def _verify(path: Path, arrays: dict[str, np.ndarray], manifest: dict) -> None:
    for key, digest in manifest.get("sha256", {}).items():
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
    return array.astype(np.int64)


def load_dataset(path: Path, root: str | None = None, download: bool = False):
    """A Dataset from an .npz: either train_/test_ arrays, or a masklab mask/noise file."""
    from masklab.data.registry import Dataset, _classes, load

    arrays, manifest = read(path)
    if all(k in arrays for k in SPLIT_KEYS):
        tx = _images(arrays["train_images"], path, "train_images")
        vx = _images(arrays["test_images"], path, "test_images")
        ty = _labels(arrays["train_labels"], len(tx), path, "train_labels")
        vy = _labels(arrays["test_labels"], len(vx), path, "test_labels")
        return Dataset(f"npz:{path}", tx, ty, vx, vy, str(path), _classes("", np.concatenate([ty, vy])))
    if not ("images" in arrays and "labels" in arrays and manifest):
        raise DataError(
            f"{path}: expected arrays {', '.join(SPLIT_KEYS)}, or images/labels/manifest as masklab mask/noise writes them"
        )
    _verify(path, arrays, manifest)
    copies = int(manifest.get("copies", 1))
    raw = arrays["images"]
    if copies > 1:  # K masked copies of each image: K x N training samples, as BERT's dupe factor
        raw = raw.reshape(-1, *raw.shape[2:])
        arrays["labels"] = np.tile(arrays["labels"], copies)
    images = _images(raw, path, "images")
    labels = _labels(arrays["labels"], len(images), path, "labels")
    source = load(manifest["source"]["dataset"], root or manifest["source"].get("root"), download)
    if source.fingerprint() != manifest["source"]["fingerprint"]:
        raise DataError(
            f"{path}: its source dataset {manifest['source']['dataset']} has changed since the file was written; write it again"
        )
    if images.shape[1:] != source.shape:
        raise DataError(f"{path}: images are {images.shape[1:]} but the source dataset's are {source.shape}")
    if manifest["split"] == "train":
        tx, ty, vx, vy = images, labels, source.test_x, source.test_y
    else:
        tx, ty, vx, vy = source.train_x, source.train_y, images, labels
    copied = copies if manifest["split"] == "train" else 1
    return Dataset(f"npz:{path}", tx, ty, vx, vy, str(path), source.classes, copies=copied)
