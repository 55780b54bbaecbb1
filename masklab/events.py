"""The one interface from the library to whoever watches the work: the CLI's live view,
trackers that log each epoch, a search's pruner. Library code never prints; it calls
these, and a wrapper may pass them on (study/tracking.py, study/trial.py, a worker's
queue in study/executors/). Every method is a no-op here.

`rid` names what trains: a run id, or a seed group's `<name>-<hash>-s0,1,2`."""

from __future__ import annotations


class Events:
    def begin(self, states: list) -> None:
        """A study starts: where each planned run stands (study/states.py RunState)."""

    def started(self, rid: str, epochs: int, steps: int, start_epoch: int, runs: int = 1) -> None:
        """Training starts (or resumes after `start_epoch`); `runs` seeds train together."""

    def step(self, rid: str, epoch: int, step: int) -> None: ...

    def epoch(self, rid: str, row: dict) -> None:
        """An epoch ended: its metrics row (a seed group's rows averaged)."""

    def ended(self, rid: str) -> None:
        """A work item's training ended, however it went; its runs' results follow."""

    def finished(self, result) -> None:
        """How one run ended (study/executors Result)."""

    def note(self, message: str, quiet_too: bool = True) -> None:
        """A line for the user; `quiet_too=False`: not with -q."""

    def waiting(self, ids: list[str]) -> None:
        """Runs another process holds are waited for."""

    def end(self) -> None: ...
