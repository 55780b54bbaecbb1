"""Executors on this machine: in this process (the default), or a pool of worker processes.

`Pool` (`--jobs N`) starts N spawned workers, each with 1/N of the usable cores (and,
on a GPU machine, a GPU chosen round-robin and an optional memory fraction, so several
small runs share one GPU). Each worker talks to the driver over its own pipe, so a
worker killed mid-run breaks nothing but its own pipe: the driver sees it die, starts
a replacement, and hands the run to it again, which resumes from the run's last
checkpoint (the run folder is in the shared store, marked stale). Workers write their
runs in place: the store's atomic creation and locks keep two processes off one run.

Signals: workers run in their own process group, so Ctrl-C reaches only the driver,
which forwards one SIGTERM to each worker (stop after the current step, checkpointed,
marked interrupted); a second Ctrl-C forwards another (stop at once). A worker whose
driver vanishes (SIGKILL, a crash) stops the same way, as if the driver had sent the
SIGTERM (`DriverLink`): at its next step when it next reports over the broken pipe,
within WATCH_S otherwise (evaluating, loading data). Its run is left `interrupted`, not
failed, so running the same command again continues it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

from masklab import signals, threads as threads_mod
from masklab.errors import Interrupted, UsageError
from masklab.store.runs import RunStore
from masklab.study.executors import Events, Executor, Result, WorkItem
from masklab.study.executors.work import Forward, train_item
from masklab.study.plan import PlannedRun

RETRIES = 2  # a run whose worker dies is handed out again this many times
WATCH_S = 0.25  # how often a worker looks whether its driver is still there


def check_runs(runs: list[PlannedRun], store: RunStore, datasets: dict, events: Events) -> None:
    """The runner's checks for every spec with work left, in the driver, before any training."""
    from masklab.study import runner

    specs: dict[str, tuple] = {}
    for p in runs:
        specs.setdefault(p.spec.name, (p.spec, []))[1].append(p.seed)
    for spec, seeds in specs.values():
        runner.prepare([spec], seeds, store, datasets, events.note)


class InProcess(Executor):
    """One run (or seed group) after another in this process: today's path, and the default."""

    name = "in-process"
    batches_seeds = True

    def __init__(self) -> None:
        self.datasets: dict = {}

    def check(self, runs: list[PlannedRun], store: RunStore, events: Events) -> None:
        check_runs(runs, store, self.datasets, events)

    def run(self, items: list[WorkItem], store: RunStore, events: Events) -> list[Result]:
        results = []
        for item in items:
            ended = train_item(item, store, Forward(lambda kind, *args: getattr(events, kind)(*args)), self.datasets)
            report(item, ended, events)
            results += ended
            interrupted = [r for r in ended if r.status == "interrupted"]
            if interrupted:
                raise Interrupted(interrupted[0].error)
        return results


def report(item: WorkItem, results: list[Result], events: Events) -> None:
    """Tell the view a work item ended and how each of its runs did."""
    events.ended(item.id)
    for result in results:
        if result.final:
            events.finished(result)


@dataclass
class WorkerConfig:
    runs_root: str
    threads: int | None  # --threads, else masklab.threads shares the usable cores among the jobs
    jobs: int
    gpu: int | None = None  # the CUDA device this worker sees
    gpu_fraction: float | None = None
    driver_pid: int = 0


