"""The IDX format of MNIST and Fashion-MNIST: read, validate, write.

    magic: 0x00 0x00 <dtype> <ndim>, then ndim big-endian uint32 sizes, then the data.

A truncated file, a foreign file or a wrong shape is a DataError naming the file.
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from masklab.errors import DataError

_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _open(path: Path) -> BinaryIO:
    """The file, transparently gunzipped when it starts with the gzip magic bytes."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - returned to the caller
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror}); check the file and its permissions") from None
    if fh.read(2) == b"\x1f\x8b":
        fh.close()
        return gzip.open(path, "rb")
    fh.seek(0)
    return fh


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """The array in an IDX file (optionally gzip-compressed), checked against its header.
    The data is read straight into the array: no second copy of a large file."""
    path = Path(path)
    try:
        with _open(path) as fh:
            head = fh.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _DTYPES:
                raise DataError(
                    f"{path}: not an IDX file (bad magic number {head.hex() or 'empty'}); expected MNIST-style IDX data"
                )
            dims = head[3]
            if ndim is not None and dims != ndim:
                raise DataError(f"{path}: holds a {dims}-dimensional array, expected {ndim} dimensions")
            raw_shape = fh.read(4 * dims)
            if len(raw_shape) < 4 * dims:
                raise DataError(f"{path}: truncated IDX header; download the file again")
            shape = struct.unpack(f">{dims}I", raw_shape)
            dtype = np.dtype(_DTYPES[head[2]])
            _check_declared(path, shape, dtype, 4 + 4 * dims, compressed=not isinstance(fh, io.BufferedReader))
            array = np.empty(shape, dtype=dtype)
            got = fh.readinto(memoryview(array).cast("B"))
            extra = len(fh.read(1))
    except (EOFError, OSError, zlib.error):
        raise DataError(f"{path}: truncated or corrupt gzip file; download it again") from None
    header = 4 + 4 * dims
    if got != array.nbytes or extra:
        state = "truncated" if got != array.nbytes else "longer than its header says"
        size = header + got + extra
        raise DataError(
            f"{path}: {state} ({size}{'+' if extra else ''} bytes, header {list(shape)} needs {header + array.nbytes}); download the file again"
        )
    return array


def _check_declared(path: Path, shape: tuple[int, ...], dtype: np.dtype, header: int, compressed: bool) -> None:
    """The header's array must be non-empty and fit: exactly the file's size (plain files),
    or the memory available (gzip), before anything is allocated."""
    nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if nbytes == 0:
        raise DataError(f"{path}: its header declares an empty array {list(shape)}; the file is damaged")
    if not compressed:
        size = path.stat().st_size
        if size != header + nbytes:
            state = "truncated" if size < header + nbytes else "longer than its header says"
            raise DataError(
                f"{path}: {state} ({size} bytes, header {list(shape)} needs {header + nbytes}); download the file again"
            )
        return
    from masklab.data.memory import available_memory

    free = available_memory()
    if free is not None and nbytes > free:
        raise DataError(f"{path}: its header declares {nbytes / 2**30:.1f} GiB, more than the memory available")


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write a uint8 array as IDX (gzip-compressed when the name ends in .gz)."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    body = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        body = gzip.compress(body, mtime=0)
    path.write_bytes(body)


def read_idx_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 1, H, W) uint8 and labels (N,) int64 from two IDX files that agree."""
    x = read_idx(images, ndim=3)
    y = read_idx(labels, ndim=1)
    if x.dtype != np.uint8 or y.dtype != np.uint8:
        raise DataError(f"{images}: expected uint8 images and labels, got {x.dtype} and {y.dtype}")
    if len(x) != len(y):
        raise DataError(
            f"{images}: {len(x)} images but {labels.name} holds {len(y)} labels; the files do not belong together"
        )
    return x[:, None, :, :], y.astype(np.int64)
