"""Where a run is written: the run store.

    runs/<name>-<spec hash>-s<seed>/
      spec.yaml  run.json  metrics.jsonl  summary.json  model.pt  checkpoint.pt  eval/

A run id is derived from the resolved spec and the seed, so the same experiment finds
its finished run instead of duplicating it. A folder is created atomically (written
under a temporary name, then renamed) and held by an exclusive lock while a process
trains in it, so two processes never write the same run. Every file is replaced
atomically (write, then rename): a crash never leaves half a JSON file.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from masklab.errors import RunError

STATUSES = ("running", "done", "failed", "interrupted", "stale")


def runs_root(runs_dir: str | Path | None = None) -> Path:
    """--runs-dir, else $MASKLAB_RUNS, else ./runs."""
    return Path(runs_dir or os.environ.get("MASKLAB_RUNS") or "runs")


def run_id(name: str, group_hash: str, seed: int) -> str:
    return f"{name}-{group_hash}-s{seed}"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def readable(path: str | Path) -> None:
    """Give a temporary file (mkstemp makes them 0600) the usual permissions."""
    os.chmod(path, 0o666 & ~_umask())


def write_atomic(path: Path, text: str | bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    readable(tmp)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(text.encode() if isinstance(text, str) else text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, body: Any) -> None:
    write_atomic(path, json.dumps(body, indent=2, sort_keys=False) + "\n")


def now() -> str:
    """Local time with milliseconds, so runs made in the same second still sort in order."""
    return datetime.datetime.now().astimezone().isoformat(timespec="milliseconds")


@dataclass
class Run:
    """One run folder. Reads are lazy and tolerant; writes are atomic."""

    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def info(self) -> dict:
        return self._json("run.json") or {}

    @property
    def spec(self) -> dict:
        try:
            return yaml.safe_load((self.path / "spec.yaml").read_text()) or {}
        except (OSError, yaml.YAMLError):
            return {}

    @property
    def summary(self) -> dict:
        return self._json("summary.json") or {}

    @property
    def status(self) -> str:
        status = self.info.get("status", "failed")
        if status == "running" and not self.is_locked():
            return "stale"  # the process that wrote it is gone
        return status

    def metrics(self) -> list[dict]:
        try:
            lines = (self.path / "metrics.jsonl").read_text().splitlines()
        except OSError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def evals(self) -> dict[str, dict]:
        """Stored evaluations (eval/<name>.json), by name."""
        folder = self.path / "eval"
        if not folder.is_dir():
            return {}
        return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}

    def _json(self, name: str) -> dict | None:
        try:
            return json.loads((self.path / name).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def update_info(self, **fields: Any) -> None:
        write_json(self.path / "run.json", {**self.info, **fields})

    def append_metrics(self, row: dict) -> None:
        with open(self.path / "metrics.jsonl", "a") as out:
            out.write(json.dumps(row) + "\n")
            out.flush()
            os.fsync(out.fileno())

    def truncate_metrics(self, epochs: int) -> None:
        """Keep the first `epochs` lines (a resume discards an unfinished epoch's line)."""
        rows = [r for r in self.metrics() if r["epoch"] <= epochs]
        write_atomic(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))

    def write_summary(self, summary: dict) -> None:
        write_json(self.path / "summary.json", summary)

    def write_eval(self, name: str, body: dict) -> None:
        (self.path / "eval").mkdir(exist_ok=True)
        write_json(self.path / "eval" / f"{name}.json", body)

    def is_locked(self) -> bool:
        try:
            with open(self.path / ".lock", "a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fh, fcntl.LOCK_UN)
            return False
        except BlockingIOError:
            return True
        except OSError:
            return False

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run's exclusive lock; a second process gets a RunError at once."""
        fh = open(self.path / ".lock", "a")  # noqa: SIM115 - held for the block
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunError(
                    f"run {self.id} is being written by another process (pid {self.info.get('pid')}); wait for it or pick another run"
                ) from None
            yield
        finally:
            fh.close()


class RunStore:
    """All runs under one root folder."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = runs_root(root)

    def get(self, rid: str) -> Run | None:
        path = self.root / rid
        return Run(path) if (path / "run.json").is_file() else None

    def all(self) -> list[Run]:
        if not self.root.is_dir():
            return []
        runs = [Run(p) for p in self.root.iterdir() if not p.name.startswith(".") and (p / "run.json").is_file()]
        return sorted(runs, key=lambda r: (r.info.get("created", ""), r.id))

    def create(self, rid: str, spec_yaml: str, info: dict) -> Run:
        """Create a run folder atomically: it appears complete (spec.yaml, run.json) or not at all."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{rid}-", dir=self.root))
        try:
            (tmp / "spec.yaml").write_text(spec_yaml)
            write_json(tmp / "run.json", info)
            try:
                os.rename(tmp, self.root / rid)
            except OSError:
                raise RunError(
                    f"run {rid} already exists; pass --force to train it again or --resume to continue it"
                ) from None
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return Run(self.root / rid)

    def discard(self, run: Run) -> None:
        """Remove a run folder (for --force, rm, prune): renamed aside under the run's lock,
        so it vanishes at once and never while another process holds it."""
        if run.is_locked():
            raise RunError(
                f"run {run.id} is being trained by another process (pid {run.info.get('pid')}); it cannot be removed now"
            )
        aside = self.root / f".trash-{run.id}-{os.getpid()}-{time.monotonic_ns()}"
        with run.lock():
            os.rename(run.path, aside)
        shutil.rmtree(aside, ignore_errors=True)

    def resolve(self, ref: str) -> Run:
        """A run named by id, unique id prefix, path to its folder, or `<name>-s<seed>`."""
        path = Path(ref)
        if (path / "run.json").is_file():
            return Run(path)
        exact = self.get(ref)
        if exact:
            return exact
        matches = [r for r in self.all() if r.id.startswith(ref)] or self._by_name_and_seed(ref)
        if len(matches) == 1:
            return matches[0]
        if matches:
            shown = ", ".join(r.id for r in matches[:5]) + (", ..." if len(matches) > 5 else "")
            raise RunError(f"{ref}: matches {len(matches)} runs ({shown}); give more of the id")
        raise RunError(f"{ref}: no such run in {self.root}; `masklab runs` lists them (or pass --runs-dir)")

    def _by_name_and_seed(self, ref: str) -> list[Run]:
        """`<name>-s<seed>` (an id without its spec hash): the runs of that name and seed."""
        name, sep, seed = ref.rpartition("-s")
        if not sep or not seed.isdigit():
            return []
        return [r for r in self.all() if r.info.get("name") == name and r.info.get("seed") == int(seed)]

    def resolve_many(self, ref: str) -> list[Run]:
        """A study (a spec file with variants), spec name or group (name-hash) names all
        its runs; anything else names one run."""
        by_name = [r for r in self.all() if ref in (r.info.get("name"), r.info.get("group"), r.info.get("study"))]
        if any(r.info.get("study") == ref for r in by_name):  # a study: its variants in the file's order
            by_name.sort(key=lambda r: r.info.get("variant") or 0)
        return by_name or [self.resolve(ref)]
