"""The training loop, written out in full: one loop for a group of S seeds (S = 1 alone).

Each seed keeps everything a run has: its initialisation, validation split and
normalisation, keyed shuffle and keyed ops, and its own run folder with metrics.jsonl
and a checkpoint after every epoch. One epoch: per step every seed's batch is one
gather and its ops; one optimiser step updates every seed (`train_step`); then each
seed is validated, logged and checkpointed. Everything random is a pure function of
(seed, epoch, step) or restored from the checkpoint, so a resumed run continues
bit-identically on CPU.

What S changes is only the arithmetic (`SeedGroup`): one seed trains its own network
(any model, compile, adaptive ops, masked modeling); S > 1 seeds of a cnn or mlp train
as one `Stacked` network (grouped convolutions, batched matmuls) whose loss is the sum
of the seeds' mean losses, so each seed gets its own gradient. Which specs may be
batched is one rule, `spec.seed_batch_unsupported`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from masklab import optimizers
from masklab.data.batches import epoch_shuffle_seed
from masklab.data.splits import TrainData
from masklab.errors import Interrupted, SeedFailed
from masklab.evaluation.metrics import autocast, classification_metrics, masked_modeling_metrics, predict
from masklab.events import Events
from masklab.models.stacked import Stacked
from masklab.ops.adaptive import Adaptation
from masklab.ops.pipeline import OpPipeline, TextOpPipeline
from masklab.spec import Spec
from masklab.store import checkpoints
from masklab.store.runs import Run


def lr_factor(step: int, total: int, schedule: str, warmup: float) -> float:
    """The learning-rate multiplier at a global step: onecycle (linear up, linear down to
    zero), cosine (linear warmup, cosine to zero) or constant."""
    if schedule == "constant":
        return 1.0
    up = max(1, round(warmup * total))
    if step < up:
        return (step + 1) / up
    p = (step - up) / max(1, total - up)
    if schedule == "onecycle":
        return max(0.0, 1.0 - p)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, p)))


def make_optimizer(model, spec: Spec, seed_axis: bool = False):
    """AdamW or Nesterov SGD; weight decay only on weights (not norms, biases, embeddings of size 1-D).
    masklab's own classes run torch's kernels without torch.optim's 1.1 s import of
    torch._dynamo (masklab/optimizers.py). With seed_axis, the parameters are a seed
    group's stacked tensors (S, ...)."""
    t = spec.train
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim - seed_axis >= 2]
    no_decay = [p for p in params if p.ndim - seed_axis < 2]
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if t.optimizer == "sgd":
        return optimizers.make("sgd", groups, t.lr, momentum=t.momentum, nesterov=t.momentum > 0)
    # fused: one kernel per step for all parameters (4.5 of 75 ms per step unfused on a 2-core CPU)
    return optimizers.make("adamw", groups, t.lr, betas=(0.9, 0.99))


def train_pipeline(spec: Spec, seed: int, data: TrainData, model: torch.nn.Module, compiled: bool) -> OpPipeline:
    """The spec's train_ops bound to a run's seed and its data: image shape and fill
    statistics, a ViT's patch tokens, or a text vocabulary."""
    steps = data.train.num_batches(spec.train.batch_size, drop_last=True)
    if data.vocab is not None:  # token ids: the text ops
        return TextOpPipeline(
            spec.train_ops,
            seed,
            data.vocab,
            heads=model.heads,
            epochs=spec.train.epochs,
            steps_per_epoch=steps,
            compile=compiled,
        )
    image_tokens = spec.model.transformer  # a ViT's patch tokens
    return OpPipeline(
        spec.train_ops,
        seed,
        data.shape,
        fill_mean=data.mean,
        fill_std=data.std,
        epochs=spec.train.epochs,
        steps_per_epoch=steps,
        token_grid=(model.tokens, model.heads) if image_tokens else None,
        compile=compiled,
        stat_samples=32,  # the logged noise magnitude is estimated on 32 images per batch
        mlm_pool=data.train.x if image_tokens else None,
    )


@dataclass
class Seed:
    """One seed of a group: its run folder, data, ops and network."""

    seed: int
    run: Run
    data: TrainData
    pipeline: OpPipeline
    model: torch.nn.Module


