"""One run folder: reading it tolerantly, writing it atomically, locking it.

A folder whose files are not what they should be has the status `damaged`, and
`Run.damage()` names the file; reading never raises on bad content. Writes go through
`store.files` (atomic, never through a planted link) and JSON is always valid: NaN and
infinities are written as null, their key paths listed under `non_finite`.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masklab import safeyaml
from masklab.errors import RunError, SpecError
from masklab.store import files
from masklab.store.files import DamagedFile, StoreWriteError, readable  # noqa: F401 - re-exported

STATUSES = ("running", "done", "failed", "interrupted", "pruned", "stale", "damaged")
WRITTEN_STATUSES = ("running", "done", "failed", "interrupted", "pruned")  # pruned: by a search
_INFO_TYPES = {
    "id": str,
    "name": str,
    "group": str,
    "study": str,
    "seed": int,
    "status": str,
    "error": str,
    "created": str,
    "data": dict,
    "versions": dict,
    "epochs_done": int,
    "started": str,
    "finished": str,
    "n_val": int,
    "tags": dict,  # masklab tag
    "note": str,
    "mlflow": dict,  # masklab export --to mlflow
    "seed_batch": dict,
}
_SPEC_TYPES = {"name": str, "data": dict, "model": dict, "train": dict, "eval": dict, "train_ops": list, "seeds": list}
_SPEC_REQUIRED = ("name", "seeds", "data", "model", "train")


def runs_root(runs_dir: str | Path | None = None) -> Path:
    """--runs-dir, else $MASKLAB_RUNS, else ./runs."""
    return Path(runs_dir or os.environ.get("MASKLAB_RUNS") or "runs")


def run_id(name: str, group_hash: str, seed: int) -> str:
    return f"{name}-{group_hash}-s{seed}"


def now() -> str:
    """Local time with milliseconds, so runs made in the same second still sort in order."""
    return datetime.datetime.now().astimezone().isoformat(timespec="milliseconds")


def finite_json(body: Any) -> Any:
    """`body` with NaN and infinities replaced by None; a mapping also lists their key
    paths under `non_finite`, so a reader knows the value existed and was not finite."""
    bad: list[str] = []

    def clean(value: Any, path: str) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            bad.append(path)
            return None
        if isinstance(value, dict):
            return {k: clean(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    out = clean(body, "")
    if bad and isinstance(out, dict):
        out["non_finite"] = sorted(set(out.get("non_finite") or []) | set(bad))
    return out


def json_text(body: Any, indent: int | None = 2) -> str:
    return json.dumps(finite_json(body), indent=indent, allow_nan=False)


def write_atomic(path: Path, text: str | bytes) -> None:
    """Replace `path` atomically (a temporary file in its folder, then a rename)."""
    files.write_file(path.parent, path.name, text.encode() if isinstance(text, str) else text)


def write_json(path: Path, body: Any) -> None:
    write_atomic(path, json_text(body) + "\n")


class RunBusy(RunError):
    """Another process holds the run's lock."""


class RunLock:
    """An exclusive flock on a run folder's `.lock`, held until `release()`. The lock
    belongs to the file, so it survives the rename that publishes or swaps the folder."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire(folder: Path, rid: str, pid: Any = None, tries: int = 25) -> RunLock:
    """Take `folder/.lock` exclusively (a planted link there is refused). Brief retries
    let a reader's momentary probe (`is_locked`) pass; a holder makes it a RunBusy."""
    lock_path = folder / ".lock"
    try:
        with files.open_folder(folder) as dfd:  # the folder itself must not be a link either
            fd = os.open(".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=dfd)
    except OSError as err:
        raise files.write_error(lock_path, err) from None
    try:
        for _ in range(tries):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.01)
        else:
            who = f" (pid {pid})" if pid else ""
            raise RunBusy(f"run {rid} is being written by another process{who}; wait for it or pick another run")
        # the folder may have been swapped between open and flock: the lock must be the current one
        mine, current = os.fstat(fd), os.lstat(lock_path)
        if (mine.st_dev, mine.st_ino) != (current.st_dev, current.st_ino):
            raise RunBusy(f"run {rid} was replaced by another process while this one locked it; try again")
    except FileNotFoundError:
        os.close(fd)
        raise RunBusy(f"run {rid} was moved by another process while this one locked it; try again") from None
    except BaseException:
        os.close(fd)
        raise
    return RunLock(fd)


