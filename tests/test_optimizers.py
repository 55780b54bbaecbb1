"""masklab's AdamW and SGD against torch.optim: the same bits, the same state_dict."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from masklab import optimizers


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.GroupNorm(1, 4), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3)
    )


def groups(model: torch.nn.Module) -> list[dict]:
    params = list(model.parameters())
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": 5e-4},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


PAIRS = {
    "adamw": (
        lambda m: torch.optim.AdamW(groups(m), lr=3e-3, betas=(0.9, 0.99), fused=True),
        lambda m: optimizers.AdamW(groups(m), lr=3e-3, betas=(0.9, 0.99)),
    ),
    "sgd": (
        lambda m: torch.optim.SGD(groups(m), lr=0.05, momentum=0.9, nesterov=True),
        lambda m: optimizers.SGD(groups(m), lr=0.05, momentum=0.9, nesterov=True),
    ),
}


def train(model, optimizer, steps: int, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(16, 1, 8, 8, generator=gen), torch.randint(0, 3, (16,), generator=gen)
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] * 0.9  # a schedule, as the training loop sets it
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()


@pytest.mark.parametrize("kind", PAIRS)
def test_updates_are_bit_identical_to_torch_optim(kind):
    make_torch, make_ours = PAIRS[kind]
    a, b = small_model(), small_model()
    train(a, make_torch(a), 6)
    train(b, make_ours(b), 6)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("kind", PAIRS)
def test_state_dicts_load_both_ways_and_resume_exactly(kind):
    make_torch, make_ours = PAIRS[kind]
    # 3 steps with torch.optim, then its state loaded into ours for 3 more; and the other
    # way round: the same parameters, bit for bit
    halves = small_model()
    theirs = make_torch(halves)
    train(halves, theirs, 3)
    ours = make_ours(halves)
    ours.load_state_dict(theirs.state_dict())
    train(halves, ours, 3, seed=2)
    again = small_model()
    first = make_ours(again)
    train(again, first, 3)
    back = make_torch(again)
    back.load_state_dict(first.state_dict())  # ours loads into torch.optim as well
    train(again, back, 3, seed=2)
    for p, q in zip(halves.parameters(), again.parameters()):
        assert torch.equal(p, q)
    assert sorted(ours.state_dict()["param_groups"][0]) == sorted(theirs.state_dict()["param_groups"][0])


def test_a_state_dict_for_other_parameters_is_refused():
    model = small_model()
    opt = optimizers.AdamW(groups(model), lr=1e-3)
    other = optimizers.AdamW([{"params": list(model.parameters())}], lr=1e-3)
    with pytest.raises(ValueError, match="does not match"):
        opt.load_state_dict(other.state_dict())


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_a_torch_without_the_kernels_gets_torch_optim(kind, monkeypatch):
    with_kernels = optimizers.make(kind, groups(small_model()), 1e-3)
    assert isinstance(with_kernels, optimizers.AdamW if kind == "adamw" else optimizers.SGD)
    monkeypatch.delattr(torch, "_fused_adamw_")
    assert not optimizers.kernels_available()
    fallback = optimizers.make(kind, groups(small_model()), 1e-3)
    assert isinstance(fallback, torch.optim.AdamW if kind == "adamw" else torch.optim.SGD)
