"""A small Vision Transformer on patch tokens, with token masks, attention masks and a
light decoder for masked modeling.

Token actions (drawn by the `tokens` op, applied here):
- mask: chosen tokens' embeddings become a learned [MASK] embedding (BERT, SimMIM).
- drop: chosen tokens are removed before the encoder (MAE): the encoder sees fewer
  tokens; rows are padded to the batch's longest and padding is masked out of attention.
- mlm: BERT's 80/10/10: [MASK], the same-position patch of a training image drawn by
  the keyed hash (`mlm_patches`, from the op pipeline), or unchanged.
Attention masks (the `attention` op) remove query-key links in every block; a token
always keeps the link to itself so no row is empty.
"""

from __future__ import annotations

import torch
from torch import nn

from masklab.models.encoder import Block, Encoder, init_trunc_normal, masked_mean
from masklab.vocabulary import MLM_MASK, MLM_RANDOM


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, T, C * patch * patch), tokens in row-major order."""
    b, c, h, w = x.shape
    gh, gw = h // patch, w // patch
    return x.reshape(b, c, gh, patch, gw, patch).permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c * patch * patch)


class Decoder(nn.Module):
    """MAE's light decoder: encoder tokens back at their positions, [MASK] elsewhere."""

    def __init__(self, tokens: int, dim: int, decoder_dim: int, depth: int, heads: int, patch_dim: int) -> None:
        super().__init__()
        self.embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.pos = nn.Parameter(torch.zeros(1, tokens, decoder_dim))
        init_trunc_normal(self.mask_token, self.pos)
        heads = heads if decoder_dim % heads == 0 else 1
        self.blocks = nn.ModuleList(Block(decoder_dim, heads, 2.0, 0.0) for _ in range(depth))
        self.norm = nn.LayerNorm(decoder_dim)
        self.out = nn.Linear(decoder_dim, patch_dim)

    def forward(self, h: torch.Tensor, kept: torch.Tensor | None, tokens: int) -> torch.Tensor:
        """h: (B, L, dim) encoded patch tokens; kept: (B, L) their positions (drop) or None."""
        h = self.embed(h)
        if kept is not None:  # scatter the kept tokens back, [MASK] in the dropped places
            b, _, d = h.shape
            slots = torch.where(kept >= 0, kept, tokens)  # padding lands in a spare slot
            full = self.mask_token.to(h.dtype).expand(b, tokens + 1, d).clone()
            h = full.scatter(1, slots[..., None].expand(-1, -1, d), h)[:, :tokens]
        h = h + self.pos
        for block in self.blocks:
            h = block(h)
        return self.out(self.norm(h))  # (B, T, patch_dim)


