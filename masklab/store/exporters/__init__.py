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

import importlib
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from masklab.errors import MasklabError, RunError, UsageError

# The table: tracker kind -> (its module here, its class, the install command, the default target).
EXPORTERS = {
    "mlflow": ("mlflow", "MlflowExporter", "pip install 'masklab[mlflow]'", "sqlite:///mlflow.db"),
    "tensorboard": ("tensorboard", "TensorBoardExporter", "pip install 'masklab[tensorboard]'", "tensorboard"),
}
INSTALL = {kind: row[2] for kind, row in EXPORTERS.items()}
DEFAULTS = {kind: row[3] for kind, row in EXPORTERS.items()}


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
    module, cls = EXPORTERS[kind][:2]
    try:
        return getattr(importlib.import_module(f"masklab.store.exporters.{module}"), cls)(where)
    except ImportError as exc:
        missing = exc.name or kind
        raise UsageError(f"{option} {kind}: needs {missing}, which is not installed: {INSTALL[kind]}") from None
    except MasklabError as exc:  # the store named cannot work: say which option named it
        raise type(exc)(f"{option} {kind}:{where}: {exc}") from None


def export_run(run, exporter: Exporter, live: bool = False, record: bool = True, locked_by_us: bool = False) -> Synced:
    """Bring one tracker up to date with a run folder (`masklab export`, and `--track`
    while it trains), and note in run.json where the run went (its MLflow run id)."""
    synced = exporter.sync(run, live=live)
    if record and exporter.kind == "mlflow" and run.info.get("mlflow") != synced.location:
        record_location(run, "mlflow", synced.location, locked_by_us=locked_by_us)
    return synced


def record_location(run, kind: str, location: dict, locked_by_us: bool = False) -> None:
    """Note in run.json where the run was exported. While training, this process holds
    the run's lock already; afterwards the lock is taken for the write."""
    if locked_by_us:
        run.update_info(**{kind: location})
        return
    with run.lock():
        run.update_info(**{kind: location})


def metric_name(key: str) -> str:
    """A masklab metric name in the characters trackers accept: `acc@gaussian(sigma=0.2)`
    -> `acc/gaussian sigma 0.2`."""
    text = key.replace("@", "/").replace("(", " ").replace(")", "").replace("=", " ").replace(",", " ")
    text = re.sub(r"[^\w.\- /]", "_", text)
    return re.sub(r"/+", "/", text).strip("/ ")


def param_name(path: str) -> str:
    """A spec key path as a tracker parameter name: `train_ops[0].rate` -> `train_ops.0.rate`."""
    return metric_name(re.sub(r"\[(\d+)\]", r".\1", path))
