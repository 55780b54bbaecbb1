"""SQLite files that masklab hands to a library (MLflow's tracking store, Optuna's
search database), checked first: a file that SQLite cannot use is then one line
naming it, instead of the library's retries, tracebacks or a wait of minutes."""

from __future__ import annotations

import sqlite3
import urllib.parse
from pathlib import Path

TEXT_TYPES = (b"CHAR", b"CLOB", b"TEXT")  # SQLite's rule for a column of text affinity


def check_sqlite_file(path: Path, timeout: float, whole: bool = False) -> None:
    """Open an existing SQLite file read-write, read its header (with `whole`: every page,
    by SQLite's quick_check, and every text value, as UTF-8) and take its write lock for a
    moment, waiting at most `timeout` seconds for another process's. Raises sqlite3.Error
    (or UnicodeDecodeError) saying what is wrong."""
    name = urllib.parse.quote(str(path), safe="/")  # a ? or # in the path is no URI syntax
    con = sqlite3.connect(f"file:{name}?mode=rw", uri=True, timeout=timeout)
    try:
        con.execute("PRAGMA schema_version").fetchone()  # "file is not a database"
        if whole:
            problems = [row[0] for row in con.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError(problems[0])
            _text_is_utf8(con)
        con.execute("BEGIN IMMEDIATE")  # "database is locked" while another process writes
        con.rollback()
    finally:
        con.close()


def _text_is_utf8(con: sqlite3.Connection) -> None:
    """Every text value decodes (SQLite stores any bytes; a library fails on them later)."""
    con.text_factory = bytes
    tables = [row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        quoted = '"' + table.decode().replace('"', '""') + '"'
        info = con.execute(f"PRAGMA table_info({quoted})").fetchall()
        for column in [row[1] for row in info if any(t in row[2].upper() for t in TEXT_TYPES)]:
            name = '"' + column.decode().replace('"', '""') + '"'
            for (value,) in con.execute(f"SELECT {name} FROM {quoted} WHERE typeof({name}) = 'text'"):
                value.decode("utf-8")
