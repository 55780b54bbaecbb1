"""Applies a spec's op list to batches: modes, `p`, per-sample ranges and schedules.

The mode only chooses the *view* that goes into the key:

| mode | view at epoch e |
|------|-----------------|
| dynamic, scheduled | e (a fresh draw every epoch) |
| static, copies K | -2 - K(K-1)/2 - (e mod K): K fixed draws per sample, cycled, in a key space of their own |
| static, copies K, share_views | e mod K: copy k is the draw dynamic mode makes in epoch k |
| eval | -1, with the eval seed (every model sees the same corrupted test set) |

Static views are negative so that a static run never sees a mask a dynamic run of the
same seed draws (otherwise static-K and dynamic would train on identical data for their
first K epochs and a comparison of the two would lean towards "no difference"), and each
number of copies K has its own block of views, so static-1 and static-K share none either.
`share_views: true` asks for exactly that overlap (common random numbers, a variance
reduction when the question is what happens after epoch K).

Per batch the host sends one int32 per op (its base key) and the current values of
scheduled parameters; everything else happens on the batch's device.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from masklab.errors import SpecError
from masklab.ops import adaptive_spec, keyed, masks, registry, schedule
from masklab.ops.call import OpCall, OpResult

EVAL_VIEW = -1  # a view no training epoch uses
STATIC_VIEW = -2  # copy k of K uses view STATIC_VIEW - K(K-1)/2 - k: apart from dynamic epochs, eval and other K


@dataclass
class EpochKeys:
    """What the ops draw with in one epoch (or step): per-op base keys and scheduled values, on the device."""

    bases: torch.Tensor  # (n_ops, len(keyed.STREAMS)) int32
    values: torch.Tensor  # (n_scheduled,) float32


def resolve(name: str, ref: str | None) -> Callable:
    """The function an op table entry names: `masks.patch` is `patch` in masklab/ops/masks.py."""
    module, _, function = (ref or "").rpartition(".")
    try:
        return getattr(importlib.import_module(f"masklab.ops.{module}"), function)
    except (ImportError, AttributeError, ValueError):
        raise ImportError(f"op {name}: the op table names {ref!r}, which is no function in masklab/ops/") from None


# Every op of the table, resolved once: an op registered without its code fails here, at import.
APPLY: dict[str, Callable] = {name: resolve(name, op.apply) for name, op in registry.OPS.items()}
MEASURE: dict[str, Callable] = {name: resolve(name, op.measure) for name, op in registry.OPS.items() if op.measure}


class OpPipeline:
    """The ops of one spec section, bound to a seed and an image shape."""

    def __init__(
        self,
        ops: list[dict],
        seed: int,
        image_shape: tuple[int, int, int],
        *,
        fill_mean: float = 0.0,
        fill_std: float = 1.0,
        epochs: int = 1,
        steps_per_epoch: int = 1,
        token_grid: tuple[int, int] | None = None,
        compile: bool = False,
        stat_samples: int | None = None,
        mlm_pool: torch.Tensor | None = None,
    ) -> None:
        self.ops = ops
        self.seed = seed
        self.shape = image_shape
        self.fill_mean, self.fill_std = fill_mean, fill_std
        self.epochs, self.steps_per_epoch = epochs, steps_per_epoch
        self.token_grid = token_grid  # (tokens, heads) of a ViT
        self.stat_samples = stat_samples  # noise magnitude from the first k samples of a batch (None: all)
        self.mlm_pool = mlm_pool  # (N, C, H, W) training images that mlm draws replacement patches from
        self._patch_pool: torch.Tensor | None = None
        # (op index, param name) of every scheduled parameter, in a fixed order
        self.scheduled = [
            (i, k) for i, op in enumerate(ops) for k, v in op.items() if isinstance(v, dict) and "schedule" in v
        ]
        self.per_step = any(ops[i][k]["over"] == "step" for i, k in self.scheduled)
        # parameters set by the training run (ops/adaptive.py), per sample from `self.state`
        self.adapted = adaptive_spec.adaptive_params(ops)
        self.state = None  # an AdaptiveState while training
        self.apply = [self.implementation(op["op"]) for op in ops]  # each op's apply function, from the table
        self._apply_fn = torch.compile(self._apply, dynamic=False) if compile and ops else self._apply

    def __len__(self) -> int:
        return len(self.ops)

    def implementation(self, name: str) -> Callable:
        """The apply function of op `name` on images."""
        return APPLY[name]

    def view(self, op: dict, epoch: int) -> int:
        if epoch == EVAL_VIEW:
            return EVAL_VIEW
        if op["mode"] != "static":
            return epoch
        copies = op["copies"]
        copy = epoch % copies
        return copy if op.get("share_views") else STATIC_VIEW - copies * (copies - 1) // 2 - copy

    def epoch_keys(self, epoch: int, step: int = 0, device: torch.device | str = "cpu") -> EpochKeys:
        bases = [
            [keyed.mix(self.seed, i, self.view(op, epoch), s) for s in keyed.STREAMS] for i, op in enumerate(self.ops)
        ]
        at = max(epoch, 0)
        values = [
            schedule.value(self.ops[i][k], at, step, self.epochs, self.steps_per_epoch) for i, k in self.scheduled
        ]
        return EpochKeys(
            bases=torch.tensor(bases, dtype=torch.int32).to(device, non_blocking=True),
            values=torch.tensor(values, dtype=torch.float32).to(device, non_blocking=True),
        )

    def current_values(self, epoch: int, step: int = 0) -> dict[str, float]:
        """Scheduled parameter values at a point in training, for the metrics log."""
        return {
            f"op{i}.{k}": schedule.value(self.ops[i][k], epoch, step, self.epochs, self.steps_per_epoch)
            for i, k in self.scheduled
        }

    def __call__(
        self,
        x: torch.Tensor,
        index: torch.Tensor,
        plan: EpochKeys,
        labels: torch.Tensor | None = None,
        saliency: dict[int, torch.Tensor] | None = None,
        measure: bool = False,
    ) -> OpResult:
        """The ops on one batch. `labels` (B,) and `saliency` ({op index: (B, h, w)})
        feed adaptive values and placement by saliency while training; `measure` also
        records what each op changed and the quantity its setting names (masklab mask/noise)."""
        if not self.ops:
            return OpResult(images=x, stats=x.new_zeros(0))
        values = plan.values
        if self.adapted:  # rows (n_scheduled + n_adapted, B): scheduled values, then per-sample adaptive ones
            if self.state is None:
                i, k = self.adapted[0]
                raise SpecError(f"ops[{i}].{k}: adaptive values are set while training; give a number here")
            values = torch.cat([values[:, None].expand(-1, len(index)), self.state.per_sample(index, labels)])
        if measure:
            return self._apply(x, index, plan.bases, values, saliency, measure=True)
        if saliency:
            return self._apply_fn(x, index, plan.bases, values, saliency)
        return self._apply_fn(x, index, plan.bases, values)

    def patch_pool(self, tokens: int) -> torch.Tensor:
        """The mlm pool as patches (N, T, patch_dim), cut once (as uint8 for uint8 images)."""
        if self.mlm_pool is None:
            raise SpecError("tokens.action: mlm needs the training images to draw replacement patches from")
        if self._patch_pool is None:
            n, c, h, w = self.mlm_pool.shape
            p = round((h * w / tokens) ** 0.5)
            grid = self.mlm_pool.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
            self._patch_pool = grid.reshape(n, tokens, c * p * p)
        return self._patch_pool

    def value(self, i: int, key: str, keys: keyed.Keys, values: torch.Tensor, sub: int = 0) -> float | torch.Tensor:
        """Parameter `key` of op i: a float when constant, else per sample (B,) from a range or schedule."""
        v = self.ops[i][key]
        if adaptive_spec.is_adaptive(v):
            return values[len(self.scheduled) + self.adapted.index((i, key))]  # (B,)
        if isinstance(v, dict):
            row = values[self.scheduled.index((i, key))]
            return row if row.dim() else row.expand(keys.table.shape[1])
        if isinstance(v, list):
            return v[0] + (v[1] - v[0]) * keyed.uniform(keys.stream(keyed.VALUE, sub + 1))
        return float(v)

    # --- the pure part: tensors in, tensors out --------------------------------------

    def _apply(
        self,
        x: torch.Tensor,
        index: torch.Tensor,
        bases: torch.Tensor,
        values: torch.Tensor,
        saliency: dict[int, torch.Tensor] | None = None,
        measure: bool = False,
    ) -> OpResult:
        stats = []
        result = OpResult(images=x, stats=x.new_zeros(0))
        table = keyed.batch_keys(index, bases)  # (n_ops, streams, B): every key of the batch at once
        for i, op in enumerate(self.ops):
            keys = keyed.Keys(table[i])
            applied = keys.uniform(keyed.APPLY) < op["p"] if op["p"] < 1.0 else None
            call = OpCall(self, i, op, keys, values, x, applied, (saliency or {}).get(i), result)
            changed, stat = FAMILY_STEPS[registry.OPS[op["op"]].family](call, self.apply[i], measure)
            if measure:
                result.changed.append((changed != x).flatten(1).any(1))
            stats.append(stat)
            x = changed
        return self._summary(result, x, stats)

    def _summary(self, result: OpResult, x: torch.Tensor, stats: list[torch.Tensor]) -> OpResult:
        if all(len(v) == len(x) for v in stats):
            result.per_sample = torch.stack(stats, 1)
        result.images, result.stats = x, torch.stack([v.mean() for v in stats])
        return result


class TextOpPipeline(OpPipeline):
    """The ops of one spec section on token ids (B, L): `tokens` and `attention`, with
    the table's text apply functions (ops/word_pieces.py).

    The result's `images` are the ids after the ops (what the model reads), and its
    model inputs carry the chosen positions and the original ids (`targets`) for the
    masked-token loss, and the attention op's links."""

    def __init__(
        self,
        ops: list[dict],
        seed: int,
        vocab,
        *,
        heads: int = 1,
        epochs: int = 1,
        steps_per_epoch: int = 1,
        compile: bool = False,
    ) -> None:
        self.vocab = vocab  # ops/word_pieces.py Vocabulary
        self.heads = heads
        super().__init__(ops, seed, (0, 0, 0), epochs=epochs, steps_per_epoch=steps_per_epoch, compile=compile)

    def implementation(self, name: str) -> Callable:
        """The apply function of op `name` on token ids."""
        if name not in TEXT_APPLY:
            raise SpecError(f"{name}: an image op; text takes {', '.join(TEXT_APPLY)}")
        return TEXT_APPLY[name]

    def _summary(self, result: OpResult, x: torch.Tensor, stats: list[torch.Tensor]) -> OpResult:
        result.per_sample = torch.stack(stats, 1)
        result.images, result.stats = x, result.per_sample.mean(0)
        return result


