"""The peer recipes masklab is measured against: what a user writes with plain PyTorch.

- `PerSampleOps`: a per-sample torch `Dataset` that converts one image and draws the same
  ops as masklab (patch masking, Gaussian noise) in `__getitem__`, batched by a
  `DataLoader` -- the usual way masking augmentations are written.
- `ExamplesNet` + `examples_recipe`: the pytorch/examples MNIST recipe (conv 32, conv 64,
  max pool, fc 128; Adadelta lr 1.0, StepLR gamma 0.7, batch 64, per-sample ToTensor and
  Normalize), pointed at Fashion-MNIST.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset


class PerSampleOps(Dataset):
    """Image i -> float tensor, a fresh patch mask (rate of size x size patches), noise."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, rate: float, size: int, sigma: float) -> None:
        self.images, self.labels = images, labels
        self.rate, self.size, self.sigma = rate, size, sigma

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = torch.from_numpy(self.images[i]).float().div(255.0)  # (1, H, W)
        _, h, w = img.shape
        gh, gw = h // self.size, w // self.size
        n = gh * gw
        chosen = torch.rand(n).argsort()[: round(self.rate * n)]
        grid = torch.zeros(n, dtype=torch.bool)
        grid[chosen] = True
        mask = grid.view(gh, 1, gw, 1).expand(gh, self.size, gw, self.size).reshape(1, h, w)
        img = img.masked_fill(mask, 0.0)
        img = (img + self.sigma * torch.randn_like(img)).clamp(0.0, 1.0)
        return img, int(self.labels[i])


def per_sample_loader(images, labels, rate=0.25, size=4, sigma=0.1, batch_size=64, workers=0) -> DataLoader:
    return DataLoader(
        PerSampleOps(images, labels, rate, size, sigma), batch_size=batch_size, shuffle=True, num_workers=workers
    )


class ExamplesNet(nn.Module):
    """pytorch/examples mnist/main.py's Net."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = torch.flatten(self.dropout1(x), 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


class Normalized(Dataset):
    """ToTensor + Normalize((0.1307,), (0.3081,)), one image at a time."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        img = torch.from_numpy(self.images[i]).float().div(255.0)
        return (img - 0.1307) / 0.3081, int(self.labels[i])


def examples_recipe(seed: int = 1, device: torch.device | str = "cpu"):
    """(model, optimizer, scheduler) exactly as pytorch/examples sets them up."""
    torch.manual_seed(seed)
    model = ExamplesNet().to(device)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    return model, optimizer, scheduler


def examples_train_epoch(model, optimizer, loader, device: torch.device | str = "cpu") -> None:
    model.train()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = F.nll_loss(model(x), y)
        loss.backward()
        optimizer.step()


@torch.inference_mode()
def examples_test_accuracy(model, images: np.ndarray, labels: np.ndarray, device: torch.device | str = "cpu") -> float:
    model.eval()
    loader = DataLoader(Normalized(images, labels), batch_size=1000)
    correct = sum(int((model(x.to(device)).argmax(1).cpu() == y).sum()) for x, y in loader)
    return correct / len(labels)
