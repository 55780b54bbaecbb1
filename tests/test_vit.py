"""The ViT track: token actions, attention masks, masked modeling, init_from and freezing."""

from __future__ import annotations

import json
import math

import pytest
import torch

from masklab import spec as spec_mod
from masklab.models.build import build_model, freeze_all_but_head, load_matching
from masklab.ops import registry
from masklab.ops.pipeline import OpPipeline
from masklab.vocabulary import MLM_KEEP, MLM_MASK, MLM_RANDOM

from conftest import cli, run_dirs, tiny_spec

VIT = {"arch": "vit", "patch": 4, "dim": 32, "depth": 2, "heads": 4}


def vit(pool: str = "cls", objective: str = "classify"):
    torch.manual_seed(0)
    spec = spec_mod.resolve({"name": "v", "model": {**VIT, "pool": pool}})
    return build_model(spec.model, (1, 28, 28), 10, 0.1, 0.3, objective)


POOL = torch.randint(0, 256, (300, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))


def token_ops(*ops: dict, batch: int = 16, epoch: int = 0, index: torch.Tensor | None = None):
    pipe = OpPipeline([registry.validate(o, "t") for o in ops], 0, (1, 28, 28), token_grid=(49, 4), mlm_pool=POOL)
    x = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    return x, pipe(x, torch.arange(batch) if index is None else index, pipe.epoch_keys(epoch))


@pytest.mark.parametrize("pool", ["cls", "mean"])
@pytest.mark.parametrize("action", ["mask", "drop", "mlm"])
def test_shapes_through_every_action(pool, action):
    model = vit(pool)
    x, out = token_ops({"op": "tokens", "rate": 0.5, "action": action}, {"op": "attention", "rate": 0.2})
    inputs = out.model_inputs()
    assert inputs["token_mask"].shape == (16, 49) and inputs["attn_mask"].shape == (16, 4, 49, 49)
    h, kept, cls = model.encode(x, **inputs)
    expected = 49 - round(0.5 * 49) if action == "drop" else 49
    assert h.shape == (16, expected, 32)
    assert (kept is not None) == (action == "drop")
    assert (cls is not None) == (pool == "cls")
    assert model(x, **inputs).shape == (16, 10)


def test_drop_really_shortens_and_bernoulli_drop_pads():
    model = vit("mean")
    x, out = token_ops({"op": "tokens", "rate": 0.75, "action": "drop"})
    h, kept, _ = model.encode(x, **out.model_inputs())
    assert h.shape[1] == 49 - 37 == 12 and bool((kept >= 0).all())
    assert torch.equal(kept, torch.nonzero(~out.token_mask)[:, 1].view(16, 12))  # the kept positions, in order
    x, out = token_ops({"op": "tokens", "rate": 0.5, "action": "drop", "count": "bernoulli"})
    h, kept, _ = model.encode(x, **out.model_inputs())
    counts = (~out.token_mask).sum(1)
    assert h.shape[1] == int(counts.max()) and torch.equal((kept >= 0).sum(1), counts)
    assert torch.isfinite(model(x, **out.model_inputs())).all()  # padding is masked out, no NaN rows


def test_mlm_proportions_are_bert_like():
    x, out = token_ops({"op": "tokens", "rate": 0.5, "action": "mlm"}, batch=400)
    kind = out.extras["mlm_kind"][out.token_mask]
    n = kind.numel()
    for value, p in ((MLM_MASK, 0.8), (MLM_RANDOM, 0.1), (MLM_KEEP, 0.1)):
        share = float((kind == value).float().mean())
        assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / n), (value, share)
    patches = out.extras["mlm_patches"]  # (B, T, 16): the same-position patch of a keyed training image
    from masklab.models.vit import patchify

    pool = patchify(POOL.float().mul_(1.0 / 255.0), 4)  # (300, 49, 16)
    t = 5
    matches = (patches[:, t, None, :] == pool[None, :, t, :]).all(-1)  # (B, 300): which pool images fit
    assert bool(matches.any(1).all())  # every replacement is a real training patch at that position
    sources = matches.float().argmax(1)
    assert len(set(sources.tolist())) > 200  # drawn over the whole pool, not a few batch neighbours


def test_mlm_replacements_do_not_depend_on_the_batch():
    op = {"op": "tokens", "rate": 0.5, "action": "mlm"}
    _, full = token_ops(op, batch=16)
    order = torch.tensor([11, 3, 7])
    _, small = token_ops(op, batch=3, index=order)  # other batch size, order and neighbours
    for row, i in enumerate(order.tolist()):
        assert torch.equal(small.extras["mlm_patches"][row], full.extras["mlm_patches"][i])
        assert torch.equal(small.extras["mlm_kind"][row], full.extras["mlm_kind"][i])
        assert torch.equal(small.token_mask[row], full.token_mask[i])


