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
from dataclasses import dataclass, field, replace

from masklab.spec import Spec
from masklab.store.runs import RunStore
from masklab.study.plan import PlannedRun, Study
from masklab.study.states import TRAINING_ACTIONS, RunState, read_state, read_states

WAIT_POLL_S = 1.0


@dataclass(frozen=True)
class WorkItem:
    """One run to train, and how: train | resume | restart | retrain."""

    spec: Spec
    seed: int
    action: str
    attempt: int = 1

    @property
    def id(self) -> str:
        return PlannedRun(self.spec, self.seed).id

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
        """The same run after its worker died: it continues from its last checkpoint."""
        return replace(self, action="resume", attempt=self.attempt + 1)


@dataclass
class Result:
    """How one run ended: done | reused | failed | interrupted | busy (held elsewhere)."""

    id: str
    status: str
    summary: dict = field(default_factory=dict)
    error: str = ""
    exit_code: int = 0
    path: str = ""
    seconds: float | None = None
    label: str = ""
    seed: int | None = None


class Events:
    """What a study reports while it runs; the CLI's live view implements it."""

    def begin(self, states: list[RunState]) -> None: ...

    def started(self, rid: str, epochs: int, steps: int, start_epoch: int) -> None: ...

    def step(self, rid: str, epoch: int, step: int) -> None: ...

    def epoch(self, rid: str, row: dict) -> None: ...

    def finished(self, result: Result) -> None: ...

    def note(self, message: str) -> None: ...

    def waiting(self, ids: list[str]) -> None: ...

    def end(self) -> None: ...


class Executor:
    """Trains work items and returns their results; `check` runs in the driver first."""

    name = "executor"

    def check(self, runs: list[PlannedRun], store: RunStore) -> None: ...

    def run(self, items: list[WorkItem], store: RunStore, events: Events) -> list[Result]:
        raise NotImplementedError


def run_study(
    study: Study, store: RunStore, executor: Executor, events: Events | None = None, force=False, resume=False
) -> list[Result]:
    """Bring every run of the study to an end, in plan order: finished runs are reported,
    the rest trained by `executor`; runs held by another process are waited for."""
    events = events or Events()
    states = read_states(study, store, force, resume)
    events.begin(states)
    results: dict[str, Result] = {}
    pending = _settle(states, results, events)
    executor.check([s.planned for s in pending], store)  # every spec against its data before any training
    try:
        while pending:
            runnable = [WorkItem(s.planned.spec, s.planned.seed, s.action) for s in pending if s.action != "wait"]
            if runnable:
                for result in executor.run(runnable, store, events):
                    if result.status != "busy":
                        results[result.id] = result
            else:
                events.waiting([s.id for s in pending])
                time.sleep(WAIT_POLL_S)
            left = [s.planned for s in pending if s.id not in results]
            pending = _settle([read_state(p, store, resume=resume) for p in left], results, events)
    finally:
        events.end()
    return [results[p.id] for p in study.runs]


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
