"""Cleaning up and annotating the run store: rm, prune, tags and notes.

These only delete or annotate; run ids and folders stay as they are. A run whose lock
another process holds (it is being trained) is never touched: `rm` refuses the whole
request, `prune` passes it by. A run is deleted by renaming it aside under its lock, then
removing the renamed folder, so it vanishes at once or not at all; a tag is one atomic
rewrite of run.json, under the run's lock.
"""

from __future__ import annotations

import contextlib
import datetime
import re
from dataclasses import dataclass
from pathlib import Path

from masklab.errors import RunError, UsageError
from masklab.store.runs import Run, RunStore

DEAD = ("failed", "interrupted", "stale")  # runs prune may remove
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 86400, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
TAG_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass
class Action:
    run: Run
    what: str  # "remove run" or "remove checkpoint.pt"
    bytes: int


def parse_age(text: str) -> float:
    """`30m`, `12h`, `7d`, `2w`, `90s`, `0` -> seconds (a bare number is days)."""
    m = _AGE.match(text)
    if not m:
        raise UsageError(f"--older-than {text}: expected a number and a unit, e.g. 30m, 12h, 7d or 2w")
    return float(m.group(1)) * _UNITS[m.group(2)]


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def last_activity(run: Run) -> float:
    """Seconds since the epoch of the run's last recorded event (finished, started or
    created), else run.json's modification time."""
    info = run.info
    for key in ("finished", "started", "created"):
        with contextlib.suppress(TypeError, ValueError):  # a damaged time: the next one, or the file's
            return datetime.datetime.fromisoformat(info.get(key)).timestamp()
    return (run.path / "run.json").stat().st_mtime


def refuse_locked(runs: list[Run], verb: str) -> None:
    held = [r for r in runs if r.is_locked()]
    if held:
        shown = ", ".join(f"{r.id} (pid {r.info.get('pid')})" for r in held[:5])
        raise RunError(
            f"{len(held)} run(s) are being trained by another process: {shown}; nothing {verb}. Wait for them, or name the other runs"
        )


def removal_plan(runs: list[Run]) -> list[Action]:
    return [Action(r, "remove run", size_of(r.path)) for r in runs]


def prune_plan(store: RunStore, older_than: float, keep_checkpoints: bool, now: float) -> list[Action]:
    """Dead runs (failed, interrupted, stale) idle for longer than `older_than` seconds,
    and the checkpoint.pt of finished runs (unless kept). Runs in use are left alone."""
    actions = []
    for run in store.all():
        if run.is_locked():
            continue
        status = run.status
        if status in DEAD and now - last_activity(run) > older_than:
            actions.append(Action(run, "remove run", size_of(run.path)))
        elif status == "done" and not keep_checkpoints and (run.path / "checkpoint.pt").is_file():
            actions.append(Action(run, "remove checkpoint.pt", size_of(run.path / "checkpoint.pt")))
    return actions


def apply(store: RunStore, action: Action) -> None:
    if action.what == "remove run":
        store.discard(action.run)
        return
    with action.run.lock():  # a run picked up meanwhile (--force) is not ours to change
        (action.run.path / "checkpoint.pt").unlink(missing_ok=True)


def parse_tags(texts: list[str]) -> dict[str, str]:
    tags = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not TAG_KEY.match(key):
            raise UsageError(
                f"{text}: expected KEY=VALUE with a key of letters, digits, '.', '_' or '-', e.g. method=static"
            )
        tags[key] = value
    return tags


def annotate(run: Run, tags: dict[str, str], remove: list[str], note: str | None) -> None:
    """Set and remove tags, set (or with "" clear) the note: one atomic run.json rewrite under the lock."""
    with run.lock():
        current = {k: v for k, v in (run.info.get("tags") or {}).items() if k not in remove}
        fields: dict = {"tags": {**current, **tags}}
        if note is not None:
            fields["note"] = note or None
        run.update_info(**fields)
