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

from dataclasses import dataclass, field

import torch

from masklab.errors import SpecError
from masklab.ops import adaptive_spec, keyed, masks, noise, registry, schedule, transforms

EVAL_VIEW = -1  # a view no training epoch uses
STATIC_VIEW = -2  # copy k of K uses view STATIC_VIEW - K(K-1)/2 - k: apart from dynamic epochs, eval and other K


@dataclass
class Plan:
    """Per-epoch (or per-step) inputs of the pure apply function, already on the device."""

    bases: torch.Tensor  # (n_ops, len(keyed.STREAMS)) int32
    values: torch.Tensor  # (n_scheduled,) float32


@dataclass
class OpResult:
    images: torch.Tensor  # (B, C, H, W) float in [0, 1] unless a noise op has clip: false
    stats: torch.Tensor  # (n_ops,) batch means of the realized masked fraction or noise magnitude
    per_sample: torch.Tensor | None = None  # (B, n_ops) the same per sample, unless stats are sampled
    masks: list[masks.Mask] = field(default_factory=list)  # the mask ops' masks, in order
    token_mask: torch.Tensor | None = None  # (B, T) tokens chosen by a tokens op
    token_action: str | None = None
    attn_mask: torch.Tensor | None = None  # (B, heads or 1, T, T) True = link kept
    extras: dict = field(default_factory=dict)

    def model_inputs(self) -> dict:
        """What a ViT's forward needs from the token and attention ops (empty otherwise)."""
        inputs: dict = {}
        if self.token_mask is not None:
            inputs.update(token_mask=self.token_mask, token_action=self.token_action, **self.extras)
        if self.attn_mask is not None:
            inputs["attn_mask"] = self.attn_mask
        return inputs

    @property
    def mask(self) -> torch.Tensor | None:
        """The union of the mask ops at pixel resolution, True = masked. (B, H, W)"""
        if not self.masks:
            return None
        union = self.masks[0].pixels()
        for m in self.masks[1:]:
            union = union | m.pixels()
        return union


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
        self._apply_fn = torch.compile(self._apply, dynamic=False) if compile and ops else self._apply

    def __len__(self) -> int:
        return len(self.ops)

    def view(self, op: dict, epoch: int) -> int:
        if epoch == EVAL_VIEW:
            return EVAL_VIEW
        if op["mode"] != "static":
            return epoch
        copies = op["copies"]
        copy = epoch % copies
        return copy if op.get("share_views") else STATIC_VIEW - copies * (copies - 1) // 2 - copy

    def plan(self, epoch: int, step: int = 0, device: torch.device | str = "cpu") -> Plan:
        bases = [
            [keyed.mix(self.seed, i, self.view(op, epoch), s) for s in keyed.STREAMS] for i, op in enumerate(self.ops)
        ]
        at = max(epoch, 0)
        values = [
            schedule.value(self.ops[i][k], at, step, self.epochs, self.steps_per_epoch) for i, k in self.scheduled
        ]
        return Plan(
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
        plan: Plan,
        labels: torch.Tensor | None = None,
        saliency: dict[int, torch.Tensor] | None = None,
    ) -> OpResult:
        """The ops on one batch. `labels` (B,) and `saliency` ({op index: (B, h, w)})
        feed adaptive values and placement by saliency while training."""
        if not self.ops:
            return OpResult(images=x, stats=x.new_zeros(0))
        values = plan.values
        if self.adapted:  # rows (n_scheduled + n_adapted, B): scheduled values, then per-sample adaptive ones
            if self.state is None:
                i, k = self.adapted[0]
                raise SpecError(f"ops[{i}].{k}: adaptive values are set while training; give a number here")
            values = torch.cat([values[:, None].expand(-1, len(index)), self.state.per_sample(index, labels)])
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

    # --- the pure part: tensors in, tensors out --------------------------------------

    def _apply(
        self,
        x: torch.Tensor,
        index: torch.Tensor,
        bases: torch.Tensor,
        values: torch.Tensor,
        saliency: dict[int, torch.Tensor] | None = None,
    ) -> OpResult:
        _, height, width = self.shape
        stats = []
        result = OpResult(images=x, stats=x.new_zeros(0))
        table = keyed.batch_keys(index, bases)  # (n_ops, streams, B): every key of the batch at once
        for i, op in enumerate(self.ops):
            keys = keyed.Keys(table[i])
            applied = keys.uniform(keyed.APPLY) < op["p"] if op["p"] < 1.0 else None
            family = registry.OPS[op["op"]].family
            if family == "mask":
                mask = self._mask(i, keys, values, height, width, (saliency or {}).get(i))
                if applied is not None:
                    mask = mask.only(applied)
                stats.append(mask.fraction())
                x = masks.fill(x, mask, op["fill"], keys, self.fill_mean, self.fill_std)
                result.masks.append(mask)
            elif family == "soft":
                m = masks.soft_mask(
                    keys, self._value(i, "strength", keys, values), height, width, op["size"], op["dist"]
                )
                if applied is not None:
                    m = torch.where(applied[:, None, None], m, 1.0)
                fill = op["fill"]
                x = masks.blend(x, m, 0.0 if fill == "zero" else self.fill_mean if fill == "mean" else fill)
                stats.append(1.0 - m.flatten(1).mean(1))  # realized: the share of the image taken away
            elif family in ("noise", "transform"):
                noisy = self._noise(i, x, keys, values)
                if op["clip"]:
                    noisy = noisy.clamp(0.0, 1.0)
                if applied is not None:
                    noisy = torch.where(applied[:, None, None, None], noisy, x)
                k = self.stat_samples
                change = noisy[:k] - x[:k] if k else noisy - x
                stats.append(change.abs_().flatten(1).mean(1))
                x = noisy
            else:
                stats.append(self._token_op(i, keys, values, applied, result))
        if all(len(v) == len(x) for v in stats):
            result.per_sample = torch.stack(stats, 1)
        result.images, result.stats = x, torch.stack([v.mean() for v in stats])
        return result

    def _value(self, i: int, key: str, keys: keyed.Keys, values: torch.Tensor, sub: int = 0) -> float | torch.Tensor:
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

    def _mask(
        self, i: int, keys: keyed.Keys, values: torch.Tensor, height: int, width: int, saliency=None
    ) -> masks.Mask:
        op = self.ops[i]
        name = op["op"]
        placement = op.get("placement", "random")
        if placement != "random" and saliency is None:
            raise SpecError(f"ops[{i}].placement: {placement} needs the model's saliency; it is placed while training")
        if name == "region":
            return masks.region_mask(keys.table.shape[1], height, width, op["box"], keys.table.device)
        if name == "rect":
            area = self._value(i, "area", keys, values) if adaptive_spec.is_adaptive(op["area"]) else op["area"]
            return masks.rect_mask(keys, height, width, area, op["aspect"], op["n"], saliency, placement)
        rate = self._value(i, "rate", keys, values)
        if name == "pixel":
            return masks.pixel_mask(keys, rate, height, width, op["count"])
        if name == "patch" and saliency is not None:
            return masks.placed_patch_mask(keys, rate, op["size"], saliency, placement)
        if name == "patch":
            return masks.patch_mask(keys, rate, height, width, op["size"])
        if name == "block":
            return masks.block_mask(keys, rate, height, width, op["size"], op["min_patches"], op["aspect"])
        return masks.stripes_mask(keys, rate, height, width, op["axis"], op["max_width"])

    def _noise(self, i: int, x: torch.Tensor, keys: keyed.Keys, values: torch.Tensor) -> torch.Tensor:
        op = self.ops[i]
        name = op["op"]
        if registry.OPS[name].family == "transform":
            return self._transform(i, x, keys, values)
        strength = self._value(i, registry.OPS[name].strength or "width", keys, values)
        if name == "gaussian":
            return noise.gaussian(x, keys, strength, op["mean"])
        if name == "salt_pepper":
            return noise.salt_pepper(x, keys, strength, op["salt_ratio"], op["count"])
        if name == "shot":
            return noise.shot(x, keys, strength)
        if name == "speckle":
            return noise.speckle(x, keys, strength)
        return noise.uniform(x, keys, strength)

    def _transform(self, i: int, x: torch.Tensor, keys: keyed.Keys, values: torch.Tensor) -> torch.Tensor:
        op = self.ops[i]
        name = op["op"]
        if name in ("dotted_line", "zigzag"):
            return getattr(transforms, name)(x, keys)
        if name == "inverse_stripe":
            return transforms.inverse_stripe(x, keys, op["fraction"])
        if name == "motion_blur":
            return transforms.motion_blur(x, keys, op["radius"], op["sigma"], op["angle"])
        strength = self._value(i, registry.OPS[name].strength, keys, values)
        if not isinstance(strength, float):
            raise SpecError(
                f"{name}.{registry.OPS[name].strength}: ranges and schedules are not supported for {name}; give one number"
            )
        return getattr(transforms, name)(x, keys, strength)

    def _token_op(
        self, i: int, keys: keyed.Keys, values: torch.Tensor, applied: torch.Tensor | None, result: OpResult
    ) -> torch.Tensor:
        """Token and attention masks for a ViT; returns the realized fraction per sample."""
        op = self.ops[i]
        tokens, heads = self.token_grid
        rate = self._value(i, "rate", keys, values)
        b = keys.table.shape[1]
        if op["op"] == "tokens":
            chosen = masks.unit_mask(keys, rate, tokens, op["count"])  # (B, T)
            if applied is not None:
                chosen = chosen & applied[:, None]
            result.token_mask, result.token_action = chosen, op["action"]
            if op["action"] == "mlm":
                result.extras = mlm_plan(keys, tokens, self.patch_pool(tokens))
            if op["action"] == "drop" and op["count"] == "exact" and isinstance(rate, float) and applied is None:
                result.extras = {"kept_tokens": tokens - masks.exact_count(rate, tokens)}  # the same in every row
            return chosen.to(torch.float32).mean(1)
        h = heads if op["per_head"] else 1
        removed = masks.unit_mask(keys, rate, h * tokens * tokens).view(b, h, tokens, tokens)
        removed &= ~torch.eye(tokens, dtype=torch.bool, device=removed.device)  # a token always sees itself
        if applied is not None:
            removed &= applied[:, None, None, None]
        result.attn_mask = ~removed
        return removed.flatten(1).to(torch.float32).mean(1)


