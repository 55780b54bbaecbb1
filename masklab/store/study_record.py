"""A sequential study's record in the runs folder: `<runs>/<study>.sequential.json`.

The study driver (study/sequential.py) writes its design before the first seed and
every look's decisions after it; `masklab compare` reads it back. The store is the only
writer of the runs folder, so the file is written and read here, through the store's
file primitives: written whole to a fresh temporary name and renamed over the record
(never through a planted link, never half a file, one line naming the path when the
disk refuses), read without following a link or blocking on a FIFO, and refused when it
is not a JSON object (one line naming the file and the fix). While a driver runs it
holds `<runs>/.<study>.sequential.lock` (flock), so two processes never drive one study.
A symlinked runs root is followed, as everywhere in the store; links inside it are not.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from masklab import signals
from masklab.errors import RunError
from masklab.store import files
from masklab.store.files import DamagedFile
from masklab.store.folder import json_text

SUFFIX = ".sequential.json"
MAX_RECORD = 8 << 20  # a record larger than this is not one masklab wrote


class StudyBusy(RunError):
    """Another process is driving the same sequential study."""


def record_path(root: Path, study: str) -> Path:
    return Path(root) / f"{study}{SUFFIX}"


def fix_hint(root: Path, study: str) -> str:
    return f"restore it, or remove {record_path(root, study)} to start the study over (its finished runs are reused)"


def read_record(root: Path, study: str) -> dict | None:
    """The record of a study, None when it has none; DamagedFile when it is not a JSON object."""
    path = record_path(root, study)
    try:
        data = files.read_bytes(path, MAX_RECORD, label=str(path))
    except FileNotFoundError:
        return None
    except DamagedFile as exc:
        raise DamagedFile(f"{exc}; {fix_hint(root, study)}") from None
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        raise DamagedFile(f"{path}: not valid JSON (a damaged record); {fix_hint(root, study)}") from None
    if not isinstance(body, dict):
        raise DamagedFile(f"{path}: holds a JSON {type(body).__name__}, not a study's record; {fix_hint(root, study)}")
    return body


def write_record(root: Path, study: str, body: dict) -> None:
    """Replace the record whole (StoreWriteError naming the path when the disk refuses)."""
    root = _real_root(root)
    with signals.deferred():  # a signal waits for the rename: the record is old or new, never neither
        files.write_file(root, record_path(root, study).name, (json_text(body) + "\n").encode())


@contextlib.contextmanager
def driving(root: Path, study: str) -> Iterator[None]:
    """Hold the study's lock for the block; StudyBusy when another process holds it."""
    root = _real_root(root)
    name = f".{study}.sequential.lock"
    try:
        with files.open_folder(root) as dfd:
            fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=dfd)
    except OSError as err:
        raise files.write_error(root / name, err) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StudyBusy(
                f"another process is running sequential study {study} (it holds {root / name}); "
                "wait for it, or stop it and run the same command again"
            ) from None
        yield
    finally:
        os.close(fd)


def _real_root(root: Path) -> Path:
    """The runs folder (created if missing), a symlinked root followed on purpose."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise files.write_error(root, err) from None
    real = root.resolve()
    if not real.is_dir():
        raise files.write_error(root, OSError(errno.ENOTDIR, "not a folder"))
    return real
