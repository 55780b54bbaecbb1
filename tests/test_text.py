"""The text track: token ops (keyed, exact, whole words, spans, rarity), the text encoder
(padding invariance, masked-token loss, attention masks) and what they need."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from masklab import spec as spec_mod
from masklab.models.build import build_model, load_matching
from masklab.ops import keyed, registry
from masklab.ops.pipeline import TextOpPipeline
from masklab.ops.word_pieces import Vocabulary, candidates, span_lengths, words
from masklab.vocabulary import CLS_ID, MASK_ID, N_SPECIAL, PAD_ID, SEP_ID

V = 64  # a synthetic vocabulary: ids 5..63, every third piece continues a word
VOCAB = Vocabulary(
    size=V,
    continuation=torch.tensor([False] * N_SPECIAL + [i % 3 == 0 for i in range(N_SPECIAL, V)]),
    counts=torch.tensor([0.0] * N_SPECIAL + [float(1 + (i * 37) % 500) for i in range(N_SPECIAL, V)]),
)


def batch(n: int = 64, length: int = 40, seed: int = 0) -> torch.Tensor:
    """Token ids (n, length): [CLS] pieces [SEP] [PAD]..., lengths 3..length."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(N_SPECIAL, V, (n, length), generator=g)
    lengths = torch.randint(3, length + 1, (n,), generator=g)
    pos = torch.arange(length)
    ids = torch.where(pos < lengths[:, None] - 1, ids, PAD_ID)
    ids[:, 0] = CLS_ID
    ids[torch.arange(n), lengths - 1] = SEP_ID
    return ids


def pipe(*ops: dict, seed: int = 0, heads: int = 4) -> TextOpPipeline:
    return TextOpPipeline([registry.validate(o, "t") for o in ops], seed, VOCAB, heads=heads)


def run(p: TextOpPipeline, ids: torch.Tensor, index: torch.Tensor | None = None, epoch: int = 0):
    return p(ids, torch.arange(len(ids)) if index is None else index, p.epoch_keys(epoch))


UNITS = [{"unit": "token"}, {"unit": "word"}, {"unit": "span"}, {"unit": "token", "rarity": 1.0}]


@pytest.mark.parametrize("extra", UNITS, ids=lambda e: "-".join(f"{k}={v}" for k, v in e.items()))
@pytest.mark.parametrize("action", ["mask", "mlm", "drop"])
def test_same_sample_same_draws_in_any_batch(extra, action):
    """The bar: a sample's chosen pieces and mlm replacements depend on its dataset index only."""
    ids = batch(48)
    p = pipe({"op": "tokens", "rate": 0.3, "action": action, **extra})
    full = run(p, ids)
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        rows = torch.randperm(48, generator=g)[: 3 + 5 * seed]  # other sizes, orders and neighbours
        part = run(p, ids[rows], rows)
        assert torch.equal(part.images, full.images[rows])
        assert torch.equal(part.token_mask, full.token_mask[rows])


@pytest.mark.parametrize("extra", UNITS[:3], ids=lambda e: e["unit"])
def test_special_tokens_and_padding_are_never_chosen(extra):
    ids = batch(64)
    out = run(pipe({"op": "tokens", "rate": 0.9, "action": "mask", **extra}), ids)
    special = (ids == PAD_ID) | (ids == CLS_ID) | (ids == SEP_ID)
    assert not bool((out.token_mask & special).any())
    assert torch.equal(out.images[special], ids[special])


@pytest.mark.parametrize("unit", ["token", "span"])
def test_exact_counts_and_nesting(unit):
    ids = batch(64)
    n = candidates(ids).sum(1)
    low = run(pipe({"op": "tokens", "rate": 0.15, "unit": unit}), ids)
    high = run(pipe({"op": "tokens", "rate": 0.4, "unit": unit}), ids)
    assert torch.equal(low.token_mask.sum(1), torch.round(0.15 * n.float()).long())
    assert torch.equal(high.token_mask.sum(1), torch.round(0.4 * n.float()).long())
    assert not bool((low.token_mask & ~high.token_mask).any())  # a lower rate masks a subset
    assert low.stats.item() == pytest.approx(float((low.token_mask.sum(1) / n).mean()), abs=1e-6)