class ViT(Encoder):
    def __init__(
        self, shape: tuple[int, int, int], num_classes: int, spec, standardize: nn.Module, decoder: bool = False
    ) -> None:
        super().__init__()
        channels, height, width = shape
        self.standardize = standardize
        self.patch, self.heads = spec.patch, spec.heads
        self.tokens = (height // spec.patch) * (width // spec.patch)
        self.patch_dim = channels * spec.patch**2
        self.use_cls = spec.pool == "cls"
        self.embed = nn.Linear(self.patch_dim, spec.dim)
        self.pos = nn.Parameter(torch.zeros(1, self.tokens, spec.dim))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, spec.dim))
        self.cls = nn.Parameter(torch.zeros(1, 1, spec.dim)) if self.use_cls else None
        init_trunc_normal(self.pos, self.mask_token, *([self.cls] if self.use_cls else []))
        self._build_encoder(spec)
        self.head = nn.Sequential(nn.Dropout(spec.dropout), nn.Linear(spec.dim, num_classes))
        self.decoder = (
            Decoder(self.tokens, spec.dim, spec.decoder_dim, spec.decoder_depth, spec.heads, self.patch_dim)
            if decoder
            else None
        )

    # --- encoder ------------------------------------------------------------------------

    def encode(
        self,
        x: torch.Tensor,
        token_mask: torch.Tensor | None = None,
        token_action: str | None = None,
        attn_mask: torch.Tensor | None = None,
        mlm_kind: torch.Tensor | None = None,
        mlm_patches: torch.Tensor | None = None,
        kept_tokens: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(encoded tokens (B, L, dim) without the cls token, their positions (B, L) when
        tokens were dropped (-1 = padding), the cls output (B, dim) or None)."""
        tok = self.embed(patchify(self.standardize(x), self.patch))  # (B, T, dim)
        if token_mask is not None and token_action == "mask":
            tok = torch.where(token_mask[..., None], self.mask_token.to(tok.dtype), tok)
        elif token_mask is not None and token_action == "mlm":
            swap = self.embed(self.standardize(mlm_patches.to(tok.dtype)))  # (B, T, dim) keyed training patches
            tok = torch.where((token_mask & (mlm_kind == MLM_RANDOM))[..., None], swap, tok)
            tok = torch.where((token_mask & (mlm_kind == MLM_MASK))[..., None], self.mask_token.to(tok.dtype), tok)
        tok = tok + self.pos
        kept = real = None
        link = attn_mask  # (B, heads | 1, T, T), True = the query may attend to the key
        if token_mask is not None and token_action == "drop":
            tok, kept, link, real = self._drop(tok, token_mask, link, kept_tokens)
        tok, cls = self._transform(tok, link, real)
        return tok, kept, cls

    def _drop(self, tok, token_mask, link, kept_tokens: int | None):
        """Keep the unmasked tokens (in order), padding rows to the longest, and cut an
        attention mask to the kept positions. Returns (tokens, positions, link, real).
        With an exact count (`kept_tokens`, known on the host) every row keeps the same
        number: no padding and no device-to-host sync."""
        b, t, _ = tok.shape
        order = torch.sort(token_mask.to(torch.int8), dim=1, stable=True).indices  # kept first, in order
        if kept_tokens is not None:
            order, real = order[:, :kept_tokens], None
            kept = order
        else:
            counts = (~token_mask).sum(1)
            longest = int(counts.max()) if b else 0  # a host sync: rows differ in length
            order = order[:, :longest]
            real = torch.arange(longest, device=tok.device)[None, :] < counts[:, None]  # (B, L)
            if bool(real.all()):
                real = None
            kept = order if real is None else torch.where(real, order, -1)
        longest = order.shape[1]
        tok = tok.gather(1, order[..., None].expand(-1, -1, tok.shape[-1]))
        if link is not None:
            h = link.shape[1]
            rows = order[:, None, :, None].expand(b, h, longest, t)
            link = link.gather(2, rows).gather(3, order[:, None, None, :].expand(b, h, longest, longest))
        return tok, kept, link, real

    # --- heads ---------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, **tokens) -> torch.Tensor:
        h, kept, cls = self.encode(x, **tokens)
        pooled = cls if cls is not None else masked_mean(h, None if kept is None else kept >= 0)
        return self.head(pooled)  # (B, classes)

    def reconstruction_loss(self, x: torch.Tensor, token_mask: torch.Tensor, **tokens) -> torch.Tensor:
        """MSE between predicted and per-patch normalised pixels, on masked patches only."""
        h, kept, _ = self.encode(x, token_mask=token_mask, **tokens)
        pred = self.decoder(h, kept, self.tokens).float()  # (B, T, patch_dim)
        target = patchify(x, self.patch).float()
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
        per_patch = ((pred - target) ** 2).mean(-1)  # (B, T)
        chosen = token_mask.to(per_patch.dtype)
        return (per_patch * chosen).sum() / chosen.sum().clamp(min=1.0)


def build(spec, shape: tuple[int, int, int], num_classes: int, standardize: nn.Module, objective: str) -> ViT:
    return ViT(shape, num_classes, spec, standardize, decoder=objective == "masked-modeling")
