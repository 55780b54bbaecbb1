"""Where each planned run stands in the store, and what running the study would do to it.

This is the read half of "plan -> execute": it opens run folders, never writes them, and
never imports torch, so `masklab train --dry-run` is free. The same table decides what
a real run of the study does:

| state       | action (default)           | with --resume      | with --force |
|-------------|----------------------------|--------------------|--------------|
| new         | train                      | train              | train        |
| done        | skip                       | skip               | retrain      |
| interrupted | resume from its checkpoint | resume             | retrain      |
| failed      | keep (reported, exit 1)    | resume             | retrain      |
| damaged     | keep (reported, exit 1)    | keep               | retrain      |
| running     | wait for the other process | wait               | wait         |

A run whose process died without a word (SIGKILL, a lost machine) is `stale` in the
store; here it is `interrupted`, since it resumes from its last checkpoint the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from masklab.store.runs import Run, RunStore
from masklab.study.plan import PlannedRun, Study

TRAINING_ACTIONS = ("train", "resume", "restart", "retrain")


@dataclass
class RunState:
    planned: PlannedRun
    state: str  # new | done | running | interrupted | failed | damaged
    action: str  # train | resume | restart | retrain | skip | keep | wait
    epochs_done: int | None = None
    detail: str = ""  # why: the error of a failed run, the pid holding a running one
    run: Run | None = None  # its folder in the store, if it has one

    @property
    def id(self) -> str:
        return self.planned.id

    def row(self) -> dict:
        p = self.planned
        epochs = p.spec.train.epochs
        return {
            "id": p.id,
            "label": p.label or None,
            "seed": p.seed,
            "state": self.state,
            "epochs": f"{self.epochs_done or 0}/{epochs}" if self.state != "new" else f"0/{epochs}",
            "action": self.action,
            "detail": self.detail or None,
            **{f"grid.{k}": v for k, v in p.values.items()},
        }


def read_state(planned: PlannedRun, store: RunStore, force: bool = False, resume: bool = False) -> RunState:
    run = store.get(planned.id)
    if run is None:
        return RunState(planned, "new", "train")
    status = run.status
    info = run.info
    done = info.get("epochs_done")
    if status == "running":
        return RunState(planned, "running", "wait", done, f"held by pid {info.get('pid')} on {info.get('host')}", run)
    if force:
        action = "retrain"
    elif status == "done":
        action = "skip"
    elif status in ("interrupted", "stale") or (status == "failed" and resume):
        action = "resume" if (run.path / "checkpoint.pt").is_file() else "restart"
    else:
        action = "keep"
    return RunState(planned, _state(status), action, done, "" if status == "done" else _detail(run, status), run)


def _state(status: str) -> str:
    return "interrupted" if status == "stale" else status


def _detail(run: Run, status: str) -> str:
    if status == "stale":
        return "its process stopped without a word"
    if status == "damaged":
        damage = getattr(run, "damage", None)  # the store names the damaged file
        return damage() if damage else "damaged"
    return run.info.get("error") or ""


def read_states(study: Study, store: RunStore, force: bool = False, resume: bool = False) -> list[RunState]:
    return [read_state(p, store, force, resume) for p in study.runs]


def counts(states: list[RunState]) -> dict[str, int]:
    """How many runs are in each state, in a fixed order."""
    order = ("done", "new", "interrupted", "failed", "running", "damaged")
    return {k: sum(s.state == k for s in states) for k in order if any(s.state == k for s in states)}