def test_attention_masks_block_the_masked_links():
    model = vit("mean")
    x, out = token_ops({"op": "attention", "rate": 0.5, "per_head": True})
    link = out.attn_mask
    assert link.shape == (16, 4, 49, 49) and bool(link.diagonal(dim1=-2, dim2=-1).all())
    assert abs(float((~link).float().mean()) - 0.5) < 0.02
    block = model.blocks[0]
    tokens = torch.randn(16, 49, 32)
    weights = block.attention_weights(tokens, link).detach()
    assert float(weights[~link].abs().max()) == 0.0  # no weight on a removed link
    assert torch.allclose(weights.sum(-1), torch.ones(16, 4, 49))
    # a query's block output does not depend on tokens it cannot see in any head
    seen_by_0 = link[0, :, 0, :].any(0)
    hidden = int((~seen_by_0).nonzero()[0])
    changed = tokens.clone()
    changed[0, hidden] += 3.0 * torch.randn(32)  # (a constant shift would vanish in LayerNorm)
    block.eval()
    assert torch.allclose(block(tokens, link)[0, 0], block(changed, link)[0, 0], atol=1e-5)
    assert not torch.allclose(block(tokens, None)[0, 0], block(changed, None)[0, 0], atol=1e-5)


def test_reconstruction_loss_counts_only_masked_patches():
    model = vit("mean", "masked-modeling")
    x, out = token_ops({"op": "tokens", "rate": 0.5, "action": "mask"})
    inputs = out.model_inputs()
    loss = model.reconstruction_loss(x, **inputs)
    h, kept, _ = model.encode(x, **inputs)
    pred = model.decoder(h, kept, 49)
    from masklab.models.vit import patchify

    target = patchify(x, 4)
    target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    per_patch = ((pred - target) ** 2).mean(-1)
    m = inputs["token_mask"]
    assert loss.item() == pytest.approx(per_patch[m].mean().item(), rel=1e-5)
    assert loss.item() != pytest.approx(per_patch.mean().item(), rel=1e-3)
    dropped = model.reconstruction_loss(x, **{**inputs, "token_action": "drop"})
    assert torch.isfinite(dropped) and dropped.item() > 0


def test_init_from_loads_encoder_tensors_and_freeze_keeps_them():
    source = vit("cls", "masked-modeling")
    target = vit("cls")
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)  # make the source clearly different from a fresh init
    loaded = load_matching(target, source.state_dict())
    assert "embed.weight" in loaded and "blocks.1.mlp.2.weight" in loaded and "pos" in loaded
    assert not any(k.startswith(("head.", "decoder.")) for k in loaded)
    for k in loaded:
        assert torch.equal(target.state_dict()[k], source.state_dict()[k])
    assert not torch.equal(target.head[1].weight, source.head[1].weight)
    frozen = freeze_all_but_head(target)
    assert frozen > 0 and [n for n, p in target.named_parameters() if p.requires_grad] == [
        "head.1.weight",
        "head.1.bias",
    ]


def test_pretrain_then_finetune_end_to_end(workdir, write_spec):
    pre = tiny_spec(
        name="pre",
        model=VIT,
        train={"objective": "masked-modeling", "epochs": 2},
        train_ops=[{"op": "tokens", "rate": 0.75, "action": "drop", "mode": "dynamic"}],
    )
    out = cli("train", write_spec(pre, "pre.yaml"), "-q", "-f", "json")
    assert out.exit_code == 0, out.stderr
    (row,) = json.loads(out.stdout)["rows"]
    assert row["test_acc"] is None and row["test_loss"] > 0
    (pre_dir,) = run_dirs(workdir)
    metrics = [json.loads(x) for x in (pre_dir / "metrics.jsonl").read_text().splitlines()]
    assert "val_loss" in metrics[0] and "train_acc" not in metrics[0]
    assert metrics[0]["ops"][0]["realized"] == pytest.approx(37 / 49, abs=1e-6)

    ft = tiny_spec(
        name="ft",
        model=VIT,
        train={"init_from": "pre", "freeze": "encoder", "epochs": 1},
        train_ops=[{"op": "tokens", "rate": 0.25, "action": "mask", "mode": "static", "copies": 2}],
    )
    out = cli("train", write_spec(ft, "ft.yaml"), "-q", "-f", "json")
    assert out.exit_code == 0, out.stderr
    ft_dir = next(d for d in run_dirs(workdir) if d.name.startswith("ft-"))
    info = json.loads((ft_dir / "run.json").read_text())
    assert info["init_from"]["run"] == pre_dir.name and info["init_from"]["tensors_loaded"] > 10
    assert info["trainable"] == 32 * 10 + 10  # a linear probe: only the head trains
    before = torch.load(pre_dir / "model.pt", weights_only=True)
    after = torch.load(ft_dir / "model.pt", weights_only=True)
    assert torch.equal(before["blocks.0.qkv.weight"], after["blocks.0.qkv.weight"])  # frozen encoder
    assert cli("eval", ft_dir.name, "-f", "json").exit_code == 0
    refused = cli("eval", pre_dir.name)
    assert refused.exit_code == 2 and "masked-modeling run without a classifier" in refused.stderr


@pytest.mark.parametrize(
    "change, code, message",
    [
        ({"model": {**VIT, "patch": 5}}, 2, "model.patch: must divide the image size 28x28, got 5"),
        ({"model": VIT, "train": {"objective": "masked-modeling"}}, 2, "masked-modeling needs a tokens op"),
        (
            {"train": {"objective": "masked-modeling"}, "train_ops": [{"op": "tokens", "rate": 0.5}]},
            2,
            "masked-modeling needs model.arch vit",
        ),
        ({"model": VIT, "train": {"init_from": "nothing-here"}}, 1, "nothing-here: no such run"),  # runs not found
    ],
)
def test_vit_spec_errors(workdir, write_spec, change, code, message):
    result = cli("train", write_spec(tiny_spec(**change)))
    assert result.exit_code == code and message in result.stderr
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert run_dirs(workdir) == []
