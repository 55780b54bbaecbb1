"""The device-resident batch iterator.

A split is moved to the device once, as uint8 (or float32 for pre-corrupted .npz data).
Each epoch is one `randperm`; a batch is one gather of images, labels and dataset
indices, and one conversion to float in [0, 1]. No per-sample Dataset, no workers.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from masklab.ops.keyed import mix


class DeviceSplit:
    """Images (N, C, H, W), labels (N,) and dataset indices (N,) held on one device."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, index: np.ndarray, device: torch.device) -> None:
        self.x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
        self.y = torch.from_numpy(np.ascontiguousarray(labels)).to(device)
        self.index = torch.from_numpy(np.ascontiguousarray(index, dtype=np.int64)).to(device)
        self.device = device

    def __len__(self) -> int:
        return len(self.y)

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        n = len(self)
        return n // batch_size if drop_last and n >= batch_size else -(-n // batch_size)

    def batches(
        self, batch_size: int, shuffle_seed: int | None = None, drop_last: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(images float (B, C, H, W) in [0, 1], labels (B,), dataset indices (B,)).

        With a shuffle seed the order is a randperm from a CPU generator keyed by it,
        so the order is the same on every device and after a resume."""
        n = len(self)
        if shuffle_seed is None:
            order = None
        else:
            gen = torch.Generator().manual_seed(shuffle_seed & 0x7FFFFFFFFFFFFFFF)
            order = torch.randperm(n, generator=gen).to(self.device, non_blocking=True)
        for b in range(self.num_batches(batch_size, drop_last)):
            if order is None:
                sl = slice(b * batch_size, min(n, (b + 1) * batch_size))
                yield to_float(self.x[sl]), self.y[sl], self.index[sl]
            else:
                idx = order[b * batch_size : (b + 1) * batch_size]
                yield (
                    to_float(self.x.index_select(0, idx)),
                    self.y.index_select(0, idx),
                    self.index.index_select(0, idx),
                )


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images to float32 in [0, 1]; float images pass through, and so do token ids (int64)."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32).mul_(1.0 / 255.0)
    if x.dtype == torch.int64:
        return x
    return x.to(torch.float32)


def epoch_shuffle_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of one epoch of one run: a pure function of (seed, epoch)."""
    return mix(seed, epoch, 0x5AFF1E) & 0x7FFFFFFF
