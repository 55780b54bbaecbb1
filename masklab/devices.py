"""Resolving the device a spec asks for, once, before any work starts."""

from __future__ import annotations

import torch

from masklab.errors import SpecError, UsageError


def resolve_device(name: str) -> torch.device:
    """auto: cuda, then mps, then cpu. An explicit device that is absent is a usage error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"train.device: {name} asked for, but no CUDA device is available; use auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("train.device: mps asked for, but MPS is not available; use auto or cpu")
    return torch.device(name)


def use_compile(setting: bool | str, device: torch.device) -> bool:
    """true compiles (CUDA only); auto leaves it off: on an H100 compiling cost more than it
    saved for masklab's shipped recipes (bench/README.md). On CPU torch's inductor
    corrupts memory on masklab's hash kernels (bench/inductor_cpu_repro.py), so
    compile: true is refused there."""
    if setting is True and device.type != "cuda":
        raise SpecError(
            f"train.compile: true is not supported on {device.type} (torch's CPU compiler corrupts memory on "
            "masklab's hash kernels; see bench/inductor_cpu_repro.py); use auto or false"
        )
    return setting is True
