"""The transformer encoder shared by the ViT (patch tokens) and the text model (word
pieces): pre-norm blocks on torch's scaled_dot_product_attention, an optional learned
cls token, key-padding and per-head attention masks, and pooling.

A model subclasses `Encoder`, builds its own embeddings, then calls `_build_encoder`
(so parameters are created, and randomly initialised, in the model's own order) and
`_transform` on the embedded tokens. The blocks and the final norm are attributes of
the model itself (`blocks.0.qkv.weight`, `norm.weight`), so weights saved before this
module existed load unchanged.

Masks: `link` (B, heads | 1, L, L) True = the query may attend to the key; `real`
(B, L) True = a real token, False = padding. Padding keys are removed from every
query's view in every block, so a real token's output does not depend on how much
padding follows it; a token always keeps the link to itself, so no row is empty.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    """Pre-norm transformer block on torch's scaled_dot_product_attention."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = max(1, int(dim * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)
        self.dropout = dropout

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, length, dim = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, length, 3, self.heads, dim // self.heads)
        return qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, heads, L, head_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, length, dim = x.shape
        q, k, v = self._qkv(x)
        p = self.dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, heads, L, head_dim)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, length, dim)))
        return x + self.drop(self.mlp(self.norm2(x)))

    def attention_weights(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The attention probabilities this block uses (for inspection and tests). (B, heads, L, L)"""
        q, k, _ = self._qkv(x)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(-1)


def init_trunc_normal(*params: nn.Parameter) -> None:
    for p in params:
        nn.init.trunc_normal_(p, std=0.02)


def attention_mask(link: torch.Tensor | None, real: torch.Tensor | None, length: int) -> torch.Tensor | None:
    """The boolean SDPA mask for `length` tokens from random links and key padding. (B, heads | 1, L, L)"""
    if real is not None:  # rows of different lengths: no query sees a padding key
        b = real.shape[0]
        link = (
            link if link is not None else torch.ones(b, 1, length, length, dtype=torch.bool, device=real.device)
        ) & real[:, None, None, :]
    if link is None:
        return None
    return link | torch.eye(length, dtype=torch.bool, device=link.device)  # a token always sees itself


def masked_mean(h: torch.Tensor, real: torch.Tensor | None) -> torch.Tensor:
    """Mean over the real tokens of each row. (B, L, D) -> (B, D)"""
    if real is None:
        return h.mean(1)
    weight = real.to(h.dtype)[..., None]
    return (h * weight).sum(1) / weight.sum(1).clamp(min=1.0)


class Encoder(nn.Module):
    """Base of the transformer models: cls token, blocks, final norm and the pass through them."""

    def _build_encoder(self, spec) -> None:
        """The blocks and the final norm of a model section (dim, depth, heads, mlp_ratio, dropout)."""
        self.blocks = nn.ModuleList(
            Block(spec.dim, spec.heads, spec.mlp_ratio, spec.dropout) for _ in range(spec.depth)
        )
        self.norm = nn.LayerNorm(spec.dim)

    def _transform(
        self, tok: torch.Tensor, link: torch.Tensor | None, real: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Embedded tokens (B, L, dim) through the blocks: (outputs (B, L, dim), cls output (B, dim) or None).
        A learned cls token (`self.cls`, when not None) is prepended and sees every real token."""
        cls = getattr(self, "cls", None)
        if cls is not None:
            tok = torch.cat([cls.expand(tok.shape[0], -1, -1).to(tok.dtype), tok], dim=1)
            link = None if link is None else F.pad(link, (1, 0, 1, 0), value=True)
            real = None if real is None else F.pad(real, (1, 0), value=True)
        mask = attention_mask(link, real, tok.shape[1])
        for block in self.blocks:
            tok = block(tok, mask)
        tok = self.norm(tok)
        if cls is not None:
            return tok[:, 1:], tok[:, 0]
        return tok, None
