"""The training loop, written out in full.

One epoch: a keyed shuffle of the device-resident training split; per batch one
gather, the spec's ops, a forward/backward step under bf16 autocast on CUDA; then a
validation pass, one line in metrics.jsonl and a checkpoint. Everything random is a
pure function of (seed, epoch, step) or restored from the checkpoint, so a resumed run
continues bit-identically on CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from masklab import optimizers
from masklab.data.batches import epoch_shuffle_seed
from masklab.data.splits import TrainData
from masklab.errors import Interrupted, TrainingFailed
from masklab.evaluation.metrics import autocast, classification_metrics, masked_modeling_metrics, predict
from masklab.ops.adaptive import Adaptation
from masklab.ops.pipeline import OpPipeline
from masklab.spec import Spec
from masklab.store import weights
from masklab.store.files import DamagedFile
from masklab.store.runs import Run


class Reporter:
    """Progress callbacks; the CLI renders them (rich bar on a TTY, plain lines otherwise)."""

    def start(self, run_id: str, epochs: int, steps: int, start_epoch: int) -> None: ...

    def step(self, epoch: int, step: int) -> None: ...

    def epoch(self, row: dict) -> None: ...

    def finish(self) -> None: ...


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


def classify_loss(
    model: torch.nn.Module, images: torch.Tensor, y: torch.Tensor, smoothing: float, **kw
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean loss, correct predictions, logits (B, classes))."""
    logits = model(images, **kw) if kw else model(images)
    return F.cross_entropy(logits.float(), y, label_smoothing=smoothing), (logits.argmax(1) == y).sum(), logits


def save_checkpoint(run: Run, model: torch.nn.Module, optimizer, epochs_done: int, adapt: Adaptation | None) -> None:
    extra = {"adaptive": adapt.state_dict()} if adapt else None
    write_checkpoint(run, model.state_dict(), optimizer.state_dict(), epochs_done, extra)


def write_checkpoint(
    run: Run, model_state: dict, optimizer_state: dict, epochs_done: int, extra: dict | None = None
) -> None:
    """checkpoint.pt, replaced atomically: weights, optimizer, RNG and adaptive state after `epochs_done` epochs."""
    state = {
        "epochs_done": epochs_done,
        "model": model_state,
        "optimizer": optimizer_state,
        "rng": torch.get_rng_state(),
        **(extra or {}),
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    run.write_bytes("checkpoint.pt", weights.to_bytes(state))  # atomic, never through a planted link


def load_checkpoint(
    run: Run, model: torch.nn.Module, optimizer, device: torch.device, adapt: Adaptation | None = None
) -> int:
    """Restore model, optimizer, RNG and adaptive state; returns the number of completed
    epochs. A file that is not a masklab checkpoint is a DamagedFile naming it."""
    path = run.path / "checkpoint.pt"
    state = read_checkpoint(run, device)
    weights.load_into(model, state["model"], path)
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError):
        raise DamagedFile(f"{path}: its optimizer state does not fit this run; pass --force to start over") from None
    if adapt is not None:
        if "adaptive" not in state:
            raise DamagedFile(
                f"{path}: it holds no adaptive state, which this run's ops need; pass --force to start over"
            )
        adapt.load_state_dict(state["adaptive"])
    return int(state["epochs_done"])


def read_checkpoint(run: Run, device: torch.device) -> dict:
    """A run's checkpoint, checked to be one (else a DamagedFile naming it); restores the
    RNG state it saved."""
    path = run.path / "checkpoint.pt"
    state = weights.load_checkpoint_state(path, device)
    try:
        torch.set_rng_state(state["rng"].cpu())
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError):
        raise DamagedFile(f"{path}: its RNG state does not fit this run; pass --force to start over") from None
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
    return state


def train_pipeline(spec: Spec, seed: int, data: TrainData, model: torch.nn.Module, compiled: bool) -> OpPipeline:
    """The spec's train_ops bound to a run's seed, image shape and fill statistics."""
    image_tokens = spec.model.transformer and spec.model.reads == "images"  # a ViT's patch tokens
    return OpPipeline(
        spec.train_ops,
        seed,
        data.shape,
        fill_mean=data.mean,
        fill_std=data.std,
        epochs=spec.train.epochs,
        steps_per_epoch=data.train.num_batches(spec.train.batch_size, drop_last=True),
        token_grid=(model.tokens, model.heads) if image_tokens else None,
        compile=compiled,
        stat_samples=32,  # the logged noise magnitude is estimated on 32 images per batch
        mlm_pool=data.train.x if image_tokens else None,
    )


