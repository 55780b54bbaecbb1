"""The training loop for a seed group trained as one batched model (`train.seed_batch`).

Each seed keeps everything a separate run has: its initialisation, its validation
split and normalisation, its keyed shuffle and its keyed ops (the same OpPipeline and
the same dataset indices as a separate run, so the masks are bit-identical), and its
own run folder with metrics.jsonl and a checkpoint in the single-run format after every
epoch. Only the arithmetic is shared: per step the seeds' batches are stacked to
(S, B, C, H, W) and go through `Stacked` (grouped convolutions, batched matmuls); the
loss is the sum of the seeds' mean losses, so each seed gets its own gradient.

A seed's `train_seconds` and `seconds` are its share of the group's time (the group's
time divided by the seeds), so summed over runs they give the compute really spent.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from masklab.data.batches import epoch_shuffle_seed
from masklab.data.splits import TrainData
from masklab.errors import Interrupted, TrainingFailed
from masklab.evaluation.metrics import autocast
from masklab.models.stacked import Stacked
from masklab.ops.pipeline import OpPipeline
from masklab.spec import Spec
from masklab.store.files import DamagedFile
from masklab.store.runs import Run
from masklab.train import Reporter, _epoch_row, lr_factor, make_optimizer, read_checkpoint, write_checkpoint


class SeedFailed(TrainingFailed):
    """One seed of a group diverged; `seed` says which."""

    def __init__(self, message: str, seed: int) -> None:
        super().__init__(message)
        self.seed = seed


def seed_optimizer_state(state: dict, seed: int) -> dict:
    """One seed's slice of a stacked optimizer's state_dict: the single-run layout."""
    sliced = {
        i: {k: v[seed].clone() if v.dim() else v.clone() for k, v in s.items()} for i, s in state["state"].items()
    }
    return {"state": sliced, "param_groups": state["param_groups"]}


def stack_optimizer_states(states: list[dict]) -> dict:
    """The seeds' optimizer state_dicts as one for the stacked parameters (a resume)."""
    first = states[0]
    stacked = {
        i: {k: torch.stack([s["state"][i][k] for s in states]) if v.dim() else v for k, v in entry.items()}
        for i, entry in first["state"].items()
    }
    return {"state": stacked, "param_groups": first["param_groups"]}


def group_label(runs: list[Run], seeds: list[int]) -> str:
    group = runs[0].id.rsplit("-s", 1)[0]
    return f"{group}-s{','.join(map(str, seeds))} ({len(seeds)} seeds batched)"


def fit_group(
    spec: Spec,
    seeds: list[int],
    datas: list[TrainData],
    stacked: Stacked,
    pipelines: list[OpPipeline],
    runs: list[Run],
    device: torch.device,
    reporter: Reporter,
    stop_requested: Callable[[], bool],
    resume: bool = False,
) -> None:
    """Train the group for spec.train.epochs, writing every seed's metrics and checkpoint after every epoch."""
    t = spec.train
    optimizer = make_optimizer(stacked, spec, seed_axis=True)
    steps = datas[0].train.num_batches(t.batch_size, drop_last=True)
    start = load_group_checkpoints(runs, stacked, optimizer, device) if resume else 0
    for run in runs:
        run.truncate_metrics(start)
    reporter.start(group_label(runs, seeds), t.epochs, steps, start)
    try:
        for epoch in range(start, t.epochs):
            began = time.perf_counter()
            rows = train_group_epoch(
                spec, seeds, epoch, datas, stacked, optimizer, pipelines, device, reporter, stop_requested
            )
            if datas[0].val is not None:
                for row, (loss, acc) in zip(rows, validate_group(stacked, datas, t.eval_batch_size, t.precision)):
                    row["val_loss"], row["val_acc"] = loss, acc
            share = (time.perf_counter() - began) / len(seeds)
            state = optimizer.state_dict()
            for s, (run, row) in enumerate(zip(runs, rows)):
                row["seconds"] = round(share, 4)
                run.append_metrics(row)
                write_checkpoint(run, stacked.state_dict(s), seed_optimizer_state(state, s), epoch + 1)
                run.update_info(epochs_done=epoch + 1)
            reporter.epoch(mean_row(rows))
            if stop_requested():
                raise Interrupted(f"interrupted after epoch {epoch + 1}")
    finally:
        reporter.finish()


def load_group_checkpoints(runs: list[Run], stacked: Stacked, optimizer, device: torch.device) -> int:
    """Every seed's checkpoint into the stacked model and optimizer; they must be at the same epoch."""
    states = [read_checkpoint(run, device) for run in runs]
    done = {int(s["epochs_done"]) for s in states}
    if len(done) != 1:
        raise ValueError(f"a batched group must resume from one epoch, got {sorted(done)}")
    try:
        for s, state in enumerate(states):
            stacked.load_state_dict(s, state["model"])
        optimizer.load_state_dict(stack_optimizer_states([s["optimizer"] for s in states]))
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError):
        paths = ", ".join(str(run.path / "checkpoint.pt") for run in runs)
        raise DamagedFile(f"{paths}: a checkpoint does not fit this model; pass --force to start over") from None
    return done.pop()


