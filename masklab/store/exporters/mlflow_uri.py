"""Where an MLflow tracking store is, checked before MLflow opens it.

MLflow answers a wrong URI with a long exception, a URI of a database it cannot open
with ten retries over about 100 seconds, and a server that does not answer with seven
retries over minutes. Here every URI is checked first and fails in one line naming the
URI and the fix: a UsageError (exit 2) when the URI cannot work as written, a RunError
(exit 1) when the store it names cannot be reached, opened or written.

| URI | checked |
|-----|---------|
| `sqlite:///FILE.db` | its folder exists; the name is not a folder, a FIFO or too long; an existing file is an SQLite database that is not locked |
| `file:///DIR`, a plain path | MLflow's file store: this MLflow accepts it (MLflow 3 wants MLFLOW_ALLOW_FILE_STORE=true); the folder exists or can be made |
| `http(s)://`, `postgresql://`, `mysql://`, `mssql://` | the host answers on its port within CONNECT_TIMEOUT_S (unless a proxy is set for it) |

Later HTTP requests fail within seconds too: unless the user set them, masklab sets
MLflow's MLFLOW_HTTP_REQUEST_TIMEOUT, _MAX_RETRIES and _BACKOFF_FACTOR (HTTP_DEFAULTS).
"""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
import stat
import urllib.parse
import urllib.request
from pathlib import Path

from masklab.errors import RunError, UsageError
from masklab.store.sqlite_files import check_sqlite_file

SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks", "databricks-uc", "uc")
PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433}
CONNECT_TIMEOUT_S = 5.0
HTTP_DEFAULTS = {  # MLflow's own defaults are 120 s, 7 retries, factor 2: minutes per unanswered request
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}
EXAMPLE = "e.g. mlflow:sqlite:///mlflow.db or mlflow:http://localhost:5000"


def scheme_of(uri: str) -> str:
    """`sqlite`, `postgresql` (of `postgresql+psycopg2`), ...; '' for a plain path."""
    head, sep, _ = uri.partition(":")
    if not sep or "/" in head or len(head) < 2:  # a plain path (C: would be a drive)
        return ""
    return head.split("+", 1)[0].lower()


def check_uri(uri: str) -> None:
    """Refuse a tracking URI that cannot work, or whose store cannot be reached or opened."""
    scheme = scheme_of(uri)
    if scheme and scheme not in SCHEMES:
        raise UsageError(f"unknown URI scheme {scheme!r}; MLflow stores are {', '.join(SCHEMES[:7])}, ...; {EXAMPLE}")
    if scheme == "sqlite":
        check_sqlite(uri)
    elif scheme in ("", "file"):
        check_file_store(uri)
    elif scheme in PORTS:
        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        probe(uri, PORTS[scheme])


def sqlite_path(uri: str) -> str:
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(uri).database or ""
    except Exception:  # noqa: BLE001 - sqlalchemy's ArgumentError, ValueError on a bad port
        raise UsageError("not a database URL; write sqlite:///FILE.db (relative) or sqlite:////FILE.db") from None


def check_sqlite(uri: str) -> None:
    """The database file's folder exists, and the file is one SQLite can open and write."""
    name = sqlite_path(uri)
    if name in ("", ":memory:"):
        raise UsageError("an in-memory database keeps nothing after the command; name a file, sqlite:///mlflow.db")
    path = Path(name)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as err:
        raise _path_error(path, err) from None
    if mode is not None and stat.S_ISDIR(mode):
        raise UsageError(f"{path} is a folder; name a database file in it, sqlite:///{path / 'mlflow.db'}")
    if mode is not None and not stat.S_ISREG(mode):
        raise UsageError(f"{path} is not a regular file; name a database file")
    if not path.parent.is_dir():  # MLflow would make the folders: a typo would scatter them
        raise UsageError(f"folder {path.parent} does not exist; create it (mkdir -p {path.parent}) or fix the URI")
    if mode is None:
        if not os.access(path.parent, os.W_OK):
            raise RunError(f"cannot create {path}: permission denied in {path.parent}; name a folder you can write")
        return
    _open_sqlite(path)


def _open_sqlite(path: Path) -> None:
    """An existing file: SQLite reads its header and is not held by a writer."""
    try:
        check_sqlite_file(path, CONNECT_TIMEOUT_S)
    except sqlite3.Error as err:
        raise _sqlite_error(path, err) from None


def _sqlite_error(path: Path, err: sqlite3.Error) -> RunError:
    why = str(err).splitlines()[0] if str(err) else type(err).__name__
    if "locked" in why or "busy" in why:
        return RunError(f"{path}: {why}; another process is writing it: wait for it, or name another file")
    if "readonly" in why or "unable to open" in why:
        return RunError(f"{path}: {why}; name a file you can write")
    return RunError(f"{path}: not an SQLite database ({why}); name another file, or move this one away")


def _path_error(path: Path, err: OSError) -> UsageError | RunError:
    if err.errno == errno.ENAMETOOLONG:
        return UsageError(f"a file or folder name in the path is too long ({err.strerror}); use a shorter name")
    return RunError(f"cannot create or open {path} ({err.strerror}); name a place you can write")


def check_file_store(uri: str) -> None:
    """MLflow's file store: accepted by this MLflow, and a folder that exists or can be made."""
    from mlflow import environment_variables as mlflow_env

    allow = getattr(mlflow_env, "MLFLOW_ALLOW_FILE_STORE", None)  # present where MLflow gates the file store
    if allow is not None and not allow.get():
        raise UsageError(
            "a folder is MLflow's file store, which this MLflow refuses (maintenance mode); use a database, "
            "mlflow:sqlite:///mlflow.db, or set MLFLOW_ALLOW_FILE_STORE=true to keep the folder"
        )
    parsed = urllib.parse.urlparse(uri)
    path = Path(urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else uri)
    try:
        path.mkdir(exist_ok=True)  # MLflow makes it too: made here, a failure is one line
    except FileExistsError:
        raise UsageError(f"{path} is a file; name a folder for MLflow's file store") from None
    except OSError as err:
        if err.errno == errno.ENOENT and not path.parent.is_dir():
            raise UsageError(f"folder {path.parent} does not exist; create it or fix the URI") from None
        raise _path_error(path, err) from None


def probe(uri: str, default_port: int) -> None:
    """The server's host answers a TCP connection within CONNECT_TIMEOUT_S."""
    parsed = urllib.parse.urlparse(uri)
    try:
        host, port = parsed.hostname, parsed.port or default_port
    except ValueError as err:
        raise UsageError(f"bad port ({err}); {EXAMPLE}") from None
    if not host:
        raise UsageError(f"no host; {EXAMPLE}")
    proxied = parsed.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(host)
    if proxied and parsed.scheme.startswith("http"):
        return  # reached through a proxy: MLflow's requests go there, with the timeouts above
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        why = f"no answer within {CONNECT_TIMEOUT_S:g} s" if isinstance(err, TimeoutError) else err.strerror or str(err)
        raise RunError(f"cannot reach {host}:{port} ({why}); start the server or fix the URI") from None
