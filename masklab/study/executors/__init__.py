"""Execute a planned study: plan -> execute -> commit -> read.

`run_study` is the driver. It reads where each planned run stands (study/states.py),
reports the finished ones, checks every spec that still has work against its data
before anything trains, and hands the rest to an executor. Executors are thin: they
take work items and return results, and never decide what to run.

- `InProcess` (default): today's path, one run after another in this process.
- `Pool` (`--jobs N`): N worker processes on this machine, each with its share of the cores.
- `RayTasks` (`--executor ray`): one Ray task per run, on a local instance or a cluster.

Runs held by another process (a second study launched into the same runs dir) are
waited for, then read again: a finished one is reported, an interrupted one resumed.
So two studies sharing a runs dir split the work between them and never train a run twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from masklab.errors import RunError
from masklab.events import Events
from masklab.spec import Spec
from masklab.store.runs import RunStore
from masklab.study import pins, sources
from masklab.study.plan import PlannedRun, Study, seeds_per_batch
from masklab.study.result import Result
from masklab.study.states import TRAINING_ACTIONS, RunState, read_state, read_states

WAIT_POLL_S = 1.0


@dataclass(frozen=True)
class WorkItem:
    """Runs to train together, and how: train | resume | restart | retrain. One seed, or
    with `train.seed_batch` several seeds of one spec trained as one batched model."""

    spec: Spec
    seeds: tuple[int, ...]
    action: str
    attempt: int = 1

    @property
    def ids(self) -> list[str]:
        return [PlannedRun(self.spec, seed).id for seed in self.seeds]

    @property
    def id(self) -> str:
        """The run's id; for a seed group, `<name>-<hash>-s0,1,2` (its name in the live view)."""
        if len(self.seeds) == 1:
            return self.ids[0]
        return f"{self.ids[0].rsplit('-s', 1)[0]}-s{','.join(map(str, self.seeds))}"

    @property
    def seed(self) -> int:
        return self.seeds[0]

    @property
    def label(self) -> str:
        return self.spec.label or ""

    @property
    def force(self) -> bool:
        return self.action == "retrain"

    @property
    def resume(self) -> bool:
        return self.action in ("resume", "restart")

    def retried(self) -> WorkItem:
        """The same runs after their worker died: they continue from their last checkpoints."""
        return replace(self, action="resume", attempt=self.attempt + 1)


def work_items(states: list[RunState], batch_seeds: bool = True) -> list[WorkItem]:
    """What to hand an executor: one item per run, or with `train.seed_batch` (and
    `batch_seeds`) the seeds of one spec that need the same action, in chunks of the
    spec's seeds per batch. Plan order is kept: each cell's seeds are planned together."""
    by_spec: dict[tuple[str, str], list[RunState]] = {}
    for s in states:
        key = (s.id.rsplit("-s", 1)[0], s.action)
        by_spec.setdefault(key, []).append(s)
    items = []
    for (_, action), members in by_spec.items():
        spec = members[0].planned.spec
        size = seeds_per_batch(spec, len(members)) if batch_seeds else 1
        for first in range(0, len(members), size):
            seeds = tuple(s.planned.seed for s in members[first : first + size])
            items.append(WorkItem(spec, seeds, action))
    return items


class Executor:
    """Trains work items and returns their results; `check` runs in the driver first."""

    name = "executor"
    batches_seeds = False  # whether it takes seed groups (train.seed_batch) as one item

    def check(self, runs: list[PlannedRun], store: RunStore, events: Events) -> None: ...

    def run(self, items: list[WorkItem], store: RunStore, events: Events) -> list[Result]:
        raise NotImplementedError


def run_study(
    study: Study, store: RunStore, executor: Executor, events: Events | None = None, force=False, resume=False
) -> list[Result]:
    """Bring every run of the study to an end, in plan order: finished runs are reported,
    the rest trained by `executor`; runs held by another process are waited for."""
    events = events or Events()
    study = sources.pin_study(study, store)  # a fine-tune's id covers the source it starts from
    states = read_states(study, store, force, resume)
    refuse_changed_inputs(states, store, force)  # before anything is reused or trained
    events.begin(states)
    results: dict[str, Result] = {}
    pending = _settle(states, results, events)
    executor.check([s.planned for s in pending], store, events)  # every spec against its data before any training
    try:
        while pending:
            runnable = work_items([s for s in pending if s.action != "wait"], executor.batches_seeds)
            if runnable:
                for result in executor.run(runnable, store, events):
                    if result.final:
                        results[result.id] = result
            else:
                events.waiting([s.id for s in pending])
                time.sleep(WAIT_POLL_S)
            left = [s.planned for s in pending if s.id not in results]
            pending = _settle([read_state(p, store, resume=resume) for p in left], results, events)
    finally:
        events.end()
    return [results[p.id] for p in study.runs]


def refuse_changed_inputs(states: list[RunState], store: RunStore, force: bool) -> None:
    """One line for the first planned run whose inputs are not what it needs (`study.pins`):
    nothing of the study is reused or trained then."""
    problems = pins.check_states(states, store, force)
    if problems:
        first = next(iter(problems.values()))[1]
        more = f" ({len(problems) - 1} more run(s) likewise: --dry-run lists them)" if len(problems) > 1 else ""
        raise RunError(first + more)


def _settle(states: list[RunState], results: dict[str, Result], events: Events) -> list[RunState]:
    """Record the runs that need no work (done, or kept failed); return the others."""
    pending = []
    for s in states:
        if s.action in TRAINING_ACTIONS or s.action == "wait":
            pending.append(s)
            continue
        run = s.planned
        if s.action == "skip":
            result = Result(s.id, "reused", s.run.summary, path=str(s.run.path), label=run.label, seed=run.seed)
        else:
            hint = "--resume retries it from its checkpoint, --force starts it over"
            if s.state == "damaged":
                hint = "--force trains it again"
            result = Result(s.id, s.state, error=f"run {s.id} {s.state} earlier ({s.detail}); {hint}", exit_code=1)
            result.label, result.seed = run.label, run.seed
        results[s.id] = result
        events.finished(result)
    return pending
