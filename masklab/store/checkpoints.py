"""A run's checkpoint.pt: what training needs to continue bit-identically after an epoch.

The file holds the epochs done, the model and optimizer state dicts, torch's RNG state
and, for ops that follow the model, their adaptive state. A seed of a batched group
writes the same layout (its slice of the stacked tensors), so every run resumes alone
or in a group alike. Reading never changes the process; `restore_rng` does, explicitly.
"""

from __future__ import annotations

from typing import Any

import torch

from masklab.store import weights
from masklab.store.files import DamagedFile
from masklab.store.runs import Run

FILE = "checkpoint.pt"
_LOAD_ERRORS = (ValueError, KeyError, TypeError, RuntimeError, IndexError)


def write(run: Run, model_state: dict, optimizer_state: dict, epochs_done: int, extra: dict | None = None) -> None:
    """checkpoint.pt, replaced atomically (never through a planted link), with the RNG state now."""
    state = {
        "epochs_done": epochs_done,
        "model": model_state,
        "optimizer": optimizer_state,
        "rng": torch.get_rng_state(),
        **(extra or {}),
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    run.write_bytes(FILE, weights.to_bytes(state))


def read(run: Run, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A run's checkpoint, checked to be one (else a DamagedFile naming it)."""
    return weights.load_checkpoint_state(run.path / FILE, device)


def epochs_done(run: Run) -> int:
    """Epochs completed in a run's checkpoint (the truth a resume starts from)."""
    return int(read(run)["epochs_done"])


def restore_rng(run: Run, state: dict) -> None:
    """Set torch's generators to those the checkpoint saved."""
    try:
        torch.set_rng_state(state["rng"].cpu())
    except _LOAD_ERRORS:
        raise DamagedFile(
            f"{run.path / FILE}: its RNG state does not fit this run; pass --force to start over"
        ) from None
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])


def resume_into(run: Run, model: torch.nn.Module, optimizer, device: torch.device, adapt=None) -> int:
    """Restore model, optimizer, RNG and adaptive state (ops/adaptive.py Adaptation);
    returns the number of completed epochs."""
    path = run.path / FILE
    state = read(run, device)
    restore_rng(run, state)
    weights.load_into(model, state["model"], path)
    try:
        optimizer.load_state_dict(state["optimizer"])
    except _LOAD_ERRORS:
        raise DamagedFile(f"{path}: its optimizer state does not fit this run; pass --force to start over") from None
    if adapt is not None:
        if "adaptive" not in state:
            raise DamagedFile(
                f"{path}: it holds no adaptive state, which this run's ops need; pass --force to start over"
            )
        adapt.load_state_dict(state["adaptive"])
    return int(state["epochs_done"])


def resume_stacked_into(runs: list[Run], stacked, optimizer, device: torch.device) -> int:
    """Every seed's checkpoint into a stacked group's tensors and optimizer; the seeds must
    be at the same epoch. The RNG continues from the last seed's (as the group saved it)."""
    states = [read(run, device) for run in runs]
    done = {int(s["epochs_done"]) for s in states}
    if len(done) != 1:
        raise ValueError(f"a batched group must resume from one epoch, got {sorted(done)}")
    for run, state in zip(runs, states):
        restore_rng(run, state)
    try:
        for s, state in enumerate(states):
            stacked.load_state_dict(s, state["model"])
        optimizer.load_state_dict(stack([s["optimizer"] for s in states]))
    except _LOAD_ERRORS:
        paths = ", ".join(str(run.path / FILE) for run in runs)
        raise DamagedFile(f"{paths}: a checkpoint does not fit this model; pass --force to start over") from None
    return done.pop()


def seed_slice(state: dict, seed: int) -> dict:
    """One seed's slice of a stacked optimizer's state_dict: the single-run layout."""
    sliced = {
        i: {k: v[seed].clone() if v.dim() else v.clone() for k, v in s.items()} for i, s in state["state"].items()
    }
    return {"state": sliced, "param_groups": state["param_groups"]}


def stack(states: list[dict]) -> dict:
    """The seeds' optimizer state_dicts as one for the stacked parameters (a resume)."""
    first = states[0]
    stacked = {
        i: {k: torch.stack([s["state"][i][k] for s in states]) if v.dim() else v for k, v in entry.items()}
        for i, entry in first["state"].items()
    }
    return {"state": stacked, "param_groups": first["param_groups"]}
