"""Exporters copy run folders outward, into the trackers people already use. The run
folder stays the source of truth: an exporter only reads it (and records where it was
exported in run.json), and exporting the same folder again creates nothing new.

    mlflow[:URI]        an MLflow tracking store (default sqlite:///mlflow.db here)
    tensorboard[:DIR]   TensorBoard event files under DIR/<run id>/ (default ./tensorboard)

Both trackers are optional extras; naming one that is not installed is a one-line
error with the install command, raised before any work starts, as is a store that
cannot be opened (mlflow_uri.py). A store that fails while runs are written to it (a
full disk, a server gone) raises StoreFailed: the caller stops writing to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from masklab.errors import MasklabError, RunError, UsageError

INSTALL = {"mlflow": "pip install 'masklab[mlflow]'", "tensorboard": "pip install 'masklab[tensorboard]'"}
DEFAULTS = {"mlflow": "sqlite:///mlflow.db", "tensorboard": "tensorboard"}


@dataclass
class Synced:
    """What one export of one run did: `created`, `updated` or `up to date`, how many
    items (params, metric points, tags, files) it wrote, and where the run now lives."""

    action: str
    written: int = 0
    location: dict[str, Any] = field(default_factory=dict)


class StoreFailed(RunError):
    """The tracker's store itself failed (cannot be written or reached), not one run's data."""


def first_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message (SQLAlchemy
    and MLflow add SQL, links and causes on the lines after)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class Exporter(Protocol):
    kind: str
    target: str

    def sync(self, run, live: bool = False) -> Synced: ...

    def close(self) -> None: ...


def parse_target(text: str, option: str) -> tuple[str, str]:
    """`mlflow`, `mlflow:sqlite:///x.db`, `tensorboard:logs` -> (kind, URI or folder)."""
    kind, _, where = text.partition(":")
    if kind not in INSTALL:
        raise UsageError(f"{option} {text}: unknown tracker; use mlflow[:URI] or tensorboard[:DIR]")
    return kind, where or DEFAULTS[kind]


def open_exporter(text: str, option: str) -> Exporter:
    """The exporter a --track/--to value names, checked: its package is installed and its
    store opens. Raises UsageError (with the install command) or RunError."""
    kind, where = parse_target(text, option)
    try:
        if kind == "mlflow":
            from masklab.store.exporters.mlflow import MlflowExporter

            return MlflowExporter(where)
        from masklab.store.exporters.tensorboard import TensorBoardExporter

        return TensorBoardExporter(where)
    except ImportError as exc:
        missing = exc.name or kind
        raise UsageError(f"{option} {kind}: needs {missing}, which is not installed: {INSTALL[kind]}") from None
    except MasklabError as exc:  # the store named cannot work: say which option named it
        raise type(exc)(f"{option} {kind}:{where}: {exc}") from None


def metric_name(key: str) -> str:
    """A masklab metric name in the characters trackers accept: `acc@gaussian(sigma=0.2)`
    -> `acc/gaussian sigma 0.2`."""
    text = key.replace("@", "/").replace("(", " ").replace(")", "").replace("=", " ").replace(",", " ")
    text = re.sub(r"[^\w.\- /]", "_", text)
    return re.sub(r"/+", "/", text).strip("/ ")


def param_name(path: str) -> str:
    """A spec key path as a tracker parameter name: `train_ops[0].rate` -> `train_ops.0.rate`."""
    return metric_name(re.sub(r"\[(\d+)\]", r".\1", path))
