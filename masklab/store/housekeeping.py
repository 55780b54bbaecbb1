"""Cleaning up and annotating the run store: rm, prune, tags and notes.

These only delete or annotate; run ids and folders stay as they are. They touch run
folders of this store only (`RunStore.own`: real folders directly inside the runs
folder, named `<name>-<hash>-s<seed>`), never anything through a symbolic link: a link
planted in the runs folder is reported, and removed (the link alone, never what it
points to) only when asked by name (`masklab rm --unlink NAME`). A run whose lock
another process holds (it is being trained) is never touched: `rm` refuses the whole
request, `prune` passes it by. A run is deleted by renaming it aside under its lock, then
removing the renamed folder, so it vanishes at once or not at all; a tag is one atomic
rewrite of run.json, under the run's lock, and never of a run.json that cannot be read.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from masklab.errors import RunError, UsageError
from masklab.store.runs import Run, RunStore

DEAD = ("failed", "interrupted", "stale")  # runs prune may remove
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 86400, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass
class Action:
    run: Run
    what: str  # "remove run", "remove checkpoint.pt" or "remove link"
    bytes: int
    status: str = ""  # the run's status when the action was planned: what a report of a removal shows


def parse_age(text: str) -> float:
    """`30m`, `12h`, `7d`, `2w`, `90s`, `0` -> seconds (a bare number is days)."""
    m = _AGE.match(text)
    if not m:
        raise UsageError(f"--older-than {text}: expected a number and a unit, e.g. 30m, 12h, 7d or 2w")
    return float(m.group(1)) * _UNITS[m.group(2)]


def size_of(path: Path) -> int:
    """Bytes of the regular files in a folder (links inside are not followed)."""
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for base, _, names in os.walk(path):
        for name in names:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(base, name))
                total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return total


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


def removal_plan(store: RunStore, runs: list[Run]) -> list[Action]:
    """Remove these runs; RunError (nothing removed) if one is not a run folder of the store."""
    for run in runs:
        store.own(run)
    return [Action(r, "remove run", size_of(r.path), r.status) for r in runs]


def unlink_plan(store: RunStore, refs: list[str]) -> list[Action]:
    """Links planted in the runs folder, named by their name there (or a path to them
    there): each is removed itself, never what it points to."""
    actions = []
    for ref in refs:
        name = store.link_name(ref)
        path = store.root / name
        if not path.is_symlink():
            raise RunError(
                f"{ref}: {path} is not a symbolic link; --unlink removes only links (drop it to remove runs)"
            )
        actions.append(Action(Run(path), "remove link", 0, f"link to {os.readlink(path)}"))
    return actions


def planted_links(store: RunStore) -> list[Path]:
    """Symbolic links in the runs folder (not runs: masklab never follows them)."""
    try:
        return sorted(p for p in store.root.iterdir() if p.is_symlink() and not p.name.startswith("."))
    except OSError:
        return []


def prune_plan(store: RunStore, older_than: float, keep_checkpoints: bool, now: float) -> list[Action]:
    """Dead runs (failed, interrupted, stale) idle for longer than `older_than` seconds,
    and the checkpoint.pt of finished runs (unless kept). Runs in use are left alone."""
    actions = []
    for run in store.all():
        if not _is_own(store, run) or run.is_locked():
            continue
        status = run.status
        if status in DEAD and now - last_activity(run) > older_than:
            actions.append(Action(run, "remove run", size_of(run.path), status))
        elif status == "done" and not keep_checkpoints and _regular(run.path / "checkpoint.pt"):
            actions.append(Action(run, "remove checkpoint.pt", size_of(run.path / "checkpoint.pt"), status))
    return actions


def _is_own(store: RunStore, run: Run) -> bool:
    try:
        store.own(run)
    except RunError:
        return False
    return True


def _regular(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def apply(store: RunStore, action: Action) -> None:
    if action.what == "remove run":
        store.discard(action.run)
        return
    if action.what == "remove link":
        os.unlink(action.run.path)  # the link itself; a folder put in its place meanwhile fails, untouched
        return
    with action.run.lock():  # a run picked up meanwhile (--force) is not ours to change
        (action.run.path / "checkpoint.pt").unlink(missing_ok=True)


def refuse_damaged(runs: list[Run], verb: str) -> None:
    """RunError naming the first damaged run: masklab never rewrites a file it cannot read."""
    for run in runs:
        damage = run.damage()
        if damage:
            raise RunError(
                f"run {run.id} is damaged ({damage}); nothing {verb}: masklab never rewrites a file it cannot "
                "read. Restore the file, or remove the run"
            )


def annotate(run: Run, tags: dict[str, str], remove: list[str], note: str | None) -> None:
    """Set and remove tags, set (or with "" clear) the note: one atomic run.json rewrite under the lock."""
    with run.lock():
        refuse_damaged([run], "tagged")  # again under the lock: it may have changed meanwhile
        current = {k: v for k, v in (run.info.get("tags") or {}).items() if k not in remove}
        fields: dict = {"tags": {**current, **tags}}
        if note is not None:
            fields["note"] = note or None
        run.update_info(**fields)
