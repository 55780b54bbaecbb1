"""How a run ended: the record the runner returns, executors carry back from their
workers, the driver collects and the CLI reports. (Before it: the plan's PlannedRun, the
store's RunState, an executor's WorkItem; after it, the run folder itself.)"""

from __future__ import annotations

from dataclasses import dataclass, field

from masklab.store.runs import Run


@dataclass
class Result:
    """How one run ended: done | reused | failed | interrupted. Two more are not endings:
    busy (another process holds it) and stopped (its batch stopped for another seed's
    failure); the driver reads such runs again and waits for or resumes them."""

    id: str
    status: str
    summary: dict = field(default_factory=dict)
    error: str = ""
    exit_code: int = 0
    path: str = ""
    seconds: float | None = None
    label: str = ""
    seed: int | None = None
    item: str = ""  # the work item it trained in: its own id, or its seed group's
    run: Run | None = field(default=None, repr=False)  # its folder, where this process can see it

    @property
    def final(self) -> bool:
        return self.status not in ("busy", "stopped")

    @property
    def reused(self) -> bool:
        return self.status == "reused"

    @classmethod
    def of(cls, run: Run, status: str, summary: dict) -> Result:
        """A run that ended in this process: done (or pruned, with its reason) or reused."""
        info = run.info
        return cls(
            run.id, status, summary, path=str(run.path), label=info.get("label") or "", seed=info.get("seed"), run=run
        )
