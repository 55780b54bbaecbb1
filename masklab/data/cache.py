"""Decoded datasets kept under $MASKLAB_CACHE, so a run does not gunzip the same files again.

Gunzipping Fashion-MNIST's IDX files takes 0.6 s on a 2-core CPU; reading them back
from an uncompressed .npz takes about 0.05 s. An entry is keyed by the *content* of
its source files (their SHA-256, from `data.fingerprint`'s digest cache: a file whose
path, inode, size, mtime or ctime changed is hashed again), so an edited file misses
the cache whatever its timestamps say. An entry is verified, not trusted: the arrays
read back are hashed and must give the fingerprint stored with them (0.05 s for
Fashion-MNIST), so a damaged or substituted entry is removed and the sources decoded
again.

Safe without locks: an entry is written to a temporary name and renamed into place,
so concurrent writers each publish a complete file and the last rename wins; a reader
that finds a damaged entry (truncated, a bad CRC, a foreign file) ignores it, removes
it and decodes the sources again. Caching is an optimisation: if the cache folder
cannot be written, masklab decodes every time and says nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from masklab.data import fingerprint
from masklab.data.download import cache_dir, publish

FORMAT = 2  # bump when what an entry holds changes (2: keyed by content, verified on read)
ARRAYS = ("train_x", "train_y", "test_x", "test_y")


def source_key(files: list[Path]) -> str | None:
    """A hash of the files' contents (their SHA-256 digests, cached by file identity);
    None when a file cannot be read."""
    try:
        digests = [fingerprint.file_digest(f) for f in files]
    except OSError:
        return None
    return hashlib.sha256(json.dumps([FORMAT, digests]).encode()).hexdigest()[:24]


def entry_path(key: str) -> Path:
    return cache_dir() / "decoded" / f"{key}.npz"


def load(key: str | None) -> tuple[dict[str, np.ndarray], str] | None:
    """(arrays, fingerprint) cached under a `source_key`, or None (a miss or a damaged entry)."""
    if key is None:
        return None
    path = entry_path(key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:  # zipfile checks each member's CRC-32 as it reads
            if str(z["key"]) != key:
                raise ValueError("entry written for other files")
            arrays = {k: z[k] for k in ARRAYS}
            stored = str(z["fingerprint"])
        if fingerprint.fingerprint_arrays(*(arrays[k] for k in ARRAYS)) != stored:
            raise ValueError("arrays that are not the ones the entry was written with")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return arrays, stored


def store(files: list[Path], key: str | None, arrays: dict[str, np.ndarray], known: str) -> None:
    """Publish an entry for arrays decoded from `files` while their `source_key` was
    `key` (taken before decoding); nothing when the files changed meanwhile. Any failure
    leaves the cache as it was."""
    if key is None or source_key(files) != key:
        return
    entry = entry_path(key)
    publish(entry, lambda out: np.savez(out, key=np.array(entry.stem), fingerprint=np.array(known), **arrays))
