"""Live tracking during training (`masklab train --track mlflow`): the exporters of
store/exporters run at defined points of every run (its start, the end of each epoch,
its end), always from what the run folder already holds.

A tracker never costs a run: an error in one is a warning on stderr, that tracker stops
for the rest of that run, training goes on, and the run folder is complete as always;
`masklab export RUN --to ...` logs it again later. The exit status is the training's.
"""

from __future__ import annotations

import sys

from masklab.store.runs import Run, RunStore


class TrackingReporter:
    """Wraps the progress reporter the training loop calls; forwards every call and
    syncs the current run to each tracker at its start and after each epoch."""

    def __init__(self, inner, exporters: list, store: RunStore) -> None:
        self.inner, self.exporters, self.store = inner, exporters, store
        self.run: Run | None = None
        self.broken: set[str] = set()  # trackers that failed for the current run

    def start(self, run_id: str, epochs: int, steps: int, start_epoch: int) -> None:
        self.inner.start(run_id, epochs, steps, start_epoch)
        self.run, self.broken = self.store.get(run_id), set()
        self._sync(live=True, record=True)

    def step(self, epoch: int, step: int) -> None:
        self.inner.step(epoch, step)

    def epoch(self, row: dict) -> None:
        self.inner.epoch(row)
        self._sync(live=True)

    def finish(self) -> None:
        self.inner.finish()

    def __getattr__(self, name: str):  # any other progress callback goes to the wrapped reporter
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def run_ended(self, run: Run) -> None:
        """After a run's final status is written (done, failed, interrupted) or a finished
        run is reused: the last sync, with summary, figures and status."""
        if self.run is None or self.run.id != run.id:
            self.run, self.broken = run, set()
        self._sync(live=False, record=True)
        for exporter in self.exporters:
            exporter.close()
        self.run = None

    def _sync(self, live: bool, record: bool = False) -> None:
        run = self.run
        if run is None:
            return
        for exporter in self.exporters:
            if exporter.kind in self.broken:
                continue
            try:
                synced = exporter.sync(run, live=live)
                if record and exporter.kind == "mlflow" and run.info.get("mlflow") != synced.location:
                    record_location(run, "mlflow", synced.location, locked_by_us=live)
            except Exception as exc:  # a tracker never costs the run
                self.broken.add(exporter.kind)
                print(
                    f"warning: {run.id}: {exporter.kind} tracking stopped ({type(exc).__name__}: {exc}); training goes on, "
                    f"and `masklab export {run.id} --to {exporter.kind}:{exporter.target}` logs the run later",
                    file=sys.stderr,
                )


def record_location(run: Run, kind: str, location: dict, locked_by_us: bool = False) -> None:
    """Note in run.json where the run was exported (its MLflow run id). While training,
    this process holds the run's lock already; afterwards the lock is taken for the write."""
    if locked_by_us:
        run.update_info(**{kind: location})
        return
    with run.lock():
        run.update_info(**{kind: location})
