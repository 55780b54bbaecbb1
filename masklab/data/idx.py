"""The IDX format of MNIST and Fashion-MNIST: read, validate, write.

    magic: 0x00 0x00 <dtype> <ndim>, then ndim big-endian uint32 sizes, then the data.

A truncated file, a foreign file or a wrong shape is a DataError naming the file.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

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


def _raw_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror}); check the file and its permissions") from None
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (EOFError, OSError, zlib.error):
            raise DataError(f"{path}: truncated or corrupt gzip file; download it again") from None
    return data


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """The array in an IDX file (optionally gzip-compressed), checked against its header."""
    path = Path(path)
    data = _raw_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise DataError(
            f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'}); expected MNIST-style IDX data"
        )
    dims = data[3]
    if ndim is not None and dims != ndim:
        raise DataError(f"{path}: holds a {dims}-dimensional array, expected {ndim} dimensions")
    header = 4 + 4 * dims
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header; download the file again")
    shape = struct.unpack(f">{dims}I", data[4:header])
    dtype = np.dtype(_DTYPES[data[2]])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(
            f"{path}: {state} ({len(data)} bytes, header {list(shape)} needs {expected}); download the file again"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).copy()  # writable


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
