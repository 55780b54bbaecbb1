"""Token ops on text: which word pieces a `tokens` op chooses, and what it writes there.

Keyed exactly like the image ops: every draw is `H(seed, op, view, sample index,
position)` from `keyed`, so a sample's mask does not depend on its batch, and the modes
(static with K copies, dynamic, scheduled) are the same views. Only real word pieces
are candidates: [CLS], [SEP], [PAD] and [MASK] are never chosen.

What is chosen (`unit`):
- token: word pieces; exact counts are the round(rate * n) pieces with the smallest
  keyed uniforms (nested across rates), bernoulli takes each with probability rate.
- word: whole words (the piece that carries the word marker and the pieces after it): words in keyed order until
  the count of pieces is closest to round(rate * n) (BERT's whole-word masking).
- span: SpanBERT's spans: candidate spans of Geo(span_p) words truncated to max_span
  (mean 3.8 words for p = 0.2), each starting at a keyed word; pieces are taken in the
  order of the first span that covers them until exactly round(rate * n) are chosen.
`rarity: a` weights a piece by (count + 1) ** -a, its count in the training split:
rare pieces are chosen more often (exact counts: weighted sampling without replacement,
Efraimidis-Spirakis keys -log(u) / w; bernoulli: probability rate * w / mean w of the
sequence, capped at 1, so the realized rate may fall below the asked one: it is logged).
Everything else is integer hashing and comparisons, the same bits on every device;
rarity's keys go through a float log, so CPU and CUDA may order a rare near-tie apart.

What is written (`action`): mask ([MASK] everywhere), mlm (BERT's 80/10/10: [MASK], a
random piece drawn from the vocabulary by the keyed hash, or the piece itself), drop
(the pieces are removed and the sequence closes up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from masklab.ops import keyed, masks
from masklab.ops.keyed import EXTRA, FILL, UNITS, Keys
from masklab.vocabulary import MASK_ID, N_SPECIAL, PAD_ID, UNK_ID

if TYPE_CHECKING:
    from masklab.ops.call import OpCall

INT32_MAX = 2**31 - 1
SPAN_LENGTHS, SPAN_STARTS = 1, 2  # sub-streams of EXTRA (sub-stream 0 draws mlm's random pieces)


@dataclass
class Vocabulary:
    """What the token ops need to know about the tokenizer, on the batch's device."""

    size: int  # ids in use; random replacements are drawn from [N_SPECIAL, size)
    continuation: torch.Tensor  # (size,) bool: the piece continues a word
    counts: torch.Tensor  # (size,) float32: occurrences in the training split

    def weights(self, rarity: float) -> torch.Tensor:
        """(size,) float32: (count + 1) ** -rarity."""
        return (self.counts + 1.0).pow(-rarity)


def candidates(ids: torch.Tensor) -> torch.Tensor:
    """Word pieces a token op may choose: not [PAD], [CLS], [SEP] or [MASK]. (B, L)"""
    return (ids >= N_SPECIAL) | (ids == UNK_ID)  # the special tokens hold ids 0-4


