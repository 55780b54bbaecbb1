"""A small, fast convolutional net: three conv-BN-ReLU stages with max pooling, then
global max pooling and a linear head. Built for time-to-accuracy on 28x28 images."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class CNN(nn.Module):
    def __init__(
        self, shape: tuple[int, int, int], num_classes: int, width: int, dropout: float, standardize: nn.Module
    ) -> None:
        super().__init__()
        channels, height, _ = shape
        self.standardize = standardize
        widths = [width, 2 * width, 4 * width]
        layers: list[nn.Module] = []
        c_in, side = channels, height
        for w in widths:
            layers.append(conv_bn(c_in, w))
            if side >= 4:  # pool while the map is large enough (28 -> 14 -> 7 -> 3; 8 -> 4 -> 2)
                layers.append(nn.MaxPool2d(2))
                side //= 2
            c_in = w
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(self.standardize(x))  # (B, 4w, h, w)
        h = torch.amax(h, dim=(2, 3))  # (B, 4w)
        return self.head(self.dropout(h))
