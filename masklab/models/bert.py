"""A small BERT-style text encoder: word-piece and position embeddings, the transformer
encoder shared with the ViT (`encoder.py`), a classification head on the [CLS] output
(or the mean of the real tokens), and a masked-language-modelling head whose output
projection is the token embedding matrix (tied, as in BERT).

Inputs are token ids (B, L), padded on the right with [PAD] (id 0). The padding mask is
read off the ids, every block removes padding keys from attention, and a batch is cut
to its longest real sequence first: a sequence's outputs do not depend on how much
padding it carries. The token ops (masklab/ops/word_pieces.py) have already written [MASK] and
random word pieces into the ids; the model only reads them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from masklab.models.encoder import Encoder, init_trunc_normal, masked_mean
from masklab.vocabulary import PAD_ID


class MLMHead(nn.Module):
    """BERT's prediction head: dense, GELU, LayerNorm, then logits over the vocabulary
    with the token embedding as the output weight (plus a bias of its own)."""

    def __init__(self, dim: int, vocab: int) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.bias = nn.Parameter(torch.zeros(vocab))

    def forward(self, h: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return F.linear(self.norm(F.gelu(self.dense(h))), embedding, self.bias)  # (M, vocab)


class TextEncoder(Encoder):
    def __init__(self, max_len: int, num_classes: int, spec, decoder: bool = False) -> None:
        super().__init__()
        self.heads, self.max_len, self.vocab_size = spec.heads, max_len, spec.vocab_size
        self.pool = spec.pool
        self.cls = None  # the [CLS] token is the first id of every sequence
        self.embed = nn.Embedding(spec.vocab_size, spec.dim)
        self.pos = nn.Parameter(torch.zeros(1, max_len, spec.dim))
        self.embed_norm = nn.LayerNorm(spec.dim)
        init_trunc_normal(self.embed.weight, self.pos)
        self._build_encoder(spec)
        self.head = nn.Sequential(nn.Dropout(spec.dropout), nn.Linear(spec.dim, num_classes))
        self.decoder = MLMHead(spec.dim, spec.vocab_size) if decoder else None

    def encode(
        self, ids: torch.Tensor, attn_mask: torch.Tensor | None = None, **_
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(outputs (B, L', dim), real (B, L')) for the batch cut to its longest sequence L'."""
        real = ids != PAD_ID  # (B, L)
        if not torch.compiler.is_compiling():  # compiled graphs keep one shape instead
            length = int(real.sum(1).max()) if ids.shape[0] else 0  # a host sync; free on CPU
            ids, real = ids[:, :length], real[:, :length]
            if attn_mask is not None:
                attn_mask = attn_mask[..., :length, :length]
        length = ids.shape[1]
        tok = self.embed_norm(self.embed(ids) + self.pos[:, :length])  # (B, L', dim)
        h, _ = self._transform(tok, attn_mask, real)
        return h, real

    def forward(self, ids: torch.Tensor, **inputs) -> torch.Tensor:
        h, real = self.encode(ids, **inputs)
        pooled = h[:, 0] if self.pool == "cls" else masked_mean(h, real)
        return self.head(pooled)  # (B, classes)

    def masked_token_logits(
        self, ids: torch.Tensor, token_mask: torch.Tensor, targets: torch.Tensor, **inputs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (M, vocab), target ids (M,)) at the M chosen positions."""
        h, _ = self.encode(ids, **inputs)
        chosen = token_mask[:, : h.shape[1]]
        return self.decoder(h[chosen], self.embed.weight), targets[:, : h.shape[1]][chosen]

    def reconstruction_loss(
        self, ids: torch.Tensor, token_mask: torch.Tensor, targets: torch.Tensor, **inputs
    ) -> torch.Tensor:
        """Cross-entropy on the masked tokens only (the ids the ops replaced or kept)."""
        logits, target = self.masked_token_logits(ids, token_mask, targets, **inputs)
        if target.numel() == 0:
            return logits.sum() * 0.0  # no token chosen in this batch: a zero loss that keeps the graph
        return F.cross_entropy(logits.float(), target)


def build(spec, shape: tuple[int], num_classes: int, standardize: nn.Module, objective: str) -> TextEncoder:
    """Token ids need no standardisation: `standardize` is unused."""
    return TextEncoder(shape[0], num_classes, spec, decoder=objective == "masked-modeling")
