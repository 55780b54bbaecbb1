"""What a dataset is made of, by content: SHA-256 digests of its input files, cached by
file identity, and the check that the inputs a run recorded are still what they were.

A run records the digest of every file (or folder) its dataset is read from
(`data.inputs` in run.json). Reusing, resuming or comparing the run checks them again.
Hashing every time would cost 0.05 s for Fashion-MNIST's 30 MB of .gz files, so a
digest is kept under $MASKLAB_CACHE/digests/ with the file's identity: its resolved
path, device, inode, size, mtime_ns and ctime_ns. Any of them differing means the file
is hashed again; ctime is in the key because restoring a file's mtime (`touch -d`,
`os.utime`) cannot restore its ctime. A file changed within a second of being hashed is
not cached (its timestamps could repeat within the clock's granularity: git's "racy"
case), so it is hashed again next time.

A folder's digest covers every regular, non-hidden file under it, by relative path and
content: a text added to a class folder changes it, as DVC tracks a folder as a whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import time
from pathlib import Path

import numpy as np

from masklab.data.download import cache_dir, publish

RACY_S = 1.0  # a file whose mtime or ctime is this recent is hashed, not cached
_memo: dict[tuple, str] = {}  # identity -> digest, for this process


def fingerprint_arrays(*arrays: np.ndarray) -> str:
    """SHA-256 (16 hex digits) of arrays, their dtypes and shapes: equal iff the data is."""
    h = hashlib.sha256()
    for array in arrays:
        h.update(f"{array.dtype}{array.shape}".encode())
        h.update(memoryview(np.ascontiguousarray(array)).cast("B"))  # no copy when contiguous
    return h.hexdigest()[:16]


def identity(path: Path) -> tuple:
    """(resolved path, device, inode, size, mtime_ns, ctime_ns) of a file; OSError if gone."""
    real = os.path.realpath(path)
    st = os.stat(real)
    return (real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def file_digest(path: Path) -> str:
    """SHA-256 of a regular file's bytes, from the cache when its identity is unchanged."""
    ident = identity(path)
    if ident in _memo:
        return _memo[ident]
    entry = _entry_path(ident[0])
    cached = _read_entry(entry)
    if cached is not None and tuple(cached.get("identity", ())) == ident:
        _memo[ident] = cached["sha256"]
        return cached["sha256"]
    digest = _hash_file(ident[0])
    if identity(path) == ident and not _racy(ident):
        _memo[ident] = digest
        publish(entry, lambda out: out.write(json.dumps({"identity": list(ident), "sha256": digest}).encode()))
    return digest


def input_digest(path: Path) -> str:
    """A file's digest, or a folder's: every regular non-hidden file under it, by path and content."""
    if not os.path.isdir(path):
        return file_digest(path)
    h = hashlib.sha256()
    for rel in _tree_files(Path(path)):
        h.update(f"{rel}\0{file_digest(Path(path) / rel)}\n".encode())
    return h.hexdigest()


def pin(paths: list[Path]) -> list[dict]:
    """What run.json records of a dataset's inputs: each path (resolved) and its digest
    (None when it cannot be read)."""
    out = []
    for p in paths:
        try:
            digest = input_digest(p)
        except OSError:
            digest = None
        out.append({"path": os.path.realpath(p), "sha256": digest})
    return out


def pin_difference(then: list, now: list) -> str | None:
    """How the inputs pinned `now` differ from those pinned `then`, in words naming the
    file; None when every input has the content it had. A moved or copied file with the
    same content is the same input."""
    if len(then) != len(now):
        return f"it was read from {len(then)} file(s), now from {len(now)} ({', '.join(p['path'] for p in now[:3])})"
    for was, is_ in zip(then, now):
        was = was if isinstance(was, dict) else {}
        if is_["sha256"] is None:
            return f"{is_['path']} is gone or unreadable"
        if is_["sha256"] != was.get("sha256"):
            return (
                f"{is_['path']} has changed since (sha256 {str(was.get('sha256'))[:12]} then, {is_['sha256'][:12]} now)"
            )
    return None


# --- the cache ---------------------------------------------------------------------------


def _entry_path(real: str) -> Path:
    return cache_dir() / "digests" / f"{hashlib.sha256(real.encode()).hexdigest()[:32]}.json"


def _read_entry(path: Path) -> dict | None:
    with contextlib.suppress(OSError, ValueError):
        body = json.loads(path.read_bytes())
        if isinstance(body, dict) and isinstance(body.get("sha256"), str) and isinstance(body.get("identity"), list):
            return body
    return None


def _hash_file(path: str) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO must not block the open
    with open(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path}: not a regular file")
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _racy(ident: tuple) -> bool:
    return time.time_ns() - max(ident[4], ident[5]) < RACY_S * 1e9


def _tree_files(folder: Path) -> list[str]:
    """Regular non-hidden files under a folder, relative, sorted; hidden folders skipped."""
    out = []
    for base, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            full = os.path.join(base, name)
            if not name.startswith(".") and stat.S_ISREG(os.stat(full).st_mode):
                out.append(os.path.relpath(full, folder))
    return sorted(out)