def train_group_epoch(
    spec, seeds, epoch, datas, stacked: Stacked, optimizer, pipelines, device, reporter, stop_requested
) -> list[dict]:
    """One pass of every seed over its training split; the seeds' metrics rows (without val)."""
    t = spec.train
    n = len(seeds)
    stacked.train()
    began = time.perf_counter()
    steps = datas[0].train.num_batches(t.batch_size, drop_last=True)
    check_every = 1 if device.type == "cpu" else 25  # host syncs are free on CPU only
    plans = [p.plan(epoch, device=device) for p in pipelines]
    loss_sum = torch.zeros(n, device=device)
    correct = torch.zeros(n, dtype=torch.int64, device=device)
    op_sums = torch.zeros(n, len(pipelines[0]), device=device)
    first_bad = torch.full((n,), -1, dtype=torch.int64, device=device)
    seen = 0
    # the same batches, in the same order, as each seed's separate run
    streams = [
        d.train.batches(t.batch_size, epoch_shuffle_seed(seed, epoch), drop_last=True) for d, seed in zip(datas, seeds)
    ]
    for step, batches in enumerate(zip(*streams)):
        if pipelines[0].per_step:
            plans = [p.plan(epoch, step, device=device) for p in pipelines]
        lr = t.lr * lr_factor(epoch * steps + step, steps * t.epochs, t.schedule, t.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        outs = [p(x, idx, plan) for p, (x, _, idx), plan in zip(pipelines, batches, plans)]
        images = torch.stack([o.images for o in outs])  # (S, B, C, H, W)
        labels = torch.stack([y for _, y, _ in batches])  # (S, B)
        with autocast(device, t.precision):
            logits = stacked(images)  # (S, B, classes)
        per_sample = F.cross_entropy(
            logits.flatten(0, 1).float(), labels.flatten(), label_smoothing=t.label_smoothing, reduction="none"
        )
        losses = per_sample.view(n, -1).mean(1)  # (S,): each seed's mean loss, as its own run computes it
        optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        optimizer.step()
        losses = losses.detach()
        batch = labels.shape[1]
        loss_sum += losses * batch
        correct += (logits.detach().argmax(2) == labels).sum(1)
        op_sums += torch.stack([o.stats for o in outs]) * batch
        seen += batch
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(losses), step, first_bad)
        if (step + 1) % check_every == 0 or step + 1 == steps:
            _check_finite(first_bad, seeds, epoch, lr)
        if stop_requested():
            raise Interrupted(f"interrupted in epoch {epoch + 1}")
        reporter.step(epoch, step)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    share = (time.perf_counter() - began) / n
    return [_epoch_row(epoch, loss_sum[s], correct[s], seen, op_sums[s], pipelines[s], lr, share) for s in range(n)]


def _check_finite(first_bad: torch.Tensor, seeds: list[int], epoch: int, lr: float) -> None:
    bad = first_bad.tolist()
    for seed, step in zip(seeds, bad):
        if step >= 0:
            raise SeedFailed(
                f"loss became non-finite at epoch {epoch + 1}, step {step + 1} (lr {lr:.3g}); lower train.lr or check the data",
                seed,
            )


@torch.inference_mode()
def validate_group(
    stacked: Stacked, datas: list[TrainData], batch_size: int, precision: str
) -> list[tuple[float, float]]:
    """(val loss, val accuracy) per seed, each on its own validation split."""
    stacked.eval()
    n = len(datas)
    device = datas[0].val.device
    loss_sum = torch.zeros(n, device=device)
    correct = torch.zeros(n, dtype=torch.int64, device=device)
    for batches in zip(*(d.val.batches(batch_size) for d in datas)):
        images = torch.stack([x for x, _, _ in batches])
        labels = torch.stack([y for _, y, _ in batches])
        with autocast(device, precision):
            logits = stacked(images).float()
        loss_sum += F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view(n, -1).sum(1)
        correct += (logits.argmax(2) == labels).sum(1)
    count = max(1, len(datas[0].val))
    return [(float(loss) / count, int(hits) / count) for loss, hits in zip(loss_sum.tolist(), correct.tolist())]


def mean_row(rows: list[dict]) -> dict:
    """The seeds' rows averaged, for the progress line."""
    row = dict(rows[0])
    for key, value in rows[0].items():
        if isinstance(value, float) and key != "lr":
            row[key] = float(np.mean([r[key] for r in rows]))
    if "ops" in row:
        row["ops"] = [
            {"op": op["op"], "realized": float(np.mean([r["ops"][i]["realized"] for r in rows]))}
            for i, op in enumerate(rows[0]["ops"])
        ]
    return row