# --- what each family does around its ops' apply functions (ops/call.py) -----------


def _mask_step(call: OpCall, apply: Callable, measure: bool) -> tuple[torch.Tensor, torch.Tensor]:
    placement = call.op.get("placement", "random")
    if placement != "random" and call.saliency is None:
        raise SpecError(
            f"ops[{call.index}].placement: {placement} needs the model's saliency; it is placed while training"
        )
    mask = apply(call)
    if call.applied is not None:
        mask = mask.only(call.applied)
    call.result.masks.append(mask)
    p = call.pipeline
    return masks.fill(call.x, mask, call.op["fill"], call.keys, p.fill_mean, p.fill_std), mask.fraction()


def _soft_step(call: OpCall, apply: Callable, measure: bool) -> tuple[torch.Tensor, torch.Tensor]:
    m = apply(call)  # (B, H, W) multiplier
    if call.applied is not None:
        m = torch.where(call.applied[:, None, None], m, 1.0)
    fill = call.op["fill"]
    towards = 0.0 if fill == "zero" else call.pipeline.fill_mean if fill == "mean" else fill
    return masks.blend(call.x, m, towards), 1.0 - m.flatten(1).mean(1)  # realized: the share taken away


def _noise_step(call: OpCall, apply: Callable, measure: bool) -> tuple[torch.Tensor, torch.Tensor]:
    x = call.x
    drawn = apply(call)
    noisy = drawn.clamp(0.0, 1.0) if call.op["clip"] else drawn
    if call.applied is not None:
        noisy = torch.where(call.applied[:, None, None, None], noisy, x)
    if measure and call.op["op"] in MEASURE:  # the noise as drawn, and as it ends up
        call.result.measures[call.index] = MEASURE[call.op["op"]](call, drawn - x, noisy - x)
    k = call.pipeline.stat_samples
    change = noisy[:k] - x[:k] if k else noisy - x
    return noisy, change.abs_().flatten(1).mean(1)


def _token_step(call: OpCall, apply: Callable, measure: bool) -> tuple[torch.Tensor, torch.Tensor]:
    return apply(call)


FAMILY_STEPS = {
    "mask": _mask_step,
    "soft": _soft_step,
    "noise": _noise_step,
    "transform": _noise_step,
    "token": _token_step,
    "attention": _token_step,
}
assert set(FAMILY_STEPS) == set(registry.FAMILIES), "every op family needs its step"
TEXT_APPLY: dict[str, Callable] = {
    name: resolve(name, op.text_apply) for name, op in registry.OPS.items() if op.text_apply
}
