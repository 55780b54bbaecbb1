"""`--executor ray`: one Ray task per run, on a local Ray instance or a cluster.

Ray tasks, not Ray Tune: masklab already plans the runs (grid, ids), owns the store and
resumes from it; Tune would bring a second naming scheme, a second results folder and a
second notion of a resumable experiment. Ray is the engine here: it places each task
where its resources (`num_cpus`, `num_gpus`, fractional) are free.

No shared file system is assumed. For each run the driver claims the run in its store
(a locked folder, as the in-process path would), and the task trains into a scratch
folder on whichever node runs it. After every epoch the task ships the run's small
files and its checkpoint to the driver through a Ray actor, and the driver writes them
into the claimed folder: **the last checkpoint lives with the driver**, in the store.
So when a worker or its node dies, the driver hands the run to a new task together with
that checkpoint and it resumes from the last finished epoch; and when the driver itself
dies, the folder is left stale with its checkpoint, and the next run of the study
resumes it like any interrupted run. The finished folder comes back as the task's
return value and the driver commits it to the store by one atomic rename
(`RunStore.commit`). Only the driver writes the store, so a run is never duplicated.

When Ray declares the driver's own node dead (it crashed, or stopped answering Ray's
health checks), or Ray's memory monitor stops the driver's event actor, the study cannot
go on: every unfinished run is marked interrupted at its last checkpoint and masklab
says so in one line (exit 1); the same command continues them. (When the local raylet
itself is killed, Ray ends the driver process at once, with no word; its runs are left
stale and the same command continues them too.) A local Ray instance that masklab
starts waits about ten minutes before it declares its only node dead: Ray's default,
about a minute, suits clusters that move a dead node's work elsewhere, and on a busy
machine it turned one slow minute into a failed study.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

from masklab import signals, threads as threads_mod
from masklab.errors import Interrupted, MasklabError, RunError, UsageError
from masklab.store import files
from masklab.store.runs import RunStore, now, write_atomic
from masklab.study.executors import Events, Executor, Result, WorkItem
from masklab.study.executors.folders import pack, unpack
from masklab.study.executors.local import RETRIES, check_runs
from masklab.study.executors.work import Forward, train_item
from masklab.study.plan import PlannedRun

INSTALL = "pip install 'masklab[ray]'"
SHIPPED_EACH_EPOCH = ("run.json", "metrics.jsonl", "checkpoint.pt")
# a local node is declared dead after 15 health checks of up to 30 s fail, 10 s apart
# (about 10 minutes; Ray's default is about one); RAY_<name> in the environment wins
LOCAL_HEALTH_CHECKS = {
    "health_check_period_ms": 10_000,
    "health_check_timeout_ms": 30_000,
    "health_check_failure_threshold": 15,
}


# the logger that announces, on every local start, that Ray's default token authentication is on
AUTH_BANNER = "ray._private.authentication.authentication_token_setup"


@contextlib.contextmanager
def _quiet(logger_name: str):
    """Warnings of one logger not shown while the block runs (stderr is masklab's talk)."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError(f"--executor ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


@dataclass
class _Claimed:
    item: WorkItem
    claim: object  # lifecycle.Claim: the locked folder the driver keeps the run's progress in
    init: Path | None = None


class RayTasks(Executor):
    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: float = 1.0, num_gpus: float = 0.0) -> None:
        import_ray()
        self.address, self.num_cpus, self.num_gpus = address, num_cpus, num_gpus
        self.datasets: dict = {}

    def check(self, runs: list[PlannedRun], store: RunStore, events: Events) -> None:
        check_runs(runs, store, self.datasets, events)

    def _connect(self):
        ray = import_ray()
        if not ray.is_initialized():
            options = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if self.address:
                ray.init(address=self.address, **options)
            else:
                health = {k: v for k, v in LOCAL_HEALTH_CHECKS.items() if f"RAY_{k}" not in os.environ}
                with _quiet(AUTH_BANNER):  # Ray's default token authentication stays; its banner goes
                    ray.init(num_cpus=threads_mod.usable_cores(), _system_config=health, **options)
        return ray

    def run(self, items: list[WorkItem], store: RunStore, events: Events) -> list[Result]:
        ray = self._connect()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # the event actor lives on the driver's node: another node's death never takes it
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        sink = ray.remote(num_cpus=0)(_Sink).options(scheduling_strategy=here).remote()
        task = ray.remote(train_remote).options(num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=0)
        threads = max(1, int(self.num_cpus))
        results: list[Result] = []
        flying: dict = {}  # ObjectRef -> _Claimed
        waiting = deque(items)

        def submit(entry: _Claimed) -> None:
            run = entry.claim.run
            progress = (run.path / "checkpoint.pt").is_file()  # resumed, or a retry after its worker died
            item = replace(entry.item, action="resume") if progress else replace(entry.item, action="train")
            folders = ([run.path] if progress else []) + ([entry.init] if entry.init else [])
            shipped = pack(folders, names=[run.id] if progress else None)  # a staged folder travels as its run
            flying[task.remote(item, entry.claim.run.id, shipped, sink, threads)] = entry

        try:
            while waiting:
                entry = self._claim(waiting.popleft(), store, results)
                if entry:
                    submit(entry)
            while flying:
                ready, _ = ray.wait(list(flying), num_returns=1, timeout=0.5)
                self._drain(ray, sink, flying, events)
                for ref in ready:
                    entry = flying.pop(ref)
                    try:
                        out = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:  # the task raised: a bug, reported as a failure
                        out = {"result": _failed(entry.item, f"{type(exc.cause).__name__}: {exc.cause}"), "folder": b""}
                    except ray.exceptions.RayError as exc:  # the worker or its node died
                        if entry.item.attempt > RETRIES:
                            out = {
                                "result": _failed(entry.item, f"its worker died {entry.item.attempt} times"),
                                "folder": b"",
                            }
                        else:
                            events.note(
                                f"{entry.item.id}: its worker died ({type(exc).__name__}); continuing it from its last checkpoint"
                            )
                            entry.item = entry.item.retried()
                            submit(entry)
                            continue
                    results.append(self._settle(entry, out, store))
                    events.finished(results[-1])
        except KeyboardInterrupt:
            self._drain(ray, sink, flying, events)
            for ref, entry in flying.items():
                ray.cancel(ref, force=True)
                _abandon(entry, "interrupted")
            raise Interrupted(
                f"interrupted with {sum(r.status == 'done' for r in results)} run(s) finished; run the same command again to continue"
            ) from None
        except ray.exceptions.RayError as exc:  # from the driver's side (wait, the event actor): its node is gone
            why = node_lost(ray, exc)
            for ref, entry in flying.items():
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
                _abandon(entry, "interrupted", why)
            raise RunError(
                f"{why}; {sum(r.status == 'done' for r in results)} run(s) finished, {len(flying)} left interrupted "
                "at their last checkpoints: run the same command again to continue them"
            ) from None
        finally:
            for entry in flying.values():
                entry.claim.release()
            with contextlib.suppress(Exception):
                ray.kill(sink)
        return results

    def _claim(self, item: WorkItem, store: RunStore, results: list[Result]) -> _Claimed | None:
        """Lock the run's folder in the store (a new one, the interrupted one, or a staged
        replacement), as the in-process path would before training."""
        from masklab.study import lifecycle, runner

        (ready,) = runner.prepare([item.spec], [item.seed], store, self.datasets)
        try:
            with signals.deferred():  # a signal waits until the claim is held
                claim = lifecycle.find_or_create(
                    store,
                    item.spec,
                    item.seed,
                    lambda: runner.run_info(item.spec, item.seed, ready.dataset, ready.device, ready.inits[item.seed]),
                    item.force,
                    item.resume,
                )
                if claim.mode == "resume":  # held by this driver now; its old ending no longer holds
                    claim.run.update_info(
                        drop=("error", "finished", "duration_s"), status="running", pid=os.getpid(), started=now()
                    )
        except MasklabError as exc:
            result = _failed(item, str(exc))
            result.status = "busy" if _held_elsewhere(store, item.id) else "failed"
            results.append(result)
            return None
        if claim.mode == "reuse":
            results.append(
                Result(item.id, "reused", claim.run.summary, path=str(claim.run.path), label=item.label, seed=item.seed)
            )
            return None
        init = ready.inits[item.seed]
        return _Claimed(item, claim, init.path if init else None)

    def _drain(self, ray, sink, flying: dict, events: Events) -> None:
        """Progress events to the view; each epoch's files into the claimed folder."""
        claims = {e.item.id: e.claim for e in flying.values()}
        for kind, rid, *args in ray.get(sink.drain.remote()):
            if kind == "files":
                claim = claims.get(rid)
                if claim is not None:
                    _write_files(claim.run.path, args[0])
            else:
                getattr(events, kind)(rid, *args)

    def _settle(self, entry: _Claimed, out: dict, store: RunStore) -> Result:
        """Commit a finished folder; record how an unfinished one ended."""
        result: Result = out["result"]
        claim = entry.claim
        try:
            with signals.deferred():  # the commit, or the run's ending, is never cut in half
                if result.status == "done" and out["folder"]:
                    result.path = str(_commit(store, claim, result.id, out["folder"]))
                else:
                    if out["folder"]:
                        _write_files(claim.run.path, out["folder"])
                    status = result.status if result.status in ("failed", "interrupted") else "failed"
                    _abandon(entry, status, result.error)
        except MasklabError as exc:  # the folder that came back cannot be committed: the run failed
            _abandon(entry, "failed", str(exc))
            result = _failed(entry.item, str(exc))
        finally:
            claim.finished = True
            claim.release()
        return result