def mlm_plan(keys: keyed.Keys, tokens: int, pool: torch.Tensor) -> dict:
    """BERT's 80/10/10 for chosen patch tokens: [MASK], the same-position patch of a
    training image, or unchanged. The training image is a keyed draw over the whole
    split (seed, op, view, sample index, position), so a sample's replacements do not
    depend on which other samples share its batch. pool: (N, T, patch_dim) uint8 or float."""
    from masklab.models.vit import MLM_KEEP, MLM_MASK, MLM_RANDOM

    u = keyed.uniform(keyed.unit_bits(keys.stream(keyed.FILL), tokens))  # (B, T)
    kind = torch.where(u < 0.8, MLM_MASK, torch.where(u < 0.9, MLM_RANDOM, MLM_KEEP))
    n = pool.shape[0]
    draw = keyed.uniform(keyed.unit_bits(keys.stream(keyed.EXTRA), tokens))  # (B, T)
    source = (draw * n).to(torch.int64).clamp_(max=n - 1)
    patches = pool[source, torch.arange(tokens, device=pool.device)]  # (B, T, patch_dim)
    if patches.dtype == torch.uint8:
        patches = patches.to(torch.float32).mul_(1.0 / 255.0)
    return {"mlm_kind": kind, "mlm_patches": patches}
