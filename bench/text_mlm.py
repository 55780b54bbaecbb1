"""Masked-language-modelling batches per second: masklab vs the per-sample collator
recipe, in one run, same tokenized texts and machine. Last line: `ratio: X`.

    python bench/text_mlm.py [--quick] [--device cpu|cuda] [--batch-size 128]

Both sides start from the same token ids (tokenized once, as both recipes do) and
produce what an MLM step consumes: input ids with 15% of the real pieces chosen and
BERT's 80/10/10 written, and the chosen positions (the loss's labels).

- masklab: the ids (N, max_len) on the device, one randperm per epoch, one gather per
  batch, then `tokens(rate=0.15, action=mlm)` as keyed tensor ops (the path `masklab
  train` takes).
- peer: a per-sample `Dataset` returning each text's list of ids behind a `DataLoader`
  (batch 64, 0 and 2 workers: the faster counts) whose collate function pads the batch
  and masks it with `torch.bernoulli` the way common MLM collators do (a probability
  matrix with special tokens zeroed, then Bernoulli draws for [MASK] and for random).

Each side is the median of 3 repeats. Texts: fortunes when installed, else kjv-mini.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from masklab.data.batches import DeviceSplit, epoch_shuffle_seed  # noqa: E402
from masklab.data.registry import load_corpus  # noqa: E402
from masklab.data.splits import vocabulary  # noqa: E402
from masklab.data.tokenize import tokenize_corpus  # noqa: E402
from masklab.ops import registry  # noqa: E402
from masklab.ops.pipeline import TextOpPipeline  # noqa: E402
from masklab.vocabulary import CLS_ID, MASK_ID, N_SPECIAL, PAD_ID, SEP_ID  # noqa: E402

MAX_LEN, RATE = 64, 0.15


def load_ids() -> tuple[str, np.ndarray, object]:
    try:
        corpus = load_corpus("fortunes")
    except Exception:
        corpus = load_corpus("kjv-mini")
    ids, _, info = tokenize_corpus(corpus, 4000, True, MAX_LEN)
    return corpus.name, ids, info


def masklab_rate(ids: np.ndarray, info, batch_size: int, samples: int, device: torch.device) -> float:
    split = DeviceSplit(ids, np.zeros(len(ids), dtype=np.int64), np.arange(len(ids)), device)
    op = registry.validate({"op": "tokens", "rate": RATE, "action": "mlm"}, "bench")
    pipeline = TextOpPipeline([op], 0, vocabulary(info, device))

    def epoch(e: int, limit: int) -> int:
        plan = pipeline.epoch_keys(e, device=device)
        seen = 0
        for x, _, idx in split.batches(batch_size, epoch_shuffle_seed(0, e), drop_last=True):
            out = pipeline(x, idx, plan)
            out.token_mask.sum()  # what the loss reads
            seen += len(idx)
            if seen >= limit:
                break
        if device.type == "cuda":
            torch.cuda.synchronize()
        return seen

    epoch(0, 10 * batch_size)  # warm-up
    began, seen, e = time.perf_counter(), 0, 1
    while seen < samples:
        seen += epoch(e, samples - seen)
        e += 1
    return seen / (time.perf_counter() - began)


class TokenListDataset(Dataset):
    """One text's ids per item, without padding, as a tokenized dataset hands them out."""

    def __init__(self, ids: np.ndarray) -> None:
        self.items = [row[row != PAD_ID].tolist() for row in ids]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> list[int]:
        return self.items[i]


def make_collate(vocab_size: int):
    def collate(items: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        longest = max(len(x) for x in items)
        inputs = torch.full((len(items), longest), PAD_ID, dtype=torch.long)
        for row, x in enumerate(items):
            inputs[row, : len(x)] = torch.tensor(x)
        labels = inputs.clone()
        special = (inputs == PAD_ID) | (inputs == CLS_ID) | (inputs == SEP_ID)
        probability = torch.full(inputs.shape, RATE).masked_fill_(special, 0.0)
        masked = torch.bernoulli(probability).bool()
        labels[~masked] = -100
        replaced = torch.bernoulli(torch.full(inputs.shape, 0.8)).bool() & masked
        inputs[replaced] = MASK_ID
        random = torch.bernoulli(torch.full(inputs.shape, 0.5)).bool() & masked & ~replaced
        inputs[random] = torch.randint(N_SPECIAL, vocab_size, inputs.shape)[random]
        return inputs, labels

    return collate


def peer_rate(ids: np.ndarray, vocab_size: int, samples: int, workers: int) -> float:
    loader = DataLoader(
        TokenListDataset(ids),
        batch_size=64,
        shuffle=True,
        num_workers=workers,
        collate_fn=make_collate(vocab_size),
        persistent_workers=workers > 0,
    )
    began, seen = time.perf_counter(), 0
    while seen < samples:
        for inputs, labels in loader:
            (labels != -100).sum()
            seen += len(inputs)
            if seen >= samples:
                break
    return seen / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples; about a minute on a 2-core CPU")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    device = torch.device(args.device)
    name, ids, info = load_ids()
    peer_samples = 5_000 if args.quick else 20_000
    ours_samples = 50_000 if args.quick else 200_000
    print(
        f"data: {name} train {ids.shape} (vocab {info.vocab_size}); device {device}; torch {torch.__version__}; "
        f"threads {torch.get_num_threads()}; cores {os.cpu_count()}"
    )
    peers = {w: statistics.median(peer_rate(ids, info.vocab_size, peer_samples, w) for _ in range(3)) for w in (0, 2)}
    for w, r in peers.items():
        print(f"peer per-sample Dataset + bernoulli collate, batch 64, {w} workers: {r:12,.0f} samples/s")
    ours = statistics.median(masklab_rate(ids, info, args.batch_size, ours_samples, device) for _ in range(3))
    print(f"masklab keyed tokens(mlm) op, batch {args.batch_size}:                {ours:12,.0f} samples/s")
    print(f"ratio: {ours / max(peers.values()):.1f}")


if __name__ == "__main__":
    main()
