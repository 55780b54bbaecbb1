"""A multi-layer perceptron on flattened pixels."""

from __future__ import annotations

import math

import torch
from torch import nn


class MLP(nn.Module):
    def __init__(
        self, shape: tuple[int, int, int], num_classes: int, hidden: list[int], dropout: float, standardize: nn.Module
    ) -> None:
        super().__init__()
        self.standardize = standardize
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.standardize(x)))  # (B, classes)


def build(spec, shape: tuple[int, int, int], num_classes: int, standardize: nn.Module, objective: str) -> MLP:
    return MLP(shape, num_classes, spec.hidden, spec.dropout, standardize)
