"""A dataset as the three device-resident splits a run trains, validates and tests on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from masklab.data.batches import DeviceSplit
from masklab.data.dataset import Dataset, pixel_stats
from masklab.data.stratified import validation_split
from masklab.ops.word_pieces import Vocabulary


@dataclass
class TrainData:
    """The three splits on the device, plus what the model and fills need to know."""

    train: DeviceSplit
    val: DeviceSplit | None
    test: DeviceSplit
    classes: list[str]
    shape: tuple[int, int, int]
    mean: float
    std: float
    vocab: Vocabulary | None = None  # text: what the token ops need to know about the tokenizer


def build_data(dataset: Dataset, val_fraction: float, seed: int, device: torch.device) -> TrainData:
    tr, va = validation_split(dataset.train_y, val_fraction, seed)
    train_x = dataset.train_x[tr]
    mean, std = pixel_stats(train_x) if dataset.text is None else (0.0, 1.0)
    return TrainData(
        train=DeviceSplit(train_x, dataset.train_y[tr], tr, device),
        val=DeviceSplit(dataset.train_x[va], dataset.train_y[va], va, device) if len(va) else None,
        test=DeviceSplit(dataset.test_x, dataset.test_y, np.arange(len(dataset.test_y)), device),
        classes=dataset.classes,
        shape=dataset.shape,
        mean=mean,
        std=std,
        vocab=None if dataset.text is None else vocabulary(dataset.text, device),
    )


def vocabulary(info, device: torch.device) -> Vocabulary:
    """A tokenizer's vocabulary facts (data.tokenize.Tokenized) as tensors on the device."""
    return Vocabulary(
        size=info.vocab_size,
        continuation=torch.from_numpy(info.continuation).to(device),
        counts=torch.from_numpy(info.counts).to(device, torch.float32),
    )
