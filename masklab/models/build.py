"""Building a spec's network, and the pieces every network shares: `Standardize` first, so
the ops run on [0, 1] images and the model's input normalisation comes after them;
loading matching weights (init_from) and freezing all but the head."""

from __future__ import annotations

import importlib

import torch
from torch import nn


class Standardize(nn.Module):
    """(x - mean) / std with the training split's statistics, stored with the weights."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(float(mean)))
        self.register_buffer("std", torch.tensor(float(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def build_model(
    model_spec, shape: tuple[int, int, int], num_classes: int, mean: float, std: float, objective: str = "classify"
) -> nn.Module:
    """The network a spec's `model` section describes (the table in models/registry.py
    names its builder), for images of `shape` (C, H, W) or token ids of `shape`
    (max_len,). A ViT or bert for masked modeling also gets its decoder (the ViT's light
    pixel decoder, bert's masked-token head)."""
    module, _, function = model_spec.builder.rpartition(".")
    build = getattr(importlib.import_module(f"masklab.models.{module}"), function)
    return build(model_spec, shape, num_classes, Standardize(mean, std), objective)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_matching(
    model: nn.Module, state: dict[str, torch.Tensor], skip: tuple[str, ...] = ("head.", "decoder.")
) -> list[str]:
    """Copy the tensors of `state` whose names and shapes match into `model`, except the
    task-specific parts (`skip` prefixes). Returns the names copied."""
    own = model.state_dict()
    loaded = [k for k, v in state.items() if not k.startswith(skip) and k in own and own[k].shape == v.shape]
    model.load_state_dict({k: state[k] for k in loaded}, strict=False)
    return loaded


def freeze_all_but_head(model: nn.Module) -> int:
    """Train only the head (a linear probe); returns the number of frozen tensors."""
    frozen = 0
    for name, p in model.named_parameters():
        if not name.startswith("head."):
            p.requires_grad_(False)
            frozen += 1
    return frozen
