"""A small convolutional net built for time-to-accuracy on 28x28 images.

`depth` conv-norm-ReLU stages: the first two have stride 2 (28 -> 14 -> 7), later ones
keep the size; widths w, 2w, 2w, ...; then a flattening MLP head. Choices measured on a
2-core CPU (bench/README.md): strided convolutions instead of full-resolution stages
with max pooling (3x less time per epoch at equal accuracy after two epochs),
GroupNorm(1, C) instead of BatchNorm (BatchNorm's batch-wise reductions made the step
1.9x slower), channels_last memory, and a flattening head instead of global pooling.
"""

from __future__ import annotations

import torch
from torch import nn


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(1, channels)
    return nn.Identity()


def conv_block(c_in: int, c_out: int, stride: int, norm: str) -> nn.Sequential:
    conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=norm == "none")
    return nn.Sequential(conv, norm_layer(norm, c_out), nn.ReLU(inplace=True))


class CNN(nn.Module):
    def __init__(
        self,
        shape: tuple[int, int, int],
        num_classes: int,
        width: int,
        depth: int,
        hidden: int,
        norm: str,
        dropout: float,
        standardize: nn.Module,
    ) -> None:
        super().__init__()
        channels, h, w = shape
        self.standardize = standardize
        layers: list[nn.Module] = []
        c_in = channels
        for stage in range(depth):
            stride = 2 if stage < 2 and min(h, w) >= 4 else 1
            c_out = width if stage == 0 else 2 * width
            layers.append(conv_block(c_in, c_out, stride, norm))
            if stride == 2:  # 3x3, padding 1, stride 2: ceil(n / 2)
                h, w = (h + 1) // 2, (w + 1) // 2
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * h * w, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.standardize(x).contiguous(memory_format=torch.channels_last)  # (B, C, H, W)
        return self.head(self.features(x))  # (B, classes)


def build(spec, shape: tuple[int, int, int], num_classes: int, standardize: nn.Module, objective: str) -> CNN:
    return CNN(shape, num_classes, spec.width, spec.depth, spec.hidden, spec.norm, spec.dropout, standardize)
