"""Train one work item in whatever process runs it: this one, a pool worker or a Ray task.

Every executor ends in `train_item`, so a run trains the same way everywhere: the
runner's checks, its folder, lock and status handling, its resume. Progress goes out
through `EventReporter`, which turns the training loop's callbacks into study events.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from masklab.errors import Interrupted, MasklabError, RunError
from masklab.store.runs import RunStore
from masklab.study.executors import Result, WorkItem

STEP_EVERY_S = 0.25  # at most this often a step event leaves a worker


class EventReporter:
    """A train.Reporter that passes a work item's progress on as `send(kind, rid, *args)`
    (`runs`: how many runs train together in it); steps are thinned to 4 a second.
    (No torch import: pool workers set their threads first.)"""

    def __init__(self, rid: str, send: Callable[..., None], runs: int = 1) -> None:
        self.rid, self.send, self.runs = rid, send, runs
        self._last = 0.0

    def start(self, run_id: str, epochs: int, steps: int, start_epoch: int) -> None:
        self.send("started", self.rid, epochs, steps, start_epoch, self.runs)

    def step(self, epoch: int, step: int) -> None:
        now = time.monotonic()
        if now - self._last >= STEP_EVERY_S:
            self._last = now
            self.send("step", self.rid, epoch, step)

    def epoch(self, row: dict) -> None:
        self.send("epoch", self.rid, row)

    def finish(self) -> None:
        pass


def train_item(item: WorkItem, store: RunStore, reporter, datasets: dict | None = None) -> list[Result]:
    """Train a work item's runs into `store` and say how each ended. Interrupted is a
    result here; the caller decides whether it stops the study."""
    if len(item.seeds) > 1:
        return train_group(item, store, reporter, datasets)
    from masklab.study import runner

    began = time.perf_counter()
    result = Result(item.id, "failed", label=item.label, seed=item.seed, item=item.id)
    try:
        (ready,) = runner.prepare([item.spec], [item.seed], store, datasets)
        outcome = runner.train_one(
            item.spec,
            item.seed,
            ready.dataset,
            store,
            ready.device,
            reporter,
            force=item.force,
            resume=item.resume,
            init=ready.inits[item.seed],
        )
    except Interrupted as exc:
        result.status, result.error, result.exit_code = "interrupted", str(exc), exc.exit_code
    except MasklabError as exc:
        if isinstance(exc, RunError) and taken_elsewhere(store, item.id):
            result.status = "busy"
        result.error, result.exit_code = str(exc), exc.exit_code
    except Exception as exc:  # a bug or an out-of-memory: the run is marked failed, the study goes on
        result.error, result.exit_code = f"{type(exc).__name__}: {exc}", 1
    else:
        result.status = "reused" if outcome.reused else "done"
        result.summary, result.path = outcome.summary, str(outcome.run.path)
    result.seconds = round(time.perf_counter() - began, 3)
    return [result]


def train_group(item: WorkItem, store: RunStore, reporter, datasets: dict | None = None) -> list[Result]:
    """A seed group trained as one batched model (study/seed_groups.py), one result per
    seed. The group's statuses in the store are true whatever happens, so after an error
    each result reads its run: a seed stopped because another failed is `stopped` (the
    driver resumes it), a group that another process took part of is `busy`."""
    from masklab.study import runner, seed_groups
    from masklab.train_batched import SeedFailed

    began = time.perf_counter()
    results = [Result(rid, "failed", label=item.label, seed=s, item=item.id) for rid, s in zip(item.ids, item.seeds)]
    try:
        (ready,) = runner.prepare([item.spec], list(item.seeds), store, datasets)
        outcomes = seed_groups.train_batched(
            item.spec,
            list(item.seeds),
            ready.dataset,
            store,
            ready.device,
            reporter,
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
        for r, outcome in zip(results, outcomes):
            r.status = "reused" if outcome.reused else "done"
            r.summary, r.path = outcome.summary, str(outcome.run.path)
    share = round((time.perf_counter() - began) / len(results), 3)  # each run's share, as run.json records it
    for r in results:
        r.seconds = share
    return results


def taken_elsewhere(store: RunStore, rid: str) -> bool:
    """Another process trains this run, or finished it, since the study looked."""
    run = store.get(rid)
    return run is not None and (run.is_locked() or run.status == "done")