class Pool(Executor):
    """`--jobs N` worker processes on this machine."""

    name = "pool"
    batches_seeds = True

    def __init__(self, jobs: int, threads: int | None = None, gpu_fraction: float | None = None) -> None:
        if jobs < 1:
            raise UsageError(f"--jobs {jobs}: must be at least 1")
        if gpu_fraction is not None and not 0 < gpu_fraction <= 1:
            raise UsageError(f"--gpu-fraction {gpu_fraction}: must be in (0, 1], e.g. 0.25 for four runs per GPU")
        self.jobs, self.threads, self.gpu_fraction = jobs, threads, gpu_fraction
        self.gpus = 0
        self.datasets: dict = {}

    def check(self, runs: list[PlannedRun], store: RunStore, events: Events) -> None:
        check_runs(runs, store, self.datasets, events)
        if any(r.spec.train.device != "cpu" for r in runs):
            import torch

            self.gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0

    def run(self, items: list[WorkItem], store: RunStore, events: Events) -> list[Result]:
        ctx = multiprocessing.get_context("spawn")  # no fork after torch has started its threads
        queue, results = deque(items), []
        workers: dict[Connection, _Worker] = {}
        stops = 0

        def start(index: int) -> None:
            config = WorkerConfig(
                str(store.root.resolve()),
                self.threads,
                self.jobs,
                index % self.gpus if self.gpus else None,
                self.gpu_fraction,
                os.getpid(),
            )
            here, there = ctx.Pipe()
            process = ctx.Process(target=worker_main, args=(there, config), daemon=True, name=f"masklab-worker-{index}")
            process.start()
            there.close()
            workers[here] = _Worker(index, process)

        workers_needed = min(self.jobs, len(items))
        each = threads_mod.choose_threads(self.threads, self.jobs)[0]  # what each worker's configure() will pick
        events.note(f"starting {workers_needed} worker process(es), {each} thread(s) each", quiet_too=False)
        for index in range(workers_needed):
            start(index)
        try:
            while workers:
                try:
                    self._assign(workers, queue, stopping=stops > 0)
                    self._listen(workers, queue, results, events, start)
                except KeyboardInterrupt:
                    stops += 1
                    events.note("stopping: each worker finishes its step and saves a checkpoint...")
                    for w in workers.values():
                        with contextlib.suppress(OSError):
                            os.kill(w.process.pid, signal.SIGTERM)
        finally:
            for w in workers.values():
                w.process.kill()
        if stops:
            done = sum(r.status in ("done", "reused") for r in results)
            raise Interrupted(f"interrupted with {done} run(s) finished; run the same command again to continue")
        return results

    def _assign(self, workers: dict, queue: deque, stopping: bool) -> None:
        for conn, w in list(workers.items()):
            if w.item is None:
                if queue and not stopping:
                    w.item = queue.popleft()
                    conn.send(w.item)
                else:
                    with contextlib.suppress(OSError):
                        conn.send(None)  # no more work: the worker exits
                    w.process.join(timeout=30)
                    del workers[conn]

    def _listen(self, workers: dict, queue: deque, results: list, events: Events, start) -> None:
        by_sentinel = {w.process.sentinel: conn for conn, w in workers.items()}
        for ready in wait([*workers, *by_sentinel], timeout=0.5):
            conn = by_sentinel.get(ready, ready)
            w = workers.get(conn)
            if w is None:
                continue
            try:
                message = conn.recv() if ready is conn else None
            except (EOFError, OSError):
                message = None
            if message is not None:
                kind, *args = message
                if kind == "results":
                    report(w.item, args[0], events)
                    results += args[0]
                    w.item = None
                else:
                    getattr(events, kind)(*args)
                continue
            w.process.join(timeout=5)
            if w.process.exitcode is None:
                continue
            del workers[conn]
            self._worker_died(w, queue, results, events)
            if queue:
                start(w.index)

    def _worker_died(self, w: _Worker, queue: deque, results: list, events: Events) -> None:
        item = w.item
        if item is None:
            return
        events.ended(item.id)
        why = f"its worker died (exit {w.process.exitcode})"
        if item.attempt <= RETRIES:
            events.note(f"{item.id}: {why}; continuing it from its last checkpoint")
            queue.appendleft(item.retried())
            return
        for rid, seed in zip(item.ids, item.seeds):
            result = Result(
                rid, "failed", error=f"{why} {item.attempt} times", exit_code=1, label=item.label, seed=seed
            )
            results.append(result)
            events.finished(result)


@dataclass
class _Worker:
    index: int
    process: multiprocessing.Process
    item: WorkItem | None = None


class DriverLink:
    """A worker's pipe to its driver. When the driver is gone (the pipe breaks, or the
    worker is handed to another parent) the worker stops as if the driver had sent its
    SIGTERM: a run stops after its step, checkpointed, `interrupted`; a run evaluating
    or a worker preparing stops at once. Nothing more is sent."""

    def __init__(self, conn: Connection, driver_pid: int) -> None:
        self.conn, self.driver_pid = conn, driver_pid
        self.gone = threading.Event()

    def send(self, *message) -> None:
        if self.gone.is_set():
            return
        try:
            self.conn.send(message)
        except OSError:  # BrokenPipeError: the driver is gone
            self.lost()

    def lost(self) -> None:
        if not self.gone.is_set():
            self.gone.set()
            os.kill(os.getpid(), signal.SIGTERM)  # to the main thread, through masklab.signals

    def watch(self) -> None:
        """Look for the driver every WATCH_S in a thread: a worker that sends nothing
        (evaluating, loading data) notices it gone too."""

        def watch() -> None:
            while os.getppid() == self.driver_pid and not self.gone.wait(WATCH_S):
                pass
            self.lost()

        threading.Thread(target=watch, daemon=True, name="watch-driver").start()


def worker_main(conn: Connection, config: WorkerConfig) -> None:
    """A pool worker: train the items the driver sends until it sends None."""
    os.setpgrp()  # Ctrl-C at the terminal goes to the driver, which decides
    signals.install()  # the driver's SIGTERM: stop after the step inside a run, at once (outside a claim) elsewhere
    if config.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(config.gpu)
    threads_mod.configure(config.threads, config.jobs)  # before torch: this worker's share of the cores
    if config.gpu_fraction:
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_per_process_memory_fraction(config.gpu_fraction)
    driver = DriverLink(conn, config.driver_pid)
    driver.watch()
    store, datasets = RunStore(config.runs_root), {}
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if item is None:
            return
        try:
            ended = train_item(item, store, Forward(driver.send), datasets)
        except KeyboardInterrupt:  # stopped outside a run's claim (preparing): its runs are as they were
            ended = [
                Result(
                    rid, "interrupted", error="interrupted before it started", exit_code=130, seed=seed, item=item.id
                )
                for rid, seed in zip(item.ids, item.seeds)
            ]
            driver.send("results", ended)
            return
        driver.send("results", ended)
        if driver.gone.is_set():
            return
