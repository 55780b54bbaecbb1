"""Where a run is written: the run store, the only writer of the runs folder.

    runs/<name>-<spec hash>-s<seed>/
      spec.yaml  run.json  metrics.jsonl  summary.json  model.pt  checkpoint.pt  eval/  .lock

A run id is derived from the resolved spec and the seed, so the same experiment finds
its finished run instead of duplicating it. What the store promises:

- **Created locked.** A folder is assembled under a hidden temporary name, its lock is
  taken, and only then is it published by one rename: no process ever sees a run folder
  that nobody holds.
- **Committed whole.** A run trained elsewhere (a staged replacement for `--force`, or
  a worker's scratch folder) arrives by one atomic rename; replacing a run swaps the two
  folders atomically, so the old run stays until the new one is complete.
- **Written atomically, never through a link** (`store.files`): a crash never leaves half
  a JSON file, and a symlink planted in a run folder is replaced, not written through.
  metrics.jsonl is appended; a partial last line (a crash mid-append) is ignored.
- **Read tolerantly.** A folder whose files are not what they should be has the status
  `damaged` and `damage()` names the file; it never stops the others from being read.
- **Valid JSON.** NaN and infinities are written as null, their key paths listed under
  `non_finite`.

The commit API, for any executor (the in-process runner, `study.lifecycle`; a pool of
workers on other machines or disks):

    run, lock = store.create(rid, spec_yaml, info)   # a new run folder, published locked
    run, lock = store.stage(rid, spec_yaml, info)    # a hidden scratch folder in the store
    # ... train into run.path (or into a worker's own scratch folder, anywhere) ...
    store.commit(run.path, rid)                      # publish a finished folder: one rename
    store.commit(run.path, rid, replace=old)         # swap it for `old` (whose lock you hold)
    store.discard(run, held=lock)                    # or drop it

`commit` refuses a folder that is not finished (`status: done` in its run.json), is
damaged, or holds a symbolic link; a folder on another disk is copied in under a hidden
name first, so the publish is still one rename. Replacing uses `files.exchange`
(`renameat2(RENAME_EXCHANGE)` on Linux; elsewhere a move aside that is undone on
failure): readers see the old run or the new one, never neither. `sweep` removes the
hidden folders a killed process left, once they are unlocked and a minute old.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import tempfile
import time
from pathlib import Path

from masklab.errors import RunError
from masklab.files import umask
from masklab.store import files, names
from masklab.store.files import DamagedFile, StoreWriteError, readable  # noqa: F401 - re-exported
from masklab.store.folder import (  # noqa: F401 - re-exported: the store's public names
    STATUSES,
    Run,
    RunBusy,
    RunLock,
    acquire,
    finite_json,
    json_text,
    now,
    run_id,
    runs_root,
    write_atomic,
    write_json,
)
from masklab.store.names import Ambiguous, names_of  # noqa: F401 - re-exported

SWEEP_AFTER_S = 60.0  # a hidden temporary folder unlocked for this long belongs to a dead process


class RunStore:
    """All runs under one root folder."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = runs_root(root)

    def get(self, rid: str) -> Run | None:
        """The folder of a run id, sound or damaged; None when there is none."""
        path = self.root / rid
        return Run(path) if path.is_symlink() or path.is_dir() else None

    def all(self) -> list[Run]:
        """Every run folder, damaged ones included (hidden temporary folders are not runs)."""
        try:
            entries = [p for p in self.root.iterdir() if not p.name.startswith(".")]
        except OSError:
            return []
        runs = [Run(p) for p in entries if p.is_symlink() or p.is_dir()]
        return sorted(runs, key=lambda r: (str(r.info.get("created", "")), r.id))

    # --- creating -----------------------------------------------------------------------

    def _new_folder(self, kind: str, rid: str, spec_yaml: str, info: dict) -> tuple[Path, RunLock]:
        """A hidden folder in the store holding spec.yaml and run.json, locked from birth."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix=f".{kind}-{rid}-", dir=self.root))
        except OSError as err:
            raise files.write_error(self.root, err) from None
        try:
            os.chmod(folder, 0o777 & ~umask())
            lock = acquire(folder, rid)
            try:
                write_atomic(folder / "spec.yaml", spec_yaml)
                write_json(folder / "run.json", info)
            except StoreWriteError as exc:
                lock.release()
                reason = str(exc).split(": ", 1)[-1]
                raise StoreWriteError(f"cannot create run {rid} in {self.root}: {reason}") from None
            except BaseException:
                lock.release()
                raise
        except BaseException:
            files.remove_tree(folder)
            raise
        return folder, lock

    def create(self, rid: str, spec_yaml: str, info: dict) -> tuple[Run, RunLock]:
        """Create a run folder, complete (spec.yaml, run.json) and locked, or not at all."""
        self.sweep()
        folder, lock = self._new_folder("tmp", rid, spec_yaml, info)
        try:
            files.rename_noreplace(folder, self.root / rid)
        except BaseException as exc:
            lock.release()
            files.remove_tree(folder)
            if isinstance(exc, OSError) and exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                raise RunError(
                    f"run {rid} already exists; pass --force to train it again or --resume to continue it"
                ) from None
            if isinstance(exc, OSError):
                raise files.write_error(self.root / rid, exc) from None
            raise
        files.fsync_folder(self.root)
        return Run(self.root / rid), lock

    def stage(self, rid: str, spec_yaml: str, info: dict) -> tuple[Run, RunLock]:
        """A locked scratch folder in the store for a run that is not published yet (a
        replacement being trained); `commit` publishes it."""
        self.sweep()
        folder, lock = self._new_folder("stage", rid, spec_yaml, info)
        return Run(folder, rid), lock

    def commit(self, folder: str | Path, rid: str, replace: Run | None = None) -> Run:
        """Publish a finished run folder as runs/<rid> by one atomic rename.

        `folder` is a staged folder of this store or a scratch folder elsewhere (a
        worker's): on the same disk it is renamed in, from another disk copied into a
        hidden folder first. With `replace` (a run whose lock the caller holds), the two
        folders are swapped atomically and the old one removed: readers see the old run
        or the new one, never neither."""
        source = Path(folder)
        self._check_finished(source, rid)
        target = self.root / rid
        incoming, copied = source, False
        if source.parent.resolve() != self.root.resolve():
            incoming, copied = self._bring_in(source, rid)
        try:
            if replace is None or not os.path.lexists(target):
                files.rename_noreplace(incoming, target)
            else:
                files.exchange(incoming, target)
                files.remove_tree(incoming)  # now the old run
        except BaseException as exc:
            if incoming != source:  # give the caller its folder back (or drop our copy)
                with contextlib.suppress(OSError):
                    files.remove_tree(incoming) if copied else os.rename(incoming, source)
            if isinstance(exc, FileExistsError) or (isinstance(exc, OSError) and exc.errno == errno.ENOTEMPTY):
                raise RunError(f"run {rid} already exists; commit it with replace to swap it in") from None
            if isinstance(exc, OSError):
                raise files.write_error(target, exc) from None
            raise
        files.fsync_folder(self.root)
        return Run(target)

    def _check_finished(self, folder: Path, rid: str) -> None:
        run = Run(folder, rid)
        problem = run.damage()
        if problem:
            raise RunError(f"cannot commit {folder}: {problem}")
        if run.info.get("status") != "done":
            raise RunError(f"cannot commit {folder}: its status is {run.info.get('status')}, not done")
        for base, dirs, entries in os.walk(folder):
            links = [n for n in dirs + entries if os.path.islink(os.path.join(base, n))]
            if links:
                raise RunError(f"cannot commit {folder}: {links[0]} is a symbolic link; a run folder holds only files")

    def _bring_in(self, source: Path, rid: str) -> tuple[Path, bool]:
        """Move (same disk) or copy (another disk) a folder to a hidden name in the store;
        returns the new path and whether it is a copy."""
        import shutil

        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise files.write_error(self.root, err) from None
        inside = self.root / f".tmp-{rid}-{secrets.token_hex(4)}"
        try:
            os.rename(source, inside)
            return inside, False
        except OSError as err:
            if err.errno != errno.EXDEV:
                raise files.write_error(inside, err) from None
        try:
            shutil.copytree(source, inside, symlinks=True)
        except OSError as err:
            files.remove_tree(inside)
            raise files.write_error(inside, err) from None
        return inside, True

    def lock(self, run: Run) -> RunLock:
        return run.lock()

    def discard(self, run: Run, held: RunLock | None = None) -> None:
        """Remove a run folder: renamed aside first, so it vanishes at once. Takes the
        run's lock unless the caller holds it (`held`)."""
        lock = held or run.lock()
        try:
            aside = self.root / f".trash-{run.id}-{secrets.token_hex(4)}"
            try:
                os.rename(run.path, aside)
            except OSError as err:
                raise files.write_error(run.path, err) from None
            files.remove_tree(aside)
        finally:
            if held is None:
                lock.release()

    def sweep(self) -> None:
        """Remove hidden temporary folders (.tmp-, .stage-, .trash-, .swap-) left by a
        process that died: unlocked and untouched for a minute."""
        try:
            entries = [p for p in self.root.iterdir() if p.name.startswith((".tmp-", ".stage-", ".trash-", ".swap-"))]
        except OSError:
            return
        for path in entries:
            with contextlib.suppress(OSError):
                if path.is_symlink() or not path.is_dir():
                    continue
                if time.time() - path.stat().st_mtime < SWEEP_AFTER_S or Run(path).is_locked():
                    continue
                files.remove_tree(path)

    # --- naming (store.names: what a name stands for, one meaning or a refusal) ----------

    def lookup(self, ref: str) -> names.Found:
        """Every run `ref` could mean, and how it names them ([] when none)."""
        return names.lookup(self, ref)

    def resolve(self, ref: str) -> Run:
        """The one run named by id, `<name>-s<seed>`, unique id prefix, a name of one run or a path in the store."""
        return names.resolve(self, ref)

    def resolve_many(self, ref: str, study_only: bool = False) -> list[Run]:
        """The runs of a study, spec name or group, else the one run `ref` names; never
        several groups where one is meant (`names.Ambiguous`)."""
        return names.resolve_many(self, ref, study_only)

    def own(self, run: Run) -> Run:
        """`run`, if it is a run folder of this store: a real folder (not a link) directly
        inside it, named as masklab names runs. RunError naming what it is otherwise; a
        command that deletes or writes calls this first."""
        path = self.root / run.path.name
        if os.path.realpath(run.path.parent) != os.path.realpath(self.root) or run.path.name.startswith("."):
            raise RunError(f"{run.path}: not in the runs folder {self.root}; masklab touches only its own runs")
        if path.is_symlink():
            raise RunError(
                f"{path} is a symbolic link (to {os.readlink(path)}), not a run folder; masklab never acts "
                f"through a link in the runs folder: `masklab rm --unlink {path.name}` removes the link alone"
            )
        if not path.is_dir() or not names.RUN_ID.fullmatch(path.name):
            raise RunError(
                f"{path}: not a run folder (masklab names them <name>-<hash>-s<seed>); masklab leaves it alone"
            )
        return run

    def link_name(self, ref: str) -> str:
        """The name in the runs folder of an entry named by its name or a path to it there."""
        if not names.is_path(ref):
            return ref
        path = Path(ref)
        if os.path.realpath(path.parent) != os.path.realpath(self.root) or path.name.startswith("."):
            raise RunError(f"{ref}: not in the runs folder {self.root}; masklab touches only its own runs")
        return path.name
