"""A run's life: claim its folder, train into it, record how it ended (one run, or the
seeds of a group trained together: the same path).

The claim is a new folder (created locked), a run to resume (locked), or a staged
replacement (trained aside while the old run's lock is held, committed over it only
when complete). Signals follow `masklab.signals`: while training steps run, the first
SIGINT/SIGTERM stops after the step; anywhere else a signal stops at once, but never in
the middle of claiming a folder, writing a status or committing a replacement.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from masklab import signals, spec as spec_mod
from masklab.errors import Interrupted, MasklabError, Pruned, RunError, SeedFailed, UsageError
from masklab.spec import Spec
from masklab.store import files
from masklab.store.files import DamagedFile, StoreWriteError
from masklab.store.runs import Run, RunLock, RunStore, now, run_id
from masklab.study import model_memory, pins


class StopFlag:
    """SIGINT/SIGTERM while training steps run (`graceful()`): stop after the current
    step, checkpointed. Anywhere else, or a second signal: stop at once."""

    def __init__(self) -> None:
        self.requested = False
        self.soft = False
        self._scope = signals.handled_by(self._handle)

    def _handle(self, signum: int) -> None:
        if self.requested or not self.soft:
            raise KeyboardInterrupt
        self.requested = True
        with contextlib.suppress(OSError):  # os.write: safe even while stderr is mid-print
            os.write(2, b"\nstopping after this step (interrupt again to stop at once)...\n")

    @contextlib.contextmanager
    def graceful(self):
        self.soft = True
        try:
            yield
        finally:
            self.soft = False

    def __enter__(self) -> StopFlag:
        self._scope.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._scope.__exit__(*exc)


def changed_keys(store: RunStore, spec: Spec, seed: int) -> tuple[Run, list[str]] | None:
    """An unfinished run of the same name and seed whose spec differs, and the keys that differ."""
    for run in reversed(store.all()):
        info = run.info
        if info.get("name") == spec.name and info.get("seed") == seed and run.status not in ("done", "damaged"):
            return run, spec_mod.diff_keys(run.spec, spec.to_dict() | {"seeds": run.spec.get("seeds")})
    return None


@dataclass
class Claim:
    """The folder a training writes, held locked: a new run, a run to resume, or a staged
    replacement for `old` (committed over it only once complete)."""

    run: Run
    mode: str  # "reuse" | "new" | "resume" | "replace"
    lock: RunLock | None = None
    old: Run | None = None
    old_lock: RunLock | None = None
    finished: bool = False  # the outcome is recorded: nothing may change the run any more
    previous: dict = field(default_factory=dict)  # run.json before this process touched it (resume)

    def release(self) -> None:
        for lock in (self.lock, self.old_lock):
            if lock is not None:
                lock.release()


def find_or_create(
    store: RunStore, spec: Spec, seed: int, info: Callable[[], dict], force: bool, resume: bool
) -> Claim:
    """The existing finished run (reused), a run to resume, or a new one, locked. A run
    that exists and is started over (--force, or --resume without a checkpoint) is
    replaced only when its replacement is complete."""
    rid = run_id(spec.name, spec.group_hash(), seed)
    existing = store.get(rid)
    if existing is None:
        if resume:
            other = changed_keys(store, spec, seed)
            if other:
                run, keys = other
                raise UsageError(
                    f"cannot resume: the spec changed since run {run.id} ({', '.join(keys[:6])}); drop --resume to start a new run"
                )
        run, lock = store.create(rid, _spec_yaml(spec, seed), info())
        return Claim(run, "new", lock)
    if existing.path.is_symlink():
        raise RunError(
            f"{existing.path} is a symbolic link, not a run folder; `masklab rm --unlink {existing.path.name}` removes it"
        )
    if existing.status == "done" and not force:
        pins.refuse_changed(existing, info())  # reused only on the inputs it was trained on
        return Claim(existing, "reuse")
    old_lock = existing.lock()  # RunBusy while another process trains or replaces it
    try:
        status = existing.status
        status = "stale" if status == "running" else status  # running, yet the lock was free
        if not force:
            if status == "done":
                old_lock.release()
                pins.refuse_changed(existing, info())
                return Claim(existing, "reuse")
            if status == "damaged":
                raise RunError(f"run {rid} is damaged ({existing.damage()}); pass --force to train it again")
            if not resume:
                raise RunError(
                    f"run {rid} exists with status {status}; pass --resume to continue it or --force to start over"
                )
            pins.refuse_changed(existing, info())  # continued only on the inputs it started with
            if (existing.path / "checkpoint.pt").is_file():
                return Claim(existing, "resume", old_lock, previous=existing.info)
        run, lock = store.stage(rid, _spec_yaml(spec, seed), info())
        return Claim(run, "replace", lock, old=existing, old_lock=old_lock)
    except BaseException:
        old_lock.release()
        raise


def _spec_yaml(spec: Spec, seed: int) -> str:
    return spec_mod.dump_yaml(dataclasses.replace(spec, seeds=[seed]))


def _start(claims: list[Claim], device, **extra) -> None:
    """Mark claimed runs running in this process (a resumed run drops its old ending)."""
    for claim in claims:
        claim.run.update_info(
            drop=("error", "finished", "duration_s"),
            status="running",
            pid=os.getpid(),
            started=now(),
            device=str(device),
            **extra,
        )


def _finish(store: RunStore, claims: list[Claim], began: float) -> list[Run]:
    """Mark trained runs done and commit the staged replacements, signals held; each
    run's duration is its share of the time since `began`."""
    runs = []
    with signals.deferred():
        duration = round((time.perf_counter() - began) / len(claims), 3)
        for claim in claims:
            claim.run.update_info(status="done", finished=now(), duration_s=duration)
            committed = claim.mode == "replace"
            runs.append(store.commit(claim.run.path, claim.run.id, replace=claim.old) if committed else claim.run)
            claim.finished = True
    return runs