def fit(
    spec: Spec,
    seed: int,
    data: TrainData,
    model: torch.nn.Module,
    pipeline: OpPipeline,
    run: Run,
    device: torch.device,
    reporter: Reporter,
    stop_requested: Callable[[], bool],
    resume: bool = False,
) -> None:
    """Train for spec.train.epochs, writing metrics and a checkpoint after every epoch."""
    t = spec.train
    optimizer = make_optimizer(model, spec)
    steps = data.train.num_batches(t.batch_size, drop_last=True)
    adapt = Adaptation.of(pipeline, model, len(data.classes), adaptive_examples(data), device)
    start = load_checkpoint(run, model, optimizer, device, adapt) if resume else 0
    run.truncate_metrics(start)
    reporter.start(run.id, t.epochs, steps, start)
    try:
        for epoch in range(start, t.epochs):
            began = time.perf_counter()
            row = train_epoch(
                spec, seed, epoch, data, model, optimizer, pipeline, device, reporter, stop_requested, adapt
            )
            val = None
            if data.val is not None and t.objective == "masked-modeling":
                val = masked_modeling_metrics(model, data.val, t.eval_batch_size, t.precision, pipeline)
                row.update({"val_loss": val["loss"]} | ({"val_mlm_acc": val["acc"]} if "acc" in val else {}))
            elif data.val is not None:
                val = predict(model, data.val, t.eval_batch_size, t.precision)
                row["val_loss"], row["val_acc"] = val.loss, float((val.predicted == val.labels).mean())
            if adapt is not None:  # the epoch's adaptive values, then their update for the next epoch
                row["adaptive"] = adapt.end_epoch(val)
            row["seconds"] = round(time.perf_counter() - began, 4)
            run.append_metrics(row)
            save_checkpoint(run, model, optimizer, epoch + 1, adapt)
            run.update_info(epochs_done=epoch + 1)
            reporter.epoch(row)
            if stop_requested():
                raise Interrupted(f"interrupted after epoch {epoch + 1}")
    finally:
        reporter.finish()


def train_epoch(
    spec, seed, epoch, data, model, optimizer, pipeline: OpPipeline, device, reporter, stop_requested, adapt=None
) -> dict:
    """One pass over the training split; returns the epoch's metrics row (without val)."""
    t = spec.train
    model.train()
    began = time.perf_counter()
    steps = data.train.num_batches(t.batch_size, drop_last=True)
    check_every = 1 if device.type == "cpu" else 25  # host syncs are free on CPU only
    plan = pipeline.plan(epoch, device=device)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    op_sums = torch.zeros(len(pipeline), device=device)
    first_bad = torch.full((), -1, dtype=torch.int64, device=device)
    seen = 0
    for step, (x, y, idx) in enumerate(
        data.train.batches(t.batch_size, epoch_shuffle_seed(seed, epoch), drop_last=True)
    ):
        if pipeline.per_step:
            plan = pipeline.plan(epoch, step, device=device)
        lr = t.lr * lr_factor(epoch * steps + step, steps * t.epochs, t.schedule, t.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        out = pipeline(x, idx, plan, **(adapt.before_step(x, y, idx) if adapt else {}))  # the train-time ops
        images = adapt.track(out.images) if adapt else out.images  # (B, C, H, W)
        with autocast(device, t.precision):
            if t.objective == "masked-modeling":
                loss, n_correct = model.reconstruction_loss(images, **out.model_inputs()), 0
            else:
                loss, n_correct, logits = classify_loss(model, images, y, t.label_smoothing, **out.model_inputs())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if adapt:
            adapt.after_step(idx, y, logits, images, out)
        loss = loss.detach()
        loss_sum += loss * len(y)
        correct += n_correct
        op_sums += out.stats * len(y)
        seen += len(y)
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
        if (step + 1) % check_every == 0 or step + 1 == steps:
            _check_finite(first_bad, epoch, lr)
        if stop_requested():
            raise Interrupted(f"interrupted in epoch {epoch + 1}")
        reporter.step(epoch, step)
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the clock must include the queued kernels
    row = _epoch_row(epoch, loss_sum, correct, seen, op_sums, pipeline, lr, time.perf_counter() - began)
    if t.objective == "masked-modeling":
        row.pop("train_acc")  # reconstruction has no accuracy
    return row


def _check_finite(first_bad: torch.Tensor, epoch: int, lr: float) -> None:
    bad = int(first_bad)
    if bad >= 0:
        raise TrainingFailed(
            f"loss became non-finite at epoch {epoch + 1}, step {bad + 1} (lr {lr:.3g}); lower train.lr or check the data"
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
