"""masklab's exceptions. Library code raises them; only `masklab.cli` turns them into exit codes.

| exit | meaning |
|------|---------|
| 0    | ok |
| 1    | the work failed: missing or corrupt data, diverged training, runs not found |
| 2    | bad usage or an invalid spec |
| 3    | a `--fail-if` gate tripped, or could not be evaluated |
| 130  | interrupted (Ctrl-C, SIGTERM) |
"""

from __future__ import annotations


class MasklabError(Exception):
    """Base class: a one-line message for the user and the exit code it maps to."""

    exit_code = 1


class SpecError(MasklabError):
    """The spec (or a --set override, or an op given on the command line) is invalid."""

    exit_code = 2


class UsageError(MasklabError):
    """The command line asks for something that cannot be done as asked."""

    exit_code = 2


class DataError(MasklabError):
    """A dataset is missing, truncated, or not what its name says."""


class RunError(MasklabError):
    """A run cannot be found, created, resumed or read."""


class TrainingFailed(MasklabError):
    """Training stopped because it went wrong (a non-finite loss)."""


class SeedFailed(TrainingFailed):
    """One seed of a group trained together diverged; `seed` says which."""

    def __init__(self, message: str, seed: int) -> None:
        super().__init__(message)
        self.seed = seed


class GateTripped(MasklabError):
    """A `compare --fail-if` condition held, or could not be evaluated."""

    exit_code = 3


class Pruned(MasklabError):
    """A search's pruner stopped a trial's run after an epoch (its validation curve lagged)."""


class Interrupted(MasklabError):
    """The user interrupted the work (SIGINT or SIGTERM)."""

    exit_code = 130