def word_groups(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    cand = candidates(ids)
    return words(ids, cand, VOCAB.continuation).index, cand


@pytest.mark.parametrize("unit", ["word", "span"])
def test_whole_words_are_chosen_whole_and_nested(unit):
    ids = batch(64)
    index, cand = word_groups(ids)
    low = run(pipe({"op": "tokens", "rate": 0.15, "unit": unit}), ids).token_mask
    high = run(pipe({"op": "tokens", "rate": 0.4, "unit": unit}), ids).token_mask
    assert not bool((low & ~high).any())
    whole = 0
    for row in range(64):
        for w in index[row][cand[row]].unique():
            members = high[row][cand[row] & (index[row] == w)]
            whole += bool(members.all() or not members.any())
            if unit == "word":  # span masks end exactly at the count, possibly inside the last word
                assert bool(members.all() or not members.any()), (row, int(w))
    assert whole > 0
    n = cand.sum(1).float()
    realized = float((high.sum(1) / n).mean())
    assert abs(realized - 0.4) < 0.03  # the prefix of words closest to the count


def test_word_starts_follow_the_marker():
    ids = torch.tensor([[CLS_ID, 5, 6, 7, 6, SEP_ID, PAD_ID]])  # 6 continues (6 % 3 == 0), 5 and 7 start words
    index, cand = word_groups(ids)
    assert index[0][cand[0]].tolist() == [0, 0, 1, 1]


def test_span_lengths_are_spanbert_geometric():
    bits = keyed.unit_bits(torch.arange(4000, dtype=torch.int32), 50).flatten()
    lengths = span_lengths(bits, 0.2, 10)
    assert int(lengths.min()) == 1 and int(lengths.max()) == 10
    # Geo(0.2) truncated to 1..10 and renormalised: mean 3.79 (SpanBERT reports 3.8), P(1) = 0.2 / (1 - 0.8**10)
    expected_mean = sum(k * 0.2 * 0.8 ** (k - 1) for k in range(1, 11)) / (1 - 0.8**10)
    assert float(lengths.float().mean()) == pytest.approx(expected_mean, abs=0.03)
    assert float((lengths == 1).float().mean()) == pytest.approx(0.2 / (1 - 0.8**10), abs=0.01)


def test_mlm_is_80_10_10_with_replacements_from_the_vocabulary():
    ids = batch(400)
    out = run(pipe({"op": "tokens", "rate": 0.5, "action": "mlm"}), ids)
    chosen = out.token_mask
    new, old = out.images[chosen], ids[chosen]
    masked = new == MASK_ID
    changed = ~masked & (new != old)
    n = chosen.sum().item()
    assert abs(masked.float().mean().item() - 0.8) < 4 * math.sqrt(0.16 / n)
    # a random piece equals the original one time in 55: 10% random, 10% kept, less that overlap
    assert abs(changed.float().mean().item() - 0.1 * (1 - 1 / (V - N_SPECIAL))) < 4 * math.sqrt(0.09 / n)
    assert int(new[changed].min()) >= N_SPECIAL and int(new[changed].max()) < V
    assert torch.equal(out.images[~chosen], ids[~chosen])
    assert torch.equal(out.extras["targets"], ids)


def test_static_copies_and_dynamic_views():
    ids = batch(16)

    def chosen(mode: dict, epoch: int) -> torch.Tensor:
        return run(pipe({"op": "tokens", "rate": 0.3, **mode}), ids, epoch=epoch).token_mask

    static3 = {"mode": "static", "copies": 3}
    assert torch.equal(chosen(static3, 0), chosen(static3, 3))
    assert not torch.equal(chosen(static3, 0), chosen(static3, 1))
    assert torch.equal(chosen({"mode": "static"}, 0), chosen({"mode": "static"}, 7))
    assert not torch.equal(chosen({"mode": "dynamic"}, 1), chosen(static3, 1))  # static copies: their own keys
    shared = {**static3, "share_views": True}
    assert torch.equal(chosen({"mode": "dynamic"}, 1), chosen(shared, 1))  # unless asked: copy k is dynamic's epoch k
    assert not torch.equal(chosen({"mode": "dynamic"}, 0), chosen({"mode": "dynamic"}, 3))


def test_rarity_masks_rare_pieces_more_and_logs_the_realized_rate():
    ids = batch(256)
    counts = VOCAB.counts[ids]
    uniform = run(pipe({"op": "tokens", "rate": 0.2}), ids).token_mask
    rare = run(pipe({"op": "tokens", "rate": 0.2, "rarity": 1.0}), ids).token_mask
    assert torch.equal(rare.sum(1), uniform.sum(1))  # exact counts either way
    assert float(counts[rare].mean()) < 0.75 * float(counts[uniform].mean())  # 166 vs 257
    capped = run(pipe({"op": "tokens", "rate": 0.5, "rarity": 2.0, "count": "bernoulli"}), ids)
    assert capped.stats.item() < 0.4  # probabilities capped at 1 for the rarest pieces: fewer than asked
    plain = run(pipe({"op": "tokens", "rate": 0.5, "count": "bernoulli"}), ids)
    assert plain.stats.item() == pytest.approx(0.5, abs=0.03)


def test_drop_closes_the_sequence_up():
    ids = batch(32)
    out = run(pipe({"op": "tokens", "rate": 0.5, "action": "drop"}), ids)
    for row in range(32):
        kept = ids[row][~out.token_mask[row] & (ids[row] != PAD_ID)]
        assert out.images[row][: len(kept)].tolist() == kept.tolist()
        assert bool((out.images[row][len(kept) :] == PAD_ID).all())


def test_attention_op_on_text():
    ids = batch(8)
    out = run(pipe({"op": "attention", "rate": 0.3}), ids)
    link = out.attn_mask
    assert link.shape == (8, 4, 40, 40) and bool(link.diagonal(dim1=-2, dim2=-1).all())
    assert out.stats.item() == pytest.approx(0.3, abs=0.03)  # among links between real tokens


# --- the model ---------------------------------------------------------------------------------

BERT = {"arch": "bert", "dim": 32, "depth": 2, "heads": 4, "vocab_size": V, "max_len": 48, "dropout": 0.0}


def bert(pool: str = "cls", objective: str = "classify"):
    torch.manual_seed(0)
    spec = spec_mod.resolve({"name": "b", "data": {"dataset": "kjv-mini"}, "model": {**BERT, "pool": pool}})
    return build_model(spec.model, (48,), 5, 0.0, 1.0, objective).eval()


def padded(seq: list[int], length: int) -> torch.Tensor:
    return torch.tensor(seq + [PAD_ID] * (length - len(seq)))


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_outputs_do_not_change_with_the_amount_of_padding(pool, monkeypatch):
    model = bert(pool)
    short = [CLS_ID, 7, 12, 40, 9, 33, SEP_ID]
    long = [CLS_ID] + list(range(N_SPECIAL, N_SPECIAL + 40)) + [SEP_ID]
    alone = torch.stack([padded(short, 7)])  # no padding at all
    lots = torch.stack([padded(short, 48), padded(long, 48)])  # 35 padding tokens inside the batch
    with torch.no_grad():
        h_alone, _ = model.encode(alone)
        h_lots, real = model.encode(lots)
        assert torch.allclose(h_lots[0, :7], h_alone[0], atol=1e-5)
        assert torch.allclose(model(lots)[0], model(alone)[0], atol=1e-5)
        # without the key-padding mask the padding would leak in: the same comparison fails
        import masklab.models.encoder as enc

        unmasked = enc.attention_mask
        monkeypatch.setattr(enc, "attention_mask", lambda link, real, length: unmasked(link, None, length))
        assert not torch.allclose(model(lots)[0], model(alone)[0], atol=1e-3)


def test_masked_token_loss_counts_only_the_chosen_pieces():
    model = bert("cls", "masked-modeling")
    ids = batch(8, 48)
    out = run(pipe({"op": "tokens", "rate": 0.3, "action": "mlm"}), ids)
    inputs = out.model_inputs()
    loss = model.reconstruction_loss(out.images, **inputs)
    h, _ = model.encode(out.images)
    logits = model.decoder(h, model.embed.weight)  # (B, L', V)
    chosen = out.token_mask[:, : h.shape[1]]
    manual = F.cross_entropy(logits[chosen], ids[:, : h.shape[1]][chosen])
    assert loss.item() == pytest.approx(manual.item(), rel=1e-5)
    other = torch.where(out.token_mask, ids, torch.full_like(ids, 7))  # change every unchosen target
    assert model.reconstruction_loss(out.images, **{**inputs, "targets": other}).item() == pytest.approx(loss.item())


def test_per_head_attention_masks_reach_the_text_encoder():
    model = bert("mean")
    ids = batch(4, 48)
    out = run(pipe({"op": "attention", "rate": 0.5, "per_head": True}), ids)
    with torch.no_grad():
        masked = model(out.images, **out.model_inputs())
        plain = model(out.images)
    assert masked.shape == (4, 5) and not torch.allclose(masked, plain, atol=1e-4)


def test_fine_tuning_loads_the_encoder_but_not_the_heads():
    source, target = bert("cls", "masked-modeling"), bert("cls")
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)
    loaded = load_matching(target, source.state_dict())
    assert {"embed.weight", "pos", "embed_norm.weight", "blocks.1.qkv.weight", "norm.bias"} <= set(loaded)
    assert not any(k.startswith(("head.", "decoder.")) for k in loaded)
    assert torch.equal(target.embed.weight, source.embed.weight)