class SeedGroup:
    """The seeds trained together, and the arithmetic that depends on how many they are:
    one seed's own network (S = 1), or a `Stacked` network of S cnn/mlp copies."""

    def __init__(self, spec: Spec, seeds: list[Seed], device: torch.device) -> None:
        self.spec, self.seeds, self.device = spec, seeds, device
        self.stacked = Stacked([s.model for s in seeds]) if len(seeds) > 1 else None
        self.net = self.stacked or seeds[0].model
        self.optimizer = make_optimizer(self.net, spec, seed_axis=self.stacked is not None)
        first = seeds[0]
        examples = adaptive_examples(first.data)
        self.adapt = Adaptation.of(first.pipeline, first.model, len(first.data.classes), examples, device)

    def __len__(self) -> int:
        return len(self.seeds)

    @property
    def id(self) -> str:
        """What its events name: the run id, or a seed group's `<name>-<hash>-s0,1,2`."""
        if len(self) == 1:
            return self.seeds[0].run.id
        group = self.seeds[0].run.id.rsplit("-s", 1)[0]
        return f"{group}-s{','.join(str(s.seed) for s in self.seeds)}"

    def losses(self, images: torch.Tensor, labels: torch.Tensor, outs: list) -> tuple:
        """The seeds' mean losses (S,), correct predictions (S,) and logits; images (S, B, ...)."""
        t = self.spec.train
        if self.stacked is None:  # one network: its own forward, model inputs and objective
            (out,), model = outs, self.net
            with autocast(self.device, t.precision):
                if t.objective == "masked-modeling":
                    loss = model.reconstruction_loss(images[0], **out.model_inputs())
                    return loss.view(1), torch.zeros(1, dtype=torch.int64, device=loss.device), None
                logits = model(images[0], **out.model_inputs()) if out.model_inputs() else model(images[0])
                loss = F.cross_entropy(logits.float(), labels[0], label_smoothing=t.label_smoothing)
            return loss.view(1), (logits.argmax(1) == labels[0]).sum().view(1), logits
        with autocast(self.device, t.precision):
            logits = self.stacked(images)  # (S, B, classes)
        per_sample = F.cross_entropy(
            logits.flatten(0, 1).float(), labels.flatten(), label_smoothing=t.label_smoothing, reduction="none"
        )
        losses = per_sample.view(len(self), -1).mean(1)  # each seed's mean loss, as its own run computes it
        return losses, (logits.detach().argmax(2) == labels).sum(1), logits

    def validate(self, rows: list[dict]) -> object:
        """Validation metrics into each seed's row; returns one seed's predictions (adaptive ops read them)."""
        t, first = self.spec.train, self.seeds[0]
        if first.data.val is None:
            return None
        if self.stacked is not None:
            for row, (loss, acc) in zip(rows, validate_stacked(self.stacked, [s.data for s in self.seeds], t)):
                row["val_loss"], row["val_acc"] = loss, acc
            return None
        if t.objective == "masked-modeling":
            val = masked_modeling_metrics(first.model, first.data.val, t.eval_batch_size, t.precision, first.pipeline)
            rows[0].update({"val_loss": val["loss"]} | ({"val_mlm_acc": val["acc"]} if "acc" in val else {}))
            return val
        val = predict(first.model, first.data.val, t.eval_batch_size, t.precision)
        rows[0]["val_loss"], rows[0]["val_acc"] = val.loss, float((val.predicted == val.labels).mean())
        return val

    def train(self) -> None:
        self.net.train()

    def save_checkpoints(self, epochs_done: int) -> None:
        """Each seed's checkpoint in the single-run layout (its slice of a stacked group)."""
        optimizer = self.optimizer.state_dict()
        for i, s in enumerate(self.seeds):
            if self.stacked is None:
                extra = {"adaptive": self.adapt.state_dict()} if self.adapt else None
                checkpoints.write(s.run, self.net.state_dict(), optimizer, epochs_done, extra)
            else:
                state = checkpoints.seed_slice(optimizer, i)
                checkpoints.write(s.run, self.stacked.state_dict(i), state, epochs_done)

    def load_checkpoints(self) -> int:
        """Every seed's checkpoint into the network and optimizer; returns the epochs done."""
        if self.stacked is None:
            return checkpoints.resume_into(self.seeds[0].run, self.net, self.optimizer, self.device, self.adapt)
        return checkpoints.resume_stacked_into([s.run for s in self.seeds], self.stacked, self.optimizer, self.device)

    def trained_models(self) -> list[torch.nn.Module]:
        """Each seed's network with its trained weights (a stacked group's slices loaded back)."""
        if self.stacked is not None:
            for i, s in enumerate(self.seeds):
                s.model.load_state_dict(self.stacked.state_dict(i))
        return [s.model for s in self.seeds]


