"""File primitives of the run store: writes that never follow a planted link, never
leave half a file, and fail with one line naming the path.

- A file is written to a fresh temporary name in its own folder, opened with
  O_CREAT|O_EXCL|O_NOFOLLOW (a name that exists, a symlink included, is never opened),
  flushed to disk, then renamed over the target: the rename replaces a planted link
  itself instead of writing through it. The folder is opened once (O_NOFOLLOW for a
  subfolder such as eval/) and every step is relative to that descriptor.
- Appends (metrics.jsonl) open the file O_APPEND|O_NOFOLLOW.
- Folders are published with renameat2(RENAME_NOREPLACE) and swapped with
  renameat2(RENAME_EXCHANGE) where Linux offers them, with a careful fallback elsewhere.

Any OSError becomes a StoreWriteError: `cannot write runs/x/checkpoint.pt: No space
left on device`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from masklab.errors import RunError
from masklab.files import readable  # noqa: F401 - re-exported for the store's writers

MAX_READ = 64 << 20  # a JSON or YAML file of a run larger than this is damaged, not read


class StoreWriteError(RunError):
    """The disk refused a write (full, read-only, permissions); the message names the path."""


class DamagedFile(RunError):
    """A file of a run cannot be read as what it should be; the message names it."""


def _hint(err: OSError) -> str:
    if err.errno == errno.EFBIG:
        return "the file is larger than a file-size limit allows (ulimit -f) or the filesystem holds"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free some space or point --runs-dir / $MASKLAB_RUNS at another disk"
    if err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "make the folder writable or point --runs-dir / $MASKLAB_RUNS elsewhere"
    if err.errno == errno.ELOOP:
        return "it is a symbolic link; masklab writes only real files and folders in the runs dir"
    return "check the disk and the folder's permissions"


def write_error(path: Path | str, err: OSError) -> StoreWriteError:
    return StoreWriteError(f"cannot write {path}: {err.strerror or err} (errno {err.errno}); {_hint(err)}")


@contextlib.contextmanager
def open_folder(folder: Path, subfolder: str | None = None, create: bool = False) -> Iterator[int]:
    """A descriptor of `folder` (or of `folder/subfolder`); both must be real folders, a
    symlink in their place is refused. Raises StoreWriteError."""
    fd = -1
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        if subfolder is not None:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(subfolder, 0o777, dir_fd=fd)
            sub = os.open(subfolder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = sub
    except OSError as err:
        if fd >= 0:
            os.close(fd)
        where = folder / subfolder if subfolder else folder
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise StoreWriteError(
                f"cannot write in {where}: it is not a real folder (a symbolic link or a file); remove it"
            ) from None
        raise write_error(where, err) from None
    try:
        yield fd
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def write_file(folder: Path, name: str, data: bytes, subfolder: str | None = None) -> None:
    """Atomically replace folder[/subfolder]/name with `data` (see the module doc)."""
    target = folder / subfolder / name if subfolder else folder / name
    with open_folder(folder, subfolder, create=subfolder is not None) as dfd:
        tmp = f".{name}.{secrets.token_hex(4)}.tmp"
        fd = -1
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=dfd)
            _write_all(fd, data)
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            tmp = ""
        except OSError as err:
            raise write_error(target, err) from None
        finally:
            if fd >= 0:
                os.close(fd)
            if tmp:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dfd)


def rewrite_in_place(folder: Path, name: str, data: bytes) -> None:
    """Overwrite a small file where it stands, within its present size (padded with
    spaces, which JSON ignores): the last resort for recording a status on a full disk,
    where a new file cannot be made. Nothing is truncated; if the write fails, the old
    bytes are put back. Never through a link."""
    with open_folder(folder) as dfd:
        try:
            fd = os.open(name, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        except OSError as err:
            raise write_error(folder / name, err) from None
        try:
            old = os.pread(fd, os.fstat(fd).st_size, 0)
            if len(data) > len(old):
                raise StoreWriteError(f"cannot write {folder / name}: no room to record the status in place")
            try:
                _pwrite_all(fd, data + b" " * (len(old) - len(data)))
                os.fsync(fd)
            except OSError as err:
                with contextlib.suppress(OSError):
                    _pwrite_all(fd, old)
                raise write_error(folder / name, err) from None
        finally:
            os.close(fd)


def _pwrite_all(fd: int, data: bytes) -> None:
    view, offset = memoryview(data), 0
    while offset < len(view):
        offset += os.pwrite(fd, view[offset:], offset)


def append_line(folder: Path, name: str, line: str) -> None:
    """Append one line and flush it to disk; never through a link."""
    with open_folder(folder) as dfd:
        try:
            fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=dfd)
        except OSError as err:
            raise write_error(folder / name, err) from None
        try:
            _write_all(fd, line.encode())
            os.fsync(fd)
        except OSError as err:
            raise write_error(folder / name, err) from None
        finally:
            os.close(fd)


def open_regular(path: Path, label: str | None = None) -> int:
    """A read descriptor of a regular file, never through a link and never blocking on a
    FIFO or device planted in its place (FileNotFoundError when absent). Errors name the
    file as `label` (default: its name)."""
    label = label or path.name
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise DamagedFile(f"{label}: is a symbolic link; masklab reads only the files it wrote") from None
        raise DamagedFile(f"{label}: cannot be read ({err.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DamagedFile(f"{label}: is not a regular file")
    return fd


def read_bytes(path: Path, limit: int = MAX_READ, label: str | None = None) -> bytes:
    """A regular file's bytes (see `open_regular`), refusing files larger than `limit`."""
    with os.fdopen(open_regular(path, label), "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise DamagedFile(f"{label or path.name}: {size:,} bytes, larger than masklab ever writes it")
        try:
            return fh.read(limit + 1)
        except OSError as err:
            raise DamagedFile(f"{label or path.name}: cannot be read ({err.strerror})") from None


# --- folders ----------------------------------------------------------------------------

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _renameat2()
_UNSUPPORTED = (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP)


def _call_renameat2(src: Path, dst: Path, flags: int) -> bool:
    """True when renameat2 did it; False when the system or filesystem lacks it."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(dst))


def rename_noreplace(src: Path, dst: Path) -> None:
    """Rename a folder to a name that must not exist (FileExistsError otherwise)."""
    if _call_renameat2(src, dst, RENAME_NOREPLACE):
        return
    if os.path.lexists(dst):  # fallback: a small window, but never over a folder with content
        raise FileExistsError(errno.EEXIST, "exists", str(dst))
    os.rename(src, dst)


def exchange(a: Path, b: Path) -> None:
    """Swap two folders atomically; without renameat2, a move aside that is undone if the
    second step fails (so `b` is missing only between two renames)."""
    if _call_renameat2(a, b, RENAME_EXCHANGE):
        return
    aside = b.with_name(f".swap-{b.name}-{secrets.token_hex(4)}")
    os.rename(b, aside)
    try:
        os.rename(a, b)
    except OSError:
        os.rename(aside, b)
        raise
    os.rename(aside, a)


def remove_tree(path: Path) -> None:
    """Remove a folder (symlinks inside are removed, never followed)."""
    shutil.rmtree(path, ignore_errors=True)


def fsync_folder(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
