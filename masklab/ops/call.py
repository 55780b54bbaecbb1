"""What an op's apply function gets (`OpCall`) and what a pipeline gives back (`OpResult`).

Every op in the table (ops/registry.py) names one apply function, `f(call) -> ...`,
that reads its parameters from the call: `call.op[...]` for fixed settings,
`call.value(key)` for a rate or strength that may be a range, a schedule or adaptive.
What it returns depends on its family, and the pipeline does the rest (`p`, fills,
clipping, the realized fraction):

| family | apply returns |
|---|---|
| mask | a `masks.Mask` (True = masked) |
| soft | the multiplier m (B, H, W) in [0, 1] |
| noise, transform | the changed images (B, C, H, W), before clipping and `p` |
| token, attention | (the batch the model reads, the realized fraction per sample (B,)), `p` applied; model inputs set on `call.result` |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from masklab.ops.keyed import Keys

if TYPE_CHECKING:
    from masklab.ops.masks import Mask
    from masklab.ops.pipeline import OpPipeline


@dataclass
class OpResult:
    images: torch.Tensor  # (B, C, H, W) float in [0, 1] unless a noise op has clip: false; text: ids (B, L)
    stats: torch.Tensor  # (n_ops,) batch means of the realized masked fraction or noise magnitude
    per_sample: torch.Tensor | None = None  # (B, n_ops) the same per sample, unless stats are sampled
    masks: list[Mask] = field(default_factory=list)  # the mask ops' masks, in order
    token_mask: torch.Tensor | None = None  # (B, T) tokens chosen by a tokens op
    token_action: str | None = None
    attn_mask: torch.Tensor | None = None  # (B, heads or 1, T, T) True = link kept
    extras: dict = field(default_factory=dict)
    # with `measure=True` (masklab mask/noise): per op, the quantities its setting names, and what it changed
    measures: dict[int, list[tuple[str, torch.Tensor]]] = field(default_factory=dict)  # op -> [(what, (B,))]
    changed: list[torch.Tensor] = field(default_factory=list)  # per op (B,) bool: the op changed the sample

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


@dataclass
class OpCall:
    """Op `index` of a pipeline applied to one batch."""

    pipeline: OpPipeline
    index: int
    op: dict  # the resolved op mapping (ops/registry.py validate)
    keys: Keys  # the batch's keys for this op: (streams, B)
    values: torch.Tensor  # scheduled (and adaptive) values of the whole pipeline
    x: torch.Tensor  # the batch as this op receives it (the earlier ops applied)
    applied: torch.Tensor | None  # (B,) bool: the samples `p` picked; None when p = 1
    saliency: torch.Tensor | None  # (B, gh, gw) for placement salient/background while training
    result: OpResult  # token ops set the model inputs here

    @property
    def height(self) -> int:
        return self.pipeline.shape[1]

    @property
    def width(self) -> int:
        return self.pipeline.shape[2]

    def value(self, key: str, sub: int = 0) -> float | torch.Tensor:
        """Parameter `key`: a float when constant, else per sample (B,) from a range, a
        schedule or the adaptive state."""
        return self.pipeline.value(self.index, key, self.keys, self.values, sub)