def fit(group: SeedGroup, events: Events, stop_requested: Callable[[], bool], resume: bool = False) -> None:
    """Train for spec.train.epochs, writing every seed's metrics and checkpoint after every epoch."""
    t = group.spec.train
    steps = group.seeds[0].data.train.num_batches(t.batch_size, drop_last=True)
    start = group.load_checkpoints() if resume else 0
    for s in group.seeds:
        s.run.truncate_metrics(start)
    events.started(group.id, t.epochs, steps, start, len(group))
    for epoch in range(start, t.epochs):
        began = time.perf_counter()
        rows = train_epoch(group, epoch, events, stop_requested)
        val = group.validate(rows)
        if group.adapt is not None:  # the epoch's adaptive values, then their update for the next epoch
            rows[0]["adaptive"] = group.adapt.end_epoch(val)
        share = round((time.perf_counter() - began) / len(group), 4)  # each seed's share of the time
        for s, row in zip(group.seeds, rows):
            row["seconds"] = share
            s.run.append_metrics(row)
        group.save_checkpoints(epoch + 1)
        for s in group.seeds:
            s.run.update_info(epochs_done=epoch + 1)
        events.epoch(group.id, rows[0] if len(group) == 1 else mean_row(rows))
        if stop_requested():
            raise Interrupted(f"interrupted after epoch {epoch + 1}")


def train_epoch(group: SeedGroup, epoch: int, events: Events, stop_requested: Callable[[], bool]) -> list[dict]:
    """One pass of every seed over its training split; the seeds' metrics rows (without val)."""
    t, device, seeds, n = group.spec.train, group.device, group.seeds, len(group)
    group.train()
    began = time.perf_counter()
    steps = seeds[0].data.train.num_batches(t.batch_size, drop_last=True)
    check_every = 1 if device.type == "cpu" else 25  # host syncs are free on CPU only
    plans = [s.pipeline.epoch_keys(epoch, device=device) for s in seeds]
    loss_sum = torch.zeros(n, device=device)
    correct = torch.zeros(n, dtype=torch.int64, device=device)
    op_sums = torch.zeros(n, len(seeds[0].pipeline), device=device)
    first_bad = torch.full((n,), -1, dtype=torch.int64, device=device)
    seen = 0
    streams = [s.data.train.batches(t.batch_size, epoch_shuffle_seed(s.seed, epoch), drop_last=True) for s in seeds]
    for step, batches in enumerate(zip(*streams)):  # (x, y, index) per seed: the same batches as a run alone
        if seeds[0].pipeline.per_step:
            plans = [s.pipeline.epoch_keys(epoch, step, device=device) for s in seeds]
        lr = t.lr * lr_factor(epoch * steps + step, steps * t.epochs, t.schedule, t.warmup)
        for g in group.optimizer.param_groups:
            g["lr"] = lr
        losses, hits, stats = train_step(group, batches, plans)
        batch = len(batches[0][1])
        loss_sum += losses * batch
        correct += hits
        op_sums += stats * batch
        seen += batch
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(losses), step, first_bad)
        if (step + 1) % check_every == 0 or step + 1 == steps:
            check_finite(first_bad, [s.seed for s in seeds], epoch, lr)
        if stop_requested():
            raise Interrupted(f"interrupted in epoch {epoch + 1}")
        events.step(group.id, epoch, step)
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the clock must include the queued kernels
    share = (time.perf_counter() - began) / n
    rows = [
        _epoch_row(epoch, loss_sum[i], correct[i], seen, op_sums[i], s.pipeline, lr, share) for i, s in enumerate(seeds)
    ]
    if t.objective == "masked-modeling":
        for row in rows:
            row.pop("train_acc")  # reconstruction has no accuracy
    return rows


