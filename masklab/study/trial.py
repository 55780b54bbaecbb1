"""Inside a search trial's run: per-epoch validation reports to the search's Optuna study.

A trial's spec carries `trial` (the study's SQLite file, its name, the trial's id, the
metric); the runner wraps the run's events in `TrialEvents`, which reports the
metric after every epoch and asks the pruner whether to go on. It runs in whatever
process trains the run (this one, a `--jobs` worker), all sharing the SQLite file. A
pruned run stops after the epoch it was judged on, with its checkpoint written: its
status is `pruned`, and `masklab train --resume` would finish it.
"""

from __future__ import annotations

import functools

from masklab.errors import Pruned, UsageError
from masklab.events import Events
from masklab.spec import Spec

INSTALL_HINT = "pip install 'masklab[search]' (or pip install optuna)"


def require_optuna():
    try:
        import optuna
    except ImportError:
        raise UsageError(f"masklab search needs Optuna; {INSTALL_HINT}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # masklab reports progress itself
    return optuna


def storage(url: str):
    """An SQLite storage that waits for other processes' writes instead of failing."""
    optuna = require_optuna()
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}})


def make_pruner(kind: str, startup: int):
    """The median pruner (from epoch 2, once `startup` trials have finished), or none.
    Optuna keeps no pruner in its database: every process that prunes builds the same one."""
    optuna = require_optuna()
    if kind == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=2)


@functools.lru_cache(maxsize=8)
def _study(url: str, name: str, pruner: str, startup: int):
    optuna = require_optuna()
    return optuna.load_study(study_name=name, storage=storage(url), pruner=make_pruner(pruner, startup))


class TrialEvents(Events):
    """Passes a run's events on, and after each epoch reports to its trial and stops the
    run (raises Pruned) when the pruner says so. The last epoch is never pruned."""

    def __init__(self, spec: Spec, inner: Events) -> None:
        self.inner, self.ref, self.epochs = inner, spec.trial, spec.train.epochs
        optuna = require_optuna()
        study = _study(self.ref["storage"], self.ref["study"], self.ref["pruner"], self.ref["startup"])
        self.trial = optuna.trial.Trial(study, self.ref["trial_id"])

    def started(self, rid: str, epochs: int, steps: int, start_epoch: int, runs: int = 1) -> None:
        self.inner.started(rid, epochs, steps, start_epoch, runs)

    def step(self, rid: str, epoch: int, step: int) -> None:
        self.inner.step(rid, epoch, step)

    def note(self, message: str, quiet_too: bool = True) -> None:
        self.inner.note(message, quiet_too)

    def epoch(self, rid: str, row: dict) -> None:
        self.inner.epoch(rid, row)
        value = row.get(self.ref["metric"])
        if value is None:
            return
        self.trial.report(float(value), row["epoch"])
        if row["epoch"] < self.epochs and self.trial.should_prune():
            raise Pruned(
                f"pruned by search {self.ref['study']} (trial {self.ref['number']}) after epoch {row['epoch']}: "
                f"{self.ref['metric']} {value:.4f} trails the trials before it"
            )