class _Sink:
    """A Ray actor: workers put events in, the driver drains them."""

    def __init__(self) -> None:
        self.events: list = []

    def put(self, event: tuple) -> None:
        self.events.append(event)

    def drain(self) -> list:
        out, self.events = self.events, []
        return out


def train_remote(item: WorkItem, rid: str, shipped: bytes, sink, threads: int) -> dict:
    """A Ray task: train one run in a scratch store on this node, shipping each epoch's
    checkpoint to the driver; return the run folder as bytes."""
    import ray

    threads_mod.configure(threads)
    scratch = Path(tempfile.mkdtemp(prefix="masklab-ray-"))
    try:
        store = RunStore(scratch)
        unpack(shipped, scratch)

        def send(kind: str, *args) -> None:
            sink.put.remote((kind, *args))

        class Shipping(Forward):
            def epoch(self, rid: str, row: dict) -> None:
                # wait until the driver's actor holds the files: this epoch is safe from here on
                ray.get(sink.put.remote(("files", rid, pack([scratch / rid], SHIPPED_EACH_EPOCH))))
                super().epoch(rid, row)

        (result,) = train_item(item, store, Shipping(send), {})  # one seed per task
        folder = pack([scratch / rid]) if (scratch / rid).is_dir() and result.status != "busy" else b""
        return {"result": result, "folder": folder}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _commit(store: RunStore, claim, rid: str, shipped: bytes) -> Path:
    """A worker's finished folder, committed over the driver's claimed folder (or, for a
    --force replacement, over the old run) by one atomic swap."""
    # a .tmp- folder: if the driver dies here, the store's sweep removes it
    incoming = Path(tempfile.mkdtemp(prefix=f".tmp-incoming-{rid}-", dir=store.root))
    try:
        tops = unpack(shipped, incoming)
        if [t.name for t in tops] != [rid]:
            raise RunError(f"run {rid}: its worker sent back {', '.join(t.name for t in tops) or 'nothing'}")
        target = claim.old if claim.mode == "replace" else claim.run
        run = store.commit(tops[0], rid, replace=target)
    finally:
        files.remove_tree(incoming)
    if claim.mode == "replace":
        files.remove_tree(claim.run.path)  # the staged folder the driver kept progress in
    return run.path


