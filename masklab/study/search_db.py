"""The search's SQLite file, `<runs dir>/<name>.search.db`: checked before Optuna opens
it, and its failures told in one line.

The file lives in the runs folder and is never reached through a link: a link planted
at its name (or at its journal's, or at its lock's) is refused, so nothing is created or
written outside the runs folder. A folder, FIFO or device at its name, a file that is
not an SQLite database, a damaged one (SQLite's quick_check), one whose text is not
UTF-8, and one another process keeps locked for longer than LOCK_WAIT_S are each a
RunError naming the file and the fix, never a traceback.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

from masklab.errors import RunError
from masklab.store.sqlite_files import check_sqlite_file

LOCK_WAIT_S = 10.0  # searches sharing a file hold its write lock for milliseconds
SIDE_FILES = ("-journal", "-wal", "-shm", ".lock")


def check_database(db: Path) -> None:
    """Refuse a search database that Optuna could not use, or that a link leads away from."""
    for path in [db, *(db.with_name(db.name + suffix) for suffix in SIDE_FILES)]:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(mode):
            raise RunError(
                f"{path} is a symbolic link; the search database and its side files live in the runs folder and are "
                f"never written through a link: remove the link (rm {path})"
            )
        if not stat.S_ISREG(mode):
            what = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
            raise RunError(f"{path} is {what}, not part of a search database; move it out of the runs folder")
    if db.exists():
        _readable(db)


def _readable(db: Path) -> None:
    """SQLite opens the file, finds its pages whole and its text UTF-8, and can take its write lock."""
    try:
        check_sqlite_file(db, LOCK_WAIT_S, whole=True)
    except (sqlite3.Error, UnicodeDecodeError) as err:
        raise database_error(db, err) from None


def open_lock(db: Path) -> int:
    """The lock file beside the database (its descriptor), opened never through a link."""
    path = db.with_name(db.name + ".lock")
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as err:
        raise RunError(f"cannot open {path} ({err.strerror}); remove it, masklab makes it again") from None


def database_error(db: Path, err: BaseException) -> RunError:
    """One line for what went wrong with the search database: locked, or damaged."""
    lines = str(err).strip().splitlines()
    why = lines[0] if lines else type(err).__name__
    if "locked" in why or "busy" in why:
        return RunError(
            f"{db}: the search database is locked by another process ({why}) for more than {LOCK_WAIT_S:g} s; "
            "wait for it to end, or stop it"
        )
    return RunError(
        f"{db}: the search database is damaged ({why}); move it away (mv {db} {db}.damaged) and run the same "
        "command: the search starts over, reusing a run it trained before when it proposes it again"
    )


@contextlib.contextmanager
def database_errors(db: Path) -> Iterator[None]:
    """Errors of the database while Optuna reads or writes it, as one RunError."""
    try:
        yield
    except (sqlite3.Error, UnicodeDecodeError) as err:
        raise database_error(db, err) from None
    except Exception as err:
        if _from_the_database(err):
            raise database_error(db, err) from None
        raise


def _from_the_database(err: Exception) -> bool:
    """SQLAlchemy's errors and Optuna's storage errors (both come with Optuna)."""
    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import SQLAlchemyError

    return isinstance(err, (SQLAlchemyError, StorageInternalError))