def test_per_sample_ranges_and_schedules_give_per_sample_counts():
    ids = batch(64)
    n = candidates(ids).sum(1)
    out = run(pipe({"op": "tokens", "rate": [0.1, 0.5], "unit": "token"}), ids)
    rates = out.token_mask.sum(1) / n
    assert float(rates.min()) < 0.2 and float(rates.max()) > 0.4  # drawn per sample from the range
    sched = {
        "op": "tokens",
        "rate": {"schedule": "linear", "start": 0.4, "end": 0.1, "over": "step"},
        "mode": "scheduled",
    }
    p = pipe(sched)
    p.epochs, p.steps_per_epoch = 1, 10
    first = p(ids, torch.arange(64), p.epoch_keys(0, 0)).stats.item()
    last = p(ids, torch.arange(64), p.epoch_keys(0, 9)).stats.item()
    assert first == pytest.approx(0.4, abs=0.03) and last < first - 0.2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_token_ops_give_the_same_bits_on_cuda():
    ids = batch(32)
    for extra in UNITS[:3]:  # integer hashing and comparisons only (rarity's keys use a float log)
        p = pipe({"op": "tokens", "rate": 0.3, "action": "mlm", **extra})
        cpu = run(p, ids)
        p.vocab = Vocabulary(V, VOCAB.continuation.cuda(), VOCAB.counts.cuda())
        gpu = p(ids.cuda(), torch.arange(32, device="cuda"), p.epoch_keys(0, device="cuda"))
        assert torch.equal(gpu.images.cpu(), cpu.images) and torch.equal(gpu.token_mask.cpu(), cpu.token_mask)
