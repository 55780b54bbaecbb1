"""Models: a closed registry of small networks. Every model starts with `Standardize`,
so the ops run on [0, 1] images and the model's input normalisation comes after them."""

from __future__ import annotations

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
    """The network a spec's `model` section describes, for images of `shape` (C, H, W)
    or token ids of `shape` (max_len,). A ViT or bert for masked modeling also gets its
    decoder (the ViT's light pixel decoder, bert's masked-token head)."""
    if model_spec.arch == "mlp":
        from masklab.models.mlp import MLP

        return MLP(shape, num_classes, model_spec.hidden, model_spec.dropout, Standardize(mean, std))
    if model_spec.arch == "cnn":
        from masklab.models.cnn import CNN

        m = model_spec
        return CNN(shape, num_classes, m.width, m.depth, m.hidden, m.norm, m.dropout, Standardize(mean, std))
    if model_spec.arch == "bert":
        from masklab.models.bert import TextEncoder

        return TextEncoder(shape[0], num_classes, model_spec, decoder=objective == "masked-modeling")
    from masklab.models.vit import ViT

    return ViT(shape, num_classes, model_spec, Standardize(mean, std), decoder=objective == "masked-modeling")


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