def _write_files(folder: Path, shipped: bytes) -> None:
    """A worker's files, written atomically into the driver's claimed folder (unpacked
    beside it in a .tmp- folder, which the store sweeps if the driver dies meanwhile)."""
    with tempfile.TemporaryDirectory(prefix=".tmp-ship-", dir=folder.parent) as tmp:
        for top in unpack(shipped, Path(tmp)):
            for path in top.rglob("*"):
                if path.is_file():
                    (folder / path.relative_to(top)).parent.mkdir(parents=True, exist_ok=True)
                    write_atomic(folder / path.relative_to(top), path.read_bytes())


def _abandon(entry: _Claimed, status: str, error: str = "") -> None:
    """An unfinished run: a staged replacement is dropped (the old run stays as it was);
    a claimed folder keeps its last checkpoint and says how it ended."""
    claim = entry.claim
    if claim.mode == "replace":
        files.remove_tree(claim.run.path)
        return
    claim.run.record_status(status=status, finished=now(), error=error or status)


def node_lost(ray, exc: Exception) -> str:
    """One line for a Ray error that reached the driver itself: what happened to its node."""
    if isinstance(exc, ray.exceptions.OutOfMemoryError):
        return "Ray's memory monitor stopped this study's workers: the Ray node ran low on memory"
    text = str(exc)
    detail = re.search(r"exit detail: ([^\n]+)", text)
    said = (detail.group(1) if detail else text.strip().split("\n", 1)[0]).strip().rstrip(".")
    cause = f"{type(exc).__name__}: {said}" if said else type(exc).__name__
    return f"the Ray node running this study died or stopped answering Ray's health checks ({cause})"


def _failed(item: WorkItem, error: str) -> Result:
    return Result(item.id, "failed", error=error, exit_code=1, label=item.label, seed=item.seed)


def _held_elsewhere(store: RunStore, rid: str) -> bool:
    run = store.get(rid)
    return run is not None and run.is_locked()