def _target(rate: float | torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """round(rate * n) per sample (round half to even). (B,) int64"""
    return torch.round(rate * n.to(torch.float32)).to(torch.int64)


def _col(rate: float | torch.Tensor) -> float | torch.Tensor:
    return rate if isinstance(rate, float) else rate[:, None]


def _priority(bits: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Keys whose smallest entries are chosen first: the keyed order, or -log(u) / w."""
    if weight is None:
        return keyed.sortable(bits)
    u = (((bits >> 8) & 0xFFFFFF).to(torch.float32) + 0.5) * (1.0 / 16777216.0)  # (0, 1), never 0
    return -torch.log(u) / weight


def choose_tokens(keys: Keys, cand: torch.Tensor, rate, count: str, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Word pieces chosen independently. weight: (B, L) rarity weights or None. (B, L) bool"""
    bits = keyed.unit_bits(keys.stream(UNITS), cand.shape[1])
    if count == "bernoulli":
        p = _col(rate)
        if weight is not None:
            w = torch.where(cand, weight, 0.0)
            mean = w.sum(1, keepdim=True) / cand.sum(1, keepdim=True).clamp(min=1)
            p = (p * w / mean.clamp(min=1e-12)).clamp(max=1.0)
        return (keyed.uniform(bits) < p) & cand
    order = _priority(bits, weight).masked_fill_(~cand, INT32_MAX if weight is None else math.inf)
    return masks.select_smallest(order, _target(rate, cand.sum(1))) & cand


@dataclass
class Words:
    """Word structure of a batch: a piece that starts a word and the continuation pieces after it."""

    index: torch.Tensor  # (B, L) int64: the word each piece belongs to (0 for non-candidates)
    count: torch.Tensor  # (B,) int64: words per sequence
    length: torch.Tensor  # (B, L) int64: pieces of word j at slot j
    start: (
        torch.Tensor
    )  # (B, L + 1) int64: position of word j's first piece at slot j; the end of the text after the last word


def words(ids: torch.Tensor, cand: torch.Tensor, continuation: torch.Tensor) -> Words:
    b, length = ids.shape
    prev = torch.nn.functional.pad(cand, (1, 0), value=False)[:, :-1]
    first = cand & (~continuation[ids] | ~prev)  # (B, L): a piece that starts a word
    index = (first.cumsum(1) - 1).clamp(min=0)
    index = torch.where(cand, index, 0)
    count = first.sum(1)
    word_len = torch.zeros(b, length, dtype=torch.int64, device=ids.device).scatter_add_(1, index, cand.long())
    pos = torch.arange(length, device=ids.device).expand(b, length)
    end = torch.where(cand, pos + 1, 0).amax(1)  # one past the last candidate
    start = end[:, None].expand(b, length + 1).clone()
    slot = torch.where(first, index, length)  # non-starts write into the spare slot, reset below
    start.scatter_(1, slot, pos.contiguous())
    start[:, length] = end
    start = torch.where(torch.arange(length + 1, device=ids.device) < count[:, None], start, end[:, None])
    return Words(index, count, word_len, start)


def choose_words(
    keys: Keys, cand: torch.Tensor, w: Words, rate, count: str, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Whole words, in keyed order, until the pieces chosen are closest to round(rate * n). (B, L)"""
    b, length = cand.shape
    bits = keyed.unit_bits(keys.stream(UNITS), length)  # slot j: word j of the sample
    valid = torch.arange(length, device=cand.device) < w.count[:, None]
    word_weight = None
    if weight is not None:  # a word weighs as its rarest piece
        word_weight = torch.zeros(b, length, device=cand.device).scatter_reduce_(
            1, w.index, torch.where(cand, weight, 0.0), "amax"
        )
    if count == "bernoulli":
        p = _col(rate)
        if word_weight is not None:
            mean = (word_weight * valid).sum(1, keepdim=True) / valid.sum(1, keepdim=True).clamp(min=1)
            p = (p * word_weight / mean.clamp(min=1e-12)).clamp(max=1.0)
        chosen_word = (keyed.uniform(bits) < p) & valid
    else:
        order_key = _priority(bits, word_weight)
        order_key = torch.where(valid, order_key, INT32_MAX if word_weight is None else math.inf)
        order = order_key.argsort(dim=1, stable=True)
        pieces = w.length.gather(1, order)
        after = pieces.cumsum(1)
        before = after - pieces
        target = _target(rate, cand.sum(1))[:, None]
        take = (before < target) & (after - target <= target - before) & valid.gather(1, order)
        chosen_word = torch.zeros_like(take).scatter_(1, order, take)
    return chosen_word.gather(1, w.index) & cand


def span_lengths(bits: torch.Tensor, p: float, longest: int) -> torch.Tensor:
    """Geo(p) on 1..longest, truncated and renormalised as in SpanBERT, by the inverse CDF
    on the 24-bit uniform of each word: integer comparisons with thresholds computed on
    the host, so every device gives the same lengths. int64"""
    tail = 1.0 - (1.0 - p) ** longest
    cdf = [(1.0 - (1.0 - p) ** k) / tail for k in range(1, longest)]  # P(length <= k)
    thresholds = torch.tensor([math.ceil(c * (1 << 24)) for c in cdf], dtype=torch.int32, device=bits.device)
    u24 = (bits >> 8) & 0xFFFFFF
    return 1 + (u24[..., None] >= thresholds).sum(-1)


def choose_spans(keys: Keys, cand: torch.Tensor, w: Words, rate, p: float, longest: int) -> torch.Tensor:
    """SpanBERT spans of whole words, exactly round(rate * n) pieces. (B, L)"""
    b, length = cand.shape
    spans = length  # candidate spans per sequence: enough to cover it at any rate in practice
    ell = span_lengths(keyed.unit_bits(keys.stream(EXTRA, SPAN_LENGTHS), spans), p, longest)
    u_start = keyed.uniform(keyed.unit_bits(keys.stream(EXTRA, SPAN_STARTS), spans))
    first_word = torch.minimum((u_start * w.count[:, None]).to(torch.int64), (w.count[:, None] - 1).clamp(min=0))
    last_word = torch.minimum(first_word + ell, w.count[:, None])
    lo, hi = w.start.gather(1, first_word), w.start.gather(1, last_word)  # (B, S) piece intervals [lo, hi)
    pos = torch.arange(length, device=cand.device)
    cover = (pos >= lo[..., None]) & (pos < hi[..., None])  # (B, S, L)
    covered = cover.any(1)
    first_span = torch.where(covered, cover.to(torch.int8).argmax(1), spans)  # (B, L)
    order = torch.where(cand & covered, first_span * length + pos, INT32_MAX)
    return masks.select_smallest(order, _target(rate, cand.sum(1))) & cand & covered


def mlm_write(keys: Keys, ids: torch.Tensor, chosen: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """BERT's 80/10/10 on the chosen pieces: [MASK], a keyed random piece of the vocabulary, or kept."""
    length = ids.shape[1]
    u = keyed.uniform(keyed.unit_bits(keys.stream(FILL), length))  # < 0.8: [MASK]; < 0.9: random; else kept
    draw = keyed.uniform(keyed.unit_bits(keys.stream(EXTRA), length))
    random_ids = N_SPECIAL + (draw * (vocab_size - N_SPECIAL)).to(torch.int64).clamp_(max=vocab_size - N_SPECIAL - 1)
    out = torch.where(chosen & (u >= 0.8) & (u < 0.9), random_ids.to(ids.dtype), ids)
    return out.masked_fill_(chosen & (u < 0.8), MASK_ID)


def drop(ids: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """The sequences without the chosen pieces, closed up and padded on the right."""
    order = torch.sort(chosen.to(torch.int8), dim=1, stable=True).indices  # kept pieces first, in order
    kept = (~chosen).gather(1, order)
    return ids.gather(1, order).masked_fill_(~kept, PAD_ID)


# --- the op table's text apply functions (ops/registry.py `text_apply`) --------------


def tokens(call: OpCall) -> tuple[torch.Tensor, torch.Tensor]:
    """The pieces a tokens op chooses, and what it writes there; returns (the ids the
    model reads, the realized fraction of real pieces (B,))."""
    op, ids = call.op, call.x
    cand = candidates(ids)
    chosen = choose(op, call.keys, ids, cand, call.value("rate"), call.pipeline.vocab)
    if call.applied is not None:
        chosen = chosen & call.applied[:, None]
    result = call.result
    result.token_mask, result.token_action = chosen, op["action"]
    result.extras = {"targets": ids}
    realized = chosen.sum(1).to(torch.float32) / cand.sum(1).clamp(min=1).to(torch.float32)
    if op["action"] == "mask":
        return ids.masked_fill(chosen, MASK_ID), realized
    if op["action"] == "mlm":
        return mlm_write(call.keys, ids, chosen, call.pipeline.vocab.size), realized
    return drop(ids, chosen), realized


def choose(op: dict, keys: Keys, ids: torch.Tensor, cand: torch.Tensor, rate, vocab: Vocabulary) -> torch.Tensor:
    """The pieces chosen by `unit`: tokens, whole words or spans. (B, L) bool"""
    weight = vocab.weights(op["rarity"])[ids] if op["rarity"] > 0 else None
    if op["unit"] == "token":
        return choose_tokens(keys, cand, rate, op["count"], weight)
    w = words(ids, cand, vocab.continuation)
    if op["unit"] == "word":
        return choose_words(keys, cand, w, rate, op["count"], weight)
    return choose_spans(keys, cand, w, rate, op["span_p"], op["max_span"])


def attention(call: OpCall) -> tuple[torch.Tensor, torch.Tensor]:
    """Query-key links removed in every block; realized among real tokens."""
    ids = call.x
    b, length = ids.shape
    h = call.pipeline.heads if call.op["per_head"] else 1
    removed = masks.unit_mask(call.keys, call.value("rate"), h * length * length).view(b, h, length, length)
    removed &= ~torch.eye(length, dtype=torch.bool, device=ids.device)  # a token always sees itself
    if call.applied is not None:
        removed &= call.applied[:, None, None, None]
    call.result.attn_mask = ~removed
    real = ids != PAD_ID
    pairs = (real[:, :, None] & real[:, None, :])[:, None]  # (B, 1, L, L)
    realized = (removed & pairs).flatten(1).sum(1).to(torch.float32) / (pairs.flatten(1).sum(1) * h).clamp(min=1)
    return ids, realized
