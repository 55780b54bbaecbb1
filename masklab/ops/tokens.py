"""Token and attention ops on a ViT's patch tokens: which tokens a `tokens` op chooses
(and how the model treats them: [MASK], dropped, or BERT's 80/10/10), and which
query-key links an `attention` op removes. The image stays as it is; what the model
needs goes into the call's result as model inputs. (Text has its own: ops/word_pieces.py.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from masklab.ops import keyed, masks
from masklab.vocabulary import MLM_KEEP, MLM_MASK, MLM_RANDOM

if TYPE_CHECKING:
    from masklab.ops.call import OpCall


def tokens(call: OpCall) -> tuple[torch.Tensor, torch.Tensor]:
    """Chosen patch tokens (B, T) for the ViT; returns (the images, the realized fraction (B,))."""
    op, keys, applied = call.op, call.keys, call.applied
    count, _ = call.pipeline.token_grid
    rate = call.value("rate")
    chosen = masks.unit_mask(keys, rate, count, op["count"])  # (B, T)
    if applied is not None:
        chosen = chosen & applied[:, None]
    result = call.result
    result.token_mask, result.token_action = chosen, op["action"]
    if op["action"] == "mlm":
        result.extras = mlm_plan(keys, count, call.pipeline.patch_pool(count))
    if op["action"] == "drop" and op["count"] == "exact" and isinstance(rate, float) and applied is None:
        result.extras = {"kept_tokens": count - masks.exact_count(rate, count)}  # the same in every row
    return call.x, chosen.to(torch.float32).mean(1)


def attention(call: OpCall) -> tuple[torch.Tensor, torch.Tensor]:
    """Query-key links removed in every block (B, heads or 1, T, T); returns (the images, the realized fraction)."""
    count, heads = call.pipeline.token_grid
    b = call.keys.table.shape[1]
    h = heads if call.op["per_head"] else 1
    removed = masks.unit_mask(call.keys, call.value("rate"), h * count * count).view(b, h, count, count)
    removed &= ~torch.eye(count, dtype=torch.bool, device=removed.device)  # a token always sees itself
    if call.applied is not None:
        removed &= call.applied[:, None, None, None]
    call.result.attn_mask = ~removed
    return call.x, removed.flatten(1).to(torch.float32).mean(1)


def mlm_plan(keys: keyed.Keys, tokens: int, pool: torch.Tensor) -> dict:
    """BERT's 80/10/10 for chosen patch tokens: [MASK], the same-position patch of a
    training image, or unchanged. The training image is a keyed draw over the whole
    split (seed, op, view, sample index, position), so a sample's replacements do not
    depend on which other samples share its batch. pool: (N, T, patch_dim) uint8 or float."""
    u = keyed.uniform(keyed.unit_bits(keys.stream(keyed.FILL), tokens))  # (B, T)
    kind = torch.where(u < 0.8, MLM_MASK, torch.where(u < 0.9, MLM_RANDOM, MLM_KEEP))
    n = pool.shape[0]
    draw = keyed.uniform(keyed.unit_bits(keys.stream(keyed.EXTRA), tokens))  # (B, T)
    source = (draw * n).to(torch.int64).clamp_(max=n - 1)
    patches = pool[source, torch.arange(tokens, device=pool.device)]  # (B, T, patch_dim)
    if patches.dtype == torch.uint8:
        patches = patches.to(torch.float32).mul_(1.0 / 255.0)
    return {"mlm_kind": kind, "mlm_patches": patches}
