"""Train one work item in whatever process runs it: this one, a pool worker or a Ray task.

Every executor ends in `train_item`, so a run trains the same way everywhere: the
runner's checks, its folder, lock and status handling, its resume. Progress goes out as
events (masklab/events.py); `Forward` carries them from a worker to the driver.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from masklab.errors import Interrupted, MasklabError, RunError, SeedFailed
from masklab.events import Events
from masklab.store.runs import RunStore
from masklab.study.executors import Result, WorkItem

STEP_EVERY_S = 0.25  # at most this often a step event leaves a worker


class Forward(Events):
    """A work item's events passed on as `send(kind, *args)`: to the driver's view directly,
    through a pool worker's pipe or a Ray actor. Steps are thinned to 4 a second.
    (No torch import: pool workers set their threads first.)"""

    def __init__(self, send: Callable[..., None]) -> None:
        self.send = send
        self._last = 0.0

    def started(self, rid: str, epochs: int, steps: int, start_epoch: int, runs: int = 1) -> None:
        self.send("started", rid, epochs, steps, start_epoch, runs)

    def step(self, rid: str, epoch: int, step: int) -> None:
        now = time.monotonic()
        if now - self._last >= STEP_EVERY_S:
            self._last = now
            self.send("step", rid, epoch, step)

    def epoch(self, rid: str, row: dict) -> None:
        self.send("epoch", rid, row)

    def note(self, message: str, quiet_too: bool = True) -> None:
        self.send("note", message, quiet_too)


def train_item(item: WorkItem, store: RunStore, events: Events, datasets: dict | None = None) -> list[Result]:
    """Train a work item's runs (one seed, or a seed group trained as one batched model)
    into `store` and say how each ended. Interrupted is a result here; the caller decides
    whether it stops the study. The runs' statuses in the store are true whatever
    happens, so after an error each result reads its run: a seed stopped because another
    of its group failed is `stopped` (the driver resumes it), a run another process took
    is `busy`."""
    from masklab.study import runner

    began = time.perf_counter()
    results = [Result(rid, "failed", label=item.label, seed=s, item=item.id) for rid, s in zip(item.ids, item.seeds)]
    try:
        (ready,) = runner.prepare([item.spec], list(item.seeds), store, datasets, events.note)
        ended = runner.train_runs(
            item.spec,
            list(item.seeds),
            ready.dataset,
            store,
            ready.device,
            events,
            force=item.force,
            resume=item.resume,
            inits=ready.inits,
        )
    except Interrupted as exc:
        for r in results:
            r.status, r.error, r.exit_code = "interrupted", str(exc), exc.exit_code
    except SeedFailed as exc:
        for r in results:
            failed = r.seed == exc.seed
            r.status, r.error, r.exit_code = ("failed" if failed else "stopped"), str(exc), exc.exit_code
    except MasklabError as exc:
        held = isinstance(exc, RunError) and any(taken_elsewhere(store, rid) for rid in item.ids)
        for r in results:
            r.status, r.error, r.exit_code = ("busy" if held else "failed"), str(exc), exc.exit_code
    except Exception as exc:  # a bug or an out-of-memory: the runs are marked failed, the study goes on
        for r in results:
            r.error, r.exit_code = f"{type(exc).__name__}: {exc}", 1
    else:
        results = [replace(r, label=item.label, item=item.id, run=None) for r in ended]  # a folder stays here
    share = round((time.perf_counter() - began) / len(results), 3)  # each run's share, as run.json records it
    for r in results:
        r.seconds = share
    return results


def taken_elsewhere(store: RunStore, rid: str) -> bool:
    """Another process trains this run, or finished it, since the study looked."""
    run = store.get(rid)
    return run is not None and (run.is_locked() or run.status == "done")
