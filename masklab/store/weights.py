"""Weights in and out of a run folder: plain state dicts of tensors, nothing else.

Loading goes through `torch.load(weights_only=True)`, and the result is checked to be
the structure masklab writes. Anything else (a pickle of other Python objects, a
truncated file, a list, a state dict for another model) is a DamagedFile naming the
file; the message never suggests loading the file unsafely.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from masklab.store import files
from masklab.store.files import DamagedFile


def to_bytes(obj: Any) -> bytes:
    """What torch.save writes, in memory: the store then writes it atomically."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _load(path: Path, device: torch.device | str) -> Any:
    try:
        with os.fdopen(files.open_regular(path, str(path)), "rb") as fh:  # never through a link or a FIFO
            return torch.load(fh, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise DamagedFile(f"{path}: missing") from None
    except pickle.UnpicklingError as exc:
        if "global" in str(exc).lower():
            raise DamagedFile(
                f"{path}: holds Python objects, not only tensors; masklab loads only the weights it wrote. Train the run again (--force)"
            ) from None
        raise DamagedFile(f"{path}: not a PyTorch weights file masklab wrote (damaged or foreign)") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        raise DamagedFile(f"{path}: not a readable PyTorch weights file (truncated or foreign)") from None


def _tensors(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


def load_state(path: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """A model's state dict (name -> tensor) from model.pt."""
    state = _load(path, device)
    if not _tensors(state):
        raise DamagedFile(f"{path}: not a state dict of tensors (it holds {type(state).__name__}); train the run again")
    return state


def load_checkpoint_state(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A checkpoint: epochs_done, model and optimizer state dicts, RNG state."""
    state = _load(path, device)
    ok = (
        isinstance(state, dict)
        and type(state.get("epochs_done")) is int
        and state["epochs_done"] >= 0
        and _tensors(state.get("model"))
        and isinstance(state.get("optimizer"), dict)
        and isinstance(state.get("rng"), torch.Tensor)
    )
    if not ok:
        raise DamagedFile(f"{path}: not a masklab checkpoint; pass --force to train the run from the start")
    return state


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load a state dict into a model; a mismatch names the file, not a torch traceback."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        first = (missing or unexpected or shapes)[0]
        raise DamagedFile(
            f"{path}: its tensors do not match the run's model ({len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(shapes)} of another shape, e.g. {first}); the file was not written for this run"
        )
    model.load_state_dict(state)
