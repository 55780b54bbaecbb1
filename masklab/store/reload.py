"""Reloading a finished run: its spec, its data splits as in training, and its model.

This is the read side of the store for code that needs the trained model (evaluation);
it sits above `data` and `models` and below everything that evaluates, so evaluation
never reaches up into training.
"""

from __future__ import annotations

import torch

from masklab import spec as spec_mod
from masklab.data.checks import load_checked_data
from masklab.data.splits import TrainData, build_data
from masklab.errors import RunError
from masklab.models.build import build_model
from masklab.spec import Spec
from masklab.store import weights
from masklab.store.runs import Run


def load_trained(run: Run, device: torch.device) -> tuple[Spec, TrainData, torch.nn.Module, list[str]]:
    """A finished run's spec, data splits (as in training) and model with its weights.
    The last item lists warnings, e.g. data that changed since training."""
    if not (run.path / "model.pt").is_file():
        raise RunError(f"run {run.id} has no model.pt (status {run.status}); only finished runs can be evaluated")
    spec = spec_mod.spec_from_dict(run.spec)
    dataset = load_checked_data(spec)
    warnings = []
    trained_on = run.info.get("data", {}).get("fingerprint")
    if trained_on and trained_on != dataset.fingerprint():
        warnings.append(
            f"{run.id}: the data differs from what it was trained on (fingerprint {dataset.fingerprint()} != {trained_on})"
        )
    data = build_data(dataset, spec.data.val_fraction, int(run.info.get("seed", 0)), device)
    model = build_model(spec.model, data.shape, len(data.classes), data.mean, data.std, spec.train.objective).to(device)
    weights.load_into(model, weights.load_state(run.path / "model.pt", device), run.path / "model.pt")
    model.eval()
    return spec, data, model, warnings