def train_step(group: SeedGroup, batches: list[tuple], plans: list) -> tuple[torch.Tensor, ...]:
    """One optimiser step for every seed on its batch: its ops, the forward pass, the
    loss, the update. Returns (S,) losses, (S,) correct predictions and (S, n_ops) op stats."""
    adapt = group.adapt
    outs = []
    for s, (x, y, idx), plan in zip(group.seeds, batches, plans):
        outs.append(s.pipeline(x, idx, plan, **(adapt.before_step(x, y, idx) if adapt else {})))  # the train ops
    if len(outs) > 1:
        images = torch.stack([o.images for o in outs])  # (S, B, C, H, W)
    else:  # one seed: no copy; ops that follow the model may need the input's gradient
        tracked = adapt.track(outs[0].images) if adapt else outs[0].images
        images = tracked[None]
    labels = torch.stack([y for _, y, _ in batches])  # (S, B)
    losses, hits, logits = group.losses(images, labels, outs)
    group.optimizer.zero_grad(set_to_none=True)
    losses.sum().backward()
    group.optimizer.step()
    if adapt:
        ((_, y, idx),) = batches
        adapt.after_step(idx, y, logits, tracked, outs[0])
    return losses.detach(), hits, torch.stack([o.stats for o in outs])


def check_finite(first_bad: torch.Tensor, seeds: list[int], epoch: int, lr: float) -> None:
    """A seed whose loss became non-finite fails, naming the step."""
    for seed, step in zip(seeds, first_bad.tolist()):
        if step >= 0:
            raise SeedFailed(
                f"loss became non-finite at epoch {epoch + 1}, step {step + 1} (lr {lr:.3g}); lower train.lr or check the data",
                seed,
            )


def _epoch_row(
    epoch: int, loss_sum, correct, seen: int, op_sums, pipeline: OpPipeline, lr: float, seconds: float
) -> dict:
    realized = (op_sums / max(1, seen)).tolist()
    row = {
        "epoch": epoch + 1,
        "train_loss": float(loss_sum) / max(1, seen),
        "train_acc": float(correct) / max(1, seen),
        "lr": lr,
        "train_seconds": round(seconds, 4),
        "samples_per_s": round(seen / max(seconds, 1e-9), 1),
    }
    if len(pipeline):
        row["ops"] = [
            {"op": op["op"], "realized": round(r, 6)} | ({"mean_mask": round(1.0 - r, 6)} if op["op"] == "soft" else {})
            for op, r in zip(pipeline.ops, realized)
        ]
        scheduled = pipeline.current_values(epoch)
        if scheduled:
            row["scheduled"] = scheduled
    return row


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


@torch.inference_mode()
def validate_stacked(stacked: Stacked, datas: list[TrainData], t) -> list[tuple[float, float]]:
    """(val loss, val accuracy) per seed of a stacked group, each on its own validation split."""
    stacked.eval()
    n = len(datas)
    device = datas[0].val.device
    loss_sum = torch.zeros(n, device=device)
    correct = torch.zeros(n, dtype=torch.int64, device=device)
    for batches in zip(*(d.val.batches(t.eval_batch_size) for d in datas)):
        images = torch.stack([x for x, _, _ in batches])
        labels = torch.stack([y for _, y, _ in batches])
        with autocast(device, t.precision):
            logits = stacked(images).float()
        loss_sum += F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none").view(n, -1).sum(1)
        correct += (logits.argmax(2) == labels).sum(1)
    count = max(1, len(datas[0].val))
    return [(float(loss) / count, int(hits) / count) for loss, hits in zip(loss_sum.tolist(), correct.tolist())]


def adaptive_examples(data: TrainData) -> int:
    """Rows of a per-example table: one per dataset index of the training split."""
    return int(data.train.index.max()) + 1 if len(data.train) else 0


def test_metrics(model: torch.nn.Module, data: TrainData, spec: Spec, pipeline: OpPipeline) -> dict:
    """Classification metrics on the test split; for masked modeling, the test
    reconstruction loss (text: masked-token loss and accuracy) under the spec's tokens
    op (drawn once, as in evaluation)."""
    if spec.train.objective == "masked-modeling":
        test = masked_modeling_metrics(model, data.test, spec.train.eval_batch_size, spec.train.precision, pipeline)
        return {"recon_loss": test["loss"]} | ({"mlm_acc": test["acc"]} if "acc" in test else {})
    p = predict(model, data.test, spec.train.eval_batch_size, spec.train.precision)
    return classification_metrics(p, data.classes) | {"predictions": p}