def claim_all(store: RunStore, spec: Spec, seeds: list[int], info: Callable[[int], dict], force: bool, resume: bool):
    """Claims for several seeds of one spec (a batched seed group), all or none: if one
    cannot be claimed (held by another process, damaged, a spec change), the claims
    made so far are given up and their new folders removed."""
    claims: list[Claim] = []
    try:
        with signals.deferred():
            for seed in seeds:
                claims.append(find_or_create(store, spec, seed, functools.partial(info, seed), force, resume))
    except BaseException:
        give_up(store, claims)
        raise
    return claims


def give_up(store: RunStore, claims: list[Claim]) -> None:
    """Release claims whose runs never started here: a new folder is removed, a staged
    replacement dropped (the old run untouched), a run to resume left as it was."""
    with signals.deferred():
        for claim in claims:
            if not claim.finished and claim.mode in ("new", "replace"):
                with contextlib.suppress(RunError, OSError):
                    if claim.mode == "new":
                        store.discard(claim.run, held=claim.lock)
                    else:
                        files.remove_tree(claim.run.path)
            claim.finished = True
            claim.release()


def run_group(
    store: RunStore,
    spec: Spec,
    claims: list[Claim],
    device,
    train: Callable[[list[Run], StopFlag], list[dict]],
    **extra,
) -> tuple[list[Run], list[dict]]:
    """`train(runs, stop)` for claimed runs trained together (one run, or a seed group
    as one batched model) and record how each ended: done (committed), failed (with the
    error), interrupted (resumable), or, for a replacement, as it was before. When one
    seed of a group fails (`SeedFailed`), the others are interrupted, resumable.
    Returns (runs, summaries); `extra` is recorded in each run.json (a group's seeds)."""
    with StopFlag() as stop:
        try:
            began = time.perf_counter()
            _start(claims, device, **extra)
            summaries = train([c.run for c in claims], stop)
            runs = _finish(store, claims, began)
            if stop.requested:
                ids = ", ".join(r.id for r in runs)
                after = (
                    f"run {ids} finished; the next runs were not started" if len(runs) == 1 else f"runs {ids} finished"
                )
                raise Interrupted(f"interrupted after {after}")
            return runs, summaries
        except BaseException as exc:
            if all(c.finished for c in claims):
                if isinstance(exc, KeyboardInterrupt):
                    raise Interrupted("interrupted; every finished run is kept") from None
                raise
            with signals.deferred():
                ended = [
                    _ended(store, claim, _for_claim(exc, claim), spec, device) for claim in claims if not claim.finished
                ]
                for claim in claims:
                    claim.finished = True
            raise _group_error(exc, claims, ended, spec, device) from None
        finally:
            for claim in claims:
                claim.release()


