"""Live tracking during training (`masklab train --track mlflow`): the exporters of
store/exporters run at defined points of every run of a study (its start, the end of
each epoch, its end), always from what the run folder already holds, in the process
that drives the study, whichever process trains the run.

A tracker never costs a run: an error in one is a warning (an event note), that tracker stops
for the rest of that run, training goes on, and the run folder is complete as always;
`masklab export RUN --to ...` logs it again later. The exit status is the training's.
"""

from __future__ import annotations

from collections.abc import Callable

from masklab.events import Events
from masklab.store.exporters import export_run, first_line
from masklab.store.runs import Run, RunStore


class TrackedEvents(Events):
    """The same tracking for a study (`masklab train --track` with its driver): wraps the
    study's events and syncs each run from its folder when it starts, after each of its
    epochs and when its result comes in, whichever process trains it (this one, a --jobs
    worker). Several runs may train at once, so what broke is kept per run; the location
    goes into run.json at the end, under the run's lock, once its trainer has let go.
    A run trained where the store cannot see it (Ray without a shared runs dir) is
    synced once, when its folder is committed."""

    def __init__(self, inner, exporters: list, store: RunStore) -> None:
        self.inner, self.exporters, self.store = inner, exporters, store
        self.broken: dict[str, set[str]] = {}  # run id -> trackers that failed for it

    def started(self, rid: str, epochs: int, steps: int, start_epoch: int, runs: int = 1) -> None:
        self.inner.started(rid, epochs, steps, start_epoch, runs)
        for run_id in member_ids(rid):
            self.broken[run_id] = set()
            self._sync(run_id, live=True)

    def epoch(self, rid: str, row: dict) -> None:
        self.inner.epoch(rid, row)
        for run_id in member_ids(rid):
            self._sync(run_id, live=True)

    def finished(self, result) -> None:
        self.inner.finished(result)
        if result.status in ("busy", "stopped"):  # not an ending: the driver comes back to it
            return
        self._sync(result.id, live=False, record=True)
        self.broken.pop(result.id, None)

    def end(self) -> None:
        try:
            for exporter in self.exporters:
                exporter.close()
        finally:
            self.inner.end()

    def __getattr__(self, name: str):  # any other study event goes to the wrapped view
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _sync(self, run_id: str, live: bool, record: bool = False) -> None:
        run = self.store.get(run_id)
        if run is not None:
            sync_run(run, self.exporters, self.broken.setdefault(run_id, set()), live, record, self.inner.note)


def member_ids(rid: str) -> list[str]:
    """The run ids of a study's work item: `<name>-<hash>-s3` itself, a seed group
    `<name>-<hash>-s0,1,2` its three runs."""
    prefix, _, seeds = rid.rpartition("-s")
    return [f"{prefix}-s{s}" for s in seeds.split(",")] if prefix else [rid]


def sync_run(
    run: Run,
    exporters: list,
    broken: set[str],
    live: bool,
    record: bool,
    warn: Callable[[str], None],
    locked_by_us=False,
) -> None:
    """Bring each tracker up to date with the run folder; a tracker that fails is named
    once (`warn`) and left alone for the rest of this run (`broken`)."""
    for exporter in exporters:
        if exporter.kind in broken:
            continue
        try:
            export_run(run, exporter, live=live, record=record, locked_by_us=locked_by_us)
        except Exception as exc:  # a tracker never costs the run
            broken.add(exporter.kind)
            warn(
                f"warning: {run.id}: {exporter.kind} tracking stopped ({first_line(exc)}); training goes on, "
                f"and `masklab export {run.id} --to {exporter.kind}:{exporter.target}` logs the run later"
            )
