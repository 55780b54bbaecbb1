"""How long a planned study will train on this machine, from runs it already finished.

`masklab train --dry-run` asks. The answer is measured, never assumed: finished runs in
the store that trained the same model (every `model` key), on the same dataset, with the
same batch size, objective and precision took so many seconds per epoch for so many
training samples; a planned run takes that rate times its own samples and epochs, plus
the time such a run spent outside its epochs (loading data, testing, figures). A planned
run with no such measured run gets no estimate, and the dry run says so. Reads run
folders only, never imports torch.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from masklab.spec import Spec
from masklab.store.runs import Run, RunStore


@dataclass(frozen=True)
class Rate:
    """Measured on finished runs of one kind: seconds per epoch per training sample, and
    seconds per run outside the epochs (medians), from `runs` runs on `device`."""

    per_sample_epoch: float
    overhead: float
    runs: int
    device: str
    epoch_seconds: float  # a measured epoch, as a person checks it
    samples: int  # the training samples of that epoch


def kind(spec: dict) -> tuple:
    """What decides a run's speed here, from a resolved spec's dict."""
    data, train = spec.get("data") or {}, spec.get("train") or {}
    model = tuple(sorted((k, repr(v)) for k, v in (spec.get("model") or {}).items()))
    return (data.get("dataset"), model, train.get("batch_size"), train.get("objective"), train.get("precision"))


def training_samples(run: Run) -> int | None:
    """The samples one epoch of a finished run trained on (its split less validation)."""
    n_train, n_val = run.info.get("data", {}).get("n_train"), run.info.get("n_val") or 0
    return n_train - n_val if isinstance(n_train, int) and n_train > n_val else None


def measured_rates(store: RunStore) -> tuple[dict[tuple, Rate], dict[str, int]]:
    """Rates by kind from the store's finished runs, and each dataset's full training split
    (from runs without data.train_limit)."""
    samples: dict[tuple, list[tuple[float, float, str, float, int]]] = {}
    full: dict[str, int] = {}
    for run in store.all():
        if run.status != "done" or not isinstance(run.spec, dict):
            continue
        data = run.spec.get("data") or {}
        n_train = run.info.get("data", {}).get("n_train")
        if data.get("train_limit") is None and isinstance(n_train, int):
            full[data.get("dataset")] = n_train
        epochs = [r["seconds"] for r in run.metrics() if isinstance(r.get("seconds"), (int, float))]
        n = training_samples(run)
        if not epochs or not n:
            continue
        epoch = statistics.median(epochs)
        outside = max(0.0, float(run.info.get("duration_s") or 0.0) - sum(epochs))
        samples.setdefault(kind(run.spec), []).append((epoch / n, outside, str(run.info.get("device")), epoch, n))
    rates = {}
    for key, found in samples.items():
        middle = sorted(found)[len(found) // 2]
        rates[key] = Rate(
            statistics.median(f[0] for f in found),
            statistics.median(f[1] for f in found),
            len(found),
            ", ".join(sorted({f[2] for f in found})),
            middle[3],
            middle[4],
        )
    return rates, full


def planned_samples(spec: Spec, full: dict[str, int]) -> float | None:
    """Training samples per epoch of a planned run, or None when no run here has told
    this dataset's size."""
    whole = full.get(spec.data.dataset)
    limit = spec.data.train_limit
    n = min(limit, whole) if limit and whole else (limit or whole)
    return n * (1 - spec.data.val_fraction) if n else None


def seconds(spec: Spec, epochs: int, rates: dict[tuple, Rate], full: dict[str, int]) -> tuple[float, Rate] | None:
    """How long `epochs` epochs of a planned run take here, and the rate that says so."""
    rate = rates.get(kind(spec.to_dict()))
    n = planned_samples(spec, full)
    if rate is None or n is None:
        return None
    return rate.per_sample_epoch * n * epochs + rate.overhead, rate


def why_not(spec: Spec, rates: dict[tuple, Rate], full: dict[str, int]) -> str:
    """Why a planned run has no estimate: what the store lacks."""
    if kind(spec.to_dict()) not in rates:
        return (
            f"no finished run here trained this model on {spec.data.dataset} with batch size "
            f"{spec.train.batch_size}, objective {spec.train.objective} and precision {spec.train.precision}"
        )
    return f"no finished run here trained on all of {spec.data.dataset} (no data.train_limit), so its size is not known"