def _for_claim(exc: BaseException, claim: Claim) -> BaseException:
    """What ended this claim: the error, or, beside a seed that failed, an interruption."""
    if isinstance(exc, SeedFailed) and claim.run.info.get("seed") != exc.seed:
        return Interrupted(f"stopped: seed {exc.seed} of its batch failed ({exc}); --resume continues this run")
    return exc


def _group_error(
    exc: BaseException, claims: list[Claim], ended: list[BaseException], spec: Spec, device
) -> BaseException:
    """The one error to raise for a group that did not finish (a single run's own)."""
    if len(claims) == 1:
        return ended[0]
    if isinstance(exc, (Interrupted, KeyboardInterrupt)):
        ids = ", ".join(c.run.id for c in claims)
        return Interrupted(
            f"runs {ids} interrupted after {claims[0].run.info.get('epochs_done', 0)} epoch(s); "
            "`masklab train SPEC --resume` continues them"
        )
    if isinstance(exc, SeedFailed):
        return SeedFailed(f"seed {exc.seed}: {exc}", exc.seed)
    if model_memory.is_out_of_memory(exc):
        return model_memory.out_of_memory(spec, device, f"while training seeds batched ({len(claims)} at once)")
    return exc


def _ended(store: RunStore, claim: Claim, exc: BaseException, spec: Spec, device) -> BaseException:
    """Record how an unfinished claim ended; returns the exception to raise."""
    run = claim.run
    if claim.mode == "replace":
        files.remove_tree(run.path)  # the run being replaced was never touched
        kept = f"run {run.id} is unchanged ({claim.old.info.get('status', 'damaged')})"
        if isinstance(exc, (Interrupted, KeyboardInterrupt)):
            return Interrupted(f"interrupted before the new run was complete; {kept}")
        if model_memory.is_out_of_memory(exc):
            return model_memory.out_of_memory(spec, device, f"while training run {run.id}; {kept}")
        return type(exc)(f"{exc}; {kept}") if isinstance(exc, MasklabError) else exc
    if isinstance(exc, Pruned):  # a search's pruner stopped it: resumable, never reused as finished
        run.record_status(status="pruned", finished=now(), error=str(exc))
        return exc
    if isinstance(exc, (Interrupted, KeyboardInterrupt)):
        done = run.info.get("epochs_done", 0)
        run.record_status(status="interrupted", finished=now(), error=str(exc) or "interrupted")
        return Interrupted(
            f"run {run.id} interrupted after {done} epoch(s); `masklab train SPEC --resume` continues it"
        )
    if isinstance(exc, DamagedFile) and claim.mode == "resume":
        run.record_status(**claim.previous)
        return exc  # a file of the run is unreadable: its status tells what it was
    oom = model_memory.is_out_of_memory(exc)
    if oom and claim.mode == "new" and not run.info.get("epochs_done"):
        with contextlib.suppress(StoreWriteError):  # it never started: no folder (or, failing that, a failed one)
            store.discard(run, held=claim.lock)
            return model_memory.out_of_memory(spec, device, f"while starting run {run.id}")
    if oom:
        exc = model_memory.out_of_memory(spec, device, f"while training run {run.id}")
    error = str(exc) if isinstance(exc, MasklabError) else f"{type(exc).__name__}: {exc}"
    run.record_status(status="failed", finished=now(), error=error)
    return exc