@dataclass
class Run:
    """One run folder. Reads are lazy and tolerant; writes are atomic. `rid` names a run
    that is staged under a temporary folder name."""

    path: Path
    rid: str | None = None

    @property
    def id(self) -> str:
        return self.rid or self.path.name

    # --- reading ------------------------------------------------------------------------

    def _read(self, name: str) -> bytes:
        if self.path.is_symlink():  # never read (or write) through a link planted as a run folder
            raise DamagedFile("the run folder is a symbolic link; masklab keeps only real folders in the runs dir")
        return files.read_bytes(self.path / name, label=name)

    def _load_json(self, name: str) -> Any:
        """The JSON value of a file; raises DamagedFile naming it, FileNotFoundError if absent."""
        try:
            raw = self._read(name)
        except FileNotFoundError:
            raise
        except OSError as err:
            raise DamagedFile(f"{name}: cannot be read ({err.strerror})") from None
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise DamagedFile(f"{name}: not valid JSON (empty or cut short?)") from None

    def _object(self, name: str) -> dict | None:
        """A JSON object file, or None when it is missing or damaged."""
        try:
            body = self._load_json(name)
        except (FileNotFoundError, DamagedFile):
            return None
        return body if isinstance(body, dict) else None

    @property
    def info(self) -> dict:
        """run.json; keys whose value has the wrong type are left out (see `damage`)."""
        body = self._object("run.json") or {}
        return {k: v for k, v in body.items() if k not in _INFO_TYPES or _typed(v, _INFO_TYPES[k])}

    @property
    def spec(self) -> dict:
        """spec.yaml as a mapping; {} when it is missing or damaged (see `damage`)."""
        try:
            body = self._spec()
        except (FileNotFoundError, DamagedFile):
            return {}
        return body if all(_typed(body.get(k), kind) for k, kind in _SPEC_TYPES.items()) else {}

    def _spec(self) -> dict:
        try:
            text = self._read("spec.yaml").decode("utf-8")
        except FileNotFoundError:
            raise
        except UnicodeDecodeError:
            raise DamagedFile("spec.yaml: cannot be read as UTF-8 text") from None
        try:
            body = safeyaml.load(text)
        except (SpecError, ValueError) as exc:
            raise DamagedFile(f"spec.yaml: {exc}") from None
        except Exception:  # noqa: BLE001 - yaml.YAMLError and friends: any parse failure is damage
            raise DamagedFile("spec.yaml: not valid YAML") from None
        if not isinstance(body, dict) or not body:
            raise DamagedFile("spec.yaml: empty or not a mapping of spec keys")
        return body

    @property
    def summary(self) -> dict:
        return self._object("summary.json") or {}

    @property
    def status(self) -> str:
        if self.damage():
            return "damaged"
        status = self.info["status"]
        if status == "running" and not self.is_locked():
            return "stale"  # the process that wrote it is gone
        return status

    def metrics(self) -> list[dict]:
        """The per-epoch rows; a partial last line (a crash mid-append) is left out."""
        return self._metrics()[0]

    def _metrics(self) -> tuple[list[dict], str | None]:
        try:
            text = self._read("metrics.jsonl").decode("utf-8", errors="replace")
        except FileNotFoundError:
            return [], None
        except DamagedFile as exc:
            return [], str(exc)
        lines = text.split("\n")
        lines.pop()  # the text after the last newline: empty, or a line cut short by a crash
        rows, problem = [], None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, RecursionError):
                row = None
            if not isinstance(row, dict) or type(row.get("epoch")) is not int:
                problem = problem or f"metrics.jsonl: line {number} is not an epoch record"
                continue
            rows.append(row)
        return rows, problem

    def evals(self) -> dict[str, dict]:
        """Stored evaluations (eval/<name>.json), by name; damaged ones left out."""
        return self._evals()[0]

    def _evals(self) -> tuple[dict[str, dict], str | None]:
        folder = self.path / "eval"
        if folder.is_symlink():
            return {}, "eval: is a symbolic link; masklab reads only the folders it wrote"
        if not folder.is_dir():
            return {}, None
        out, problem = {}, None
        for p in sorted(folder.glob("*.json")):
            where = f"eval/{p.name}"
            try:
                body = self._load_json(where)
            except (FileNotFoundError, DamagedFile) as exc:
                problem = problem or (str(exc) if isinstance(exc, DamagedFile) else f"{where}: vanished")
                continue
            metrics = body.get("metrics") if isinstance(body, dict) else None
            if not isinstance(metrics, dict) or not all(
                v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in metrics.values()
            ):
                problem = problem or f"{where}: not an evaluation record (no metrics mapping of numbers)"
                continue
            out[p.stem] = body
        return out, problem

    def damage(self) -> str | None:
        """What makes this folder unreadable as a run, naming the file; None when sound."""
        if self.path.is_symlink():
            return "the run folder is a symbolic link; masklab keeps only real folders in the runs dir"
        try:
            info = self._load_json("run.json")
        except FileNotFoundError:
            return "run.json: missing"
        except DamagedFile as exc:
            return str(exc)
        if not isinstance(info, dict):
            return f"run.json: holds {_kind(info)}, not an object"
        if info.get("status") not in WRITTEN_STATUSES:
            return f"run.json: status {info.get('status')!r} is not one of {', '.join(WRITTEN_STATUSES)}"
        missing = [k for k in ("name", "seed") if k not in info]
        if missing:
            return f"run.json: no {missing[0]}"
        for key, kind in _INFO_TYPES.items():
            if key in info and not _typed(info[key], kind):
                return f"run.json: {key} holds {_kind(info[key])}, expected {_kind(kind())}"
        try:
            spec = self._spec()
        except FileNotFoundError:
            return "spec.yaml: missing"
        except DamagedFile as exc:
            return str(exc)
        for key, kind in _SPEC_TYPES.items():
            if key not in spec and key in _SPEC_REQUIRED:
                return f"spec.yaml: no {key} (a run's spec has every key resolved)"
            if key in spec and not _typed(spec[key], kind):
                return f"spec.yaml: {key} holds {_kind(spec[key])}, expected {_kind(kind())}"
        try:
            summary = self._load_json("summary.json")
            if not isinstance(summary, dict):
                return f"summary.json: holds {_kind(summary)}, not an object"
        except FileNotFoundError:
            if info["status"] == "done":
                return "summary.json: missing from a finished run"
        except DamagedFile as exc:
            return str(exc)
        return self._metrics()[1] or self._evals()[1]

    # --- writing ------------------------------------------------------------------------

    def update_info(self, drop: tuple[str, ...] = (), **fields: Any) -> None:
        """Merge `fields` into run.json (and remove the keys in `drop`). A run.json that
        cannot be read as an object is never rewritten: DamagedFile names it."""
        self._writable_info()
        body = {k: v for k, v in {**self.info, **fields}.items() if k not in drop}
        write_json(self.path / "run.json", body)

    def _writable_info(self) -> None:
        try:
            body = self._load_json("run.json")
        except FileNotFoundError:
            return  # a run being created writes its first run.json
        if not isinstance(body, dict):
            raise DamagedFile(f"run.json: holds {_kind(body)}, not an object")

    def record_status(self, **fields: Any) -> bool:
        """Best effort for an ending run: update run.json atomically, and on a full disk
        overwrite it in place. False when neither worked."""
        try:
            self.update_info(**fields)
            return True
        except StoreWriteError:
            pass
        except DamagedFile:  # not ours to rewrite: it says what it says
            return False
        try:
            compact = json_text({**self.info, **fields}, indent=None) + "\n"  # smaller than the indented file
            files.rewrite_in_place(self.path, "run.json", compact.encode())
            return True
        except StoreWriteError:
            return False

    def append_metrics(self, row: dict) -> None:
        files.append_line(self.path, "metrics.jsonl", json_text(row, indent=None) + "\n")

    def truncate_metrics(self, epochs: int) -> None:
        """Keep the first `epochs` rows (a resume drops an unfinished epoch's line and a
        line cut short by a crash)."""
        rows = [r for r in self.metrics() if r["epoch"] <= epochs]
        write_atomic(self.path / "metrics.jsonl", "".join(json_text(r, indent=None) + "\n" for r in rows))

    def write_summary(self, summary: dict) -> None:
        write_json(self.path / "summary.json", summary)

    def write_eval(self, name: str, body: dict) -> None:
        files.write_file(self.path, f"{name}.json", (json_text(body) + "\n").encode(), subfolder="eval")

    def write_bytes(self, name: str, data: bytes) -> None:
        """A binary file of the run (model.pt, checkpoint.pt), replaced atomically."""
        files.write_file(self.path, name, data)

    # --- locking ------------------------------------------------------------------------

    def is_locked(self) -> bool:
        """True while a process holds the lock (a momentary shared probe, never a create)."""
        try:
            fd = os.open(self.path / ".lock", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    def lock(self) -> RunLock:
        """Hold the run's exclusive lock (`with run.lock():`); RunBusy at once if another has it."""
        return acquire(self.path, self.id, self.info.get("pid"))


def _typed(value: Any, kind: type) -> bool:
    """None, or an instance of `kind` (a bool is not an int here)."""
    return value is None or (isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool))


def _kind(value: Any) -> str:
    names = {list: "a list", str: "a string", dict: "an object", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)
