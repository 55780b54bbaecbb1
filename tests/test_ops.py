"""The keyed ops: reproducibility, modes, exact counts, nesting, noise statistics."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings, strategies as st

from masklab.errors import SpecError
from masklab.ops import keyed, noise, registry
from masklab.ops.pipeline import OpPipeline

N = 512
SHAPE = (1, 28, 28)
MASK_OPS = [
    {"op": "pixel", "rate": 0.3},
    {"op": "pixel", "rate": 0.3, "count": "bernoulli"},
    {"op": "patch", "rate": 0.5, "size": 4},
    {"op": "block", "rate": 0.4, "size": 4},
    {"op": "rect", "area": [0.05, 0.3]},
    {"op": "stripes", "rate": 0.25, "axis": "both", "max_width": 3},
]


def pipeline(*ops: dict, seed: int = 0, epochs: int = 10, **kw) -> OpPipeline:
    return OpPipeline([registry.validate(o, "test") for o in ops], seed, SHAPE, epochs=epochs, **kw)


def images(n: int = N, value: float | None = None) -> torch.Tensor:
    if value is not None:
        return torch.full((n, *SHAPE), value)
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(1))


def masks(p: OpPipeline, index: torch.Tensor, epoch: int = 0, batch: int | None = None) -> torch.Tensor:
    batch = batch or len(index)
    x = images(len(index))
    plan = p.epoch_keys(epoch)
    parts = [p(x[i : i + batch], index[i : i + batch], plan).mask for i in range(0, len(index), batch)]
    return torch.cat(parts)


def test_fmix32_tensor_matches_the_reference_integer_code():
    values = torch.randint(-(2**31), 2**31 - 1, (1000,), dtype=torch.int32, generator=torch.Generator().manual_seed(0))
    hashed = keyed.fmix32(values)
    for v, h in zip(values.tolist()[:200], hashed.tolist()[:200]):
        assert keyed.to_int32(keyed._fmix32_int(v)) == h


def test_unit_bits_are_distinct_within_a_sample_and_uniform_in_range():
    keys = keyed.batch_keys(torch.arange(64), torch.tensor(keyed.mix(1, 2, 3), dtype=torch.int32))
    bits = keyed.unit_bits(keys, 784)
    assert all(len(set(row.tolist())) == 784 for row in bits)
    u = keyed.uniform(bits)
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    assert abs(float(u.mean()) - 0.5) < 0.01


@pytest.mark.parametrize("op", MASK_OPS, ids=lambda o: o["op"] + o.get("count", ""))
def test_masks_do_not_depend_on_batch_size_or_order(op):
    p = pipeline(op)
    index = torch.arange(N)
    whole = masks(p, index)
    assert torch.equal(whole, masks(p, index, batch=1))
    assert torch.equal(whole, masks(p, index, batch=7))
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(5))
    assert torch.equal(whole[perm], masks(p, index[perm], batch=37))


@pytest.mark.parametrize("op", MASK_OPS, ids=lambda o: o["op"] + o.get("count", ""))
def test_modes_static_dynamic_and_copies(op):
    index = torch.arange(64)
    static = pipeline({**op, "mode": "static"})
    assert all(torch.equal(masks(static, index, 0), masks(static, index, e)) for e in (1, 2, 7))
    dynamic = pipeline({**op, "mode": "dynamic"})
    m0, m1 = masks(dynamic, index, 0), masks(dynamic, index, 1)
    assert (m0 != m1).flatten(1).any(1).float().mean() > 0.9  # nearly every sample changes
    copies = pipeline({**op, "mode": "static", "copies": 3})
    per_epoch = [masks(copies, index, e) for e in range(6)]
    for e in range(3):
        assert torch.equal(per_epoch[e], per_epoch[e + 3])  # cycles with period K
    for i in range(len(index)):
        distinct = {per_epoch[e][i].numpy().tobytes() for e in range(6)}
        assert len(distinct) == 3  # exactly K distinct masks per sample


def test_exact_counts_are_exact():
    index = torch.arange(N)
    cases = [
        ({"op": "pixel", "rate": 0.3}, round(0.3 * 784)),
        ({"op": "patch", "rate": 0.5, "size": 7}, 8 * 49),
        ({"op": "patch", "rate": 0.5, "size": 2}, 98 * 4),
        ({"op": "block", "rate": 0.4, "size": 4}, round(0.4 * 49) * 16),
        ({"op": "stripes", "rate": 0.25, "axis": "rows", "max_width": 4}, 7 * 28),
    ]
    for op, pixels in cases:
        counts = masks(pipeline(op), index).flatten(1).sum(1)
        assert counts.tolist() == [pixels] * N, op


def test_bernoulli_rate_is_within_binomial_tolerance():
    m = masks(pipeline({"op": "pixel", "rate": 0.3, "count": "bernoulli"}), torch.arange(N))
    n = m.numel()
    assert abs(float(m.float().mean()) - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n)
    assert len(set(m.flatten(1).sum(1).tolist())) > 10  # counts vary per sample


EXACT_OPS = st.one_of(
    st.just({"op": "pixel"}),
    st.builds(lambda s: {"op": "patch", "size": s}, st.sampled_from([2, 4, 7, 14])),
    st.builds(
        lambda s, m, lo, hi: {"op": "block", "size": s, "min_patches": m, "aspect": [lo, lo * hi]},
        st.sampled_from([2, 4, 7]),
        st.integers(1, 8),
        st.floats(0.2, 1.0),
        st.floats(1.0, 5.0),
    ),
    st.builds(
        lambda a, w: {"op": "stripes", "axis": a, "max_width": w},
        st.sampled_from(["rows", "cols", "both"]),
        st.integers(1, 6),
    ),
)


@settings(max_examples=60, deadline=None)
@given(op=EXACT_OPS, rates=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=4), seed=st.integers(0, 2**31 - 1))
def test_exact_count_masks_are_nested_across_rates(op, rates, seed):
    """README: exact-count masks are nested, a lower rate masks a subset of a higher rate's mask."""
    index = torch.arange(40)
    drawn = [masks(pipeline({**op, "rate": r}, seed=seed), index) for r in sorted(rates)]
    for low, high in zip(drawn, drawn[1:]):
        assert not bool((low & ~high).any())


@settings(max_examples=40, deadline=None)
@given(rates=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=4), seed=st.integers(0, 2**31 - 1))
def test_token_masks_are_nested_across_rates(rates, seed):
    from masklab.ops.masks import unit_mask

    table = keyed.batch_keys(torch.arange(40), torch.tensor([keyed.mix(seed, 0, 0, s) for s in keyed.STREAMS]))
    drawn = [unit_mask(keyed.Keys(table), r, 49) for r in sorted(rates)]
    for (r, low), high in zip(zip(sorted(rates), drawn), drawn[1:]):
        assert not bool((low & ~high).any()) and low.sum(1).tolist() == [round(r * 49)] * 40


def test_scheduled_rate_follows_its_schedule_and_stays_nested():
    sched = {"op": "pixel", "rate": {"schedule": "linear", "start": 0.5, "end": 0.1}, "mode": "static"}
    p = pipeline(sched, epochs=5)
    index = torch.arange(32)
    per_epoch = [masks(p, index, e) for e in range(5)]
    rates = [float(m.float().mean()) for m in per_epoch]
    assert rates == pytest.approx([round(r * 784) / 784 for r in (0.5, 0.4, 0.3, 0.2, 0.1)])
    for a, b in zip(per_epoch[1:], per_epoch[:-1]):
        assert bool((a & ~b).sum() == 0)  # static + falling rate: each epoch masks a subset


def test_per_sample_range_and_probability():
    index = torch.arange(2000)
    m = masks(pipeline({"op": "pixel", "rate": [0.1, 0.5]}), index)
    per_sample = m.flatten(1).float().mean(1)
    assert float(per_sample.min()) >= 0.099 and float(per_sample.max()) <= 0.501
    assert abs(float(per_sample.mean()) - 0.3) < 0.01
    p = pipeline({"op": "patch", "rate": 0.5, "size": 4, "p": 0.25})
    applied = masks(p, index).flatten(1).any(1).float().mean()
    assert abs(float(applied) - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 2000)


def test_rect_clamps_instead_of_skipping_and_region_is_fixed():
    index = torch.arange(256)
    huge = masks(pipeline({"op": "rect", "area": [0.9, 1.0], "aspect": [4.0, 8.0]}), index)
    assert bool(huge.flatten(1).any(1).all())  # every sample got a (clamped) box
    region = masks(pipeline({"op": "region", "box": [2, 3, 5, 7]}), index)
    expected = torch.zeros(28, 28, dtype=torch.bool)
    expected[2:7, 3:10] = True
    assert bool((region == expected).all())


def test_fill_policies():
    index = torch.arange(64)
    x = images(64, 0.5)
    for fill, check in [("zero", lambda v: v == 0), (0.25, lambda v: v == 0.25), ("mean", lambda v: v == 0.125)]:
        p = pipeline({"op": "pixel", "rate": 0.5, "fill": fill}, fill_mean=0.125, fill_std=0.3)
        out = p(x, index, p.epoch_keys(0))
        assert bool(check(out.images[out.mask[:, None]]).all()) and bool((out.images[~out.mask[:, None]] == 0.5).all())
    p = pipeline({"op": "pixel", "rate": 0.5, "fill": "uniform"})
    filled = p(x, index, p.epoch_keys(0))
    values = filled.images[filled.mask[:, None]]
    assert abs(float(values.mean()) - 0.5) < 0.01 and float(values.std()) > 0.25


def test_gaussian_noise_sigma_before_clipping():
    x = images(N, 0.5)
    p = pipeline({"op": "gaussian", "sigma": 0.2, "clip": False})
    out = p(x, torch.arange(N), p.epoch_keys(0))
    delta = out.images - x
    assert abs(float(delta.std()) - 0.2) < 0.002 and abs(float(delta.mean())) < 0.002
    assert float(delta.abs().max()) <= 0.2 * 4.86  # the Box-Muller radius cut
    clipped = pipeline({"op": "gaussian", "severity": 5})
    assert clipped.ops[0]["sigma"] == 0.38
    y = clipped(x, torch.arange(N), clipped.epoch_keys(0)).images
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_salt_pepper_exact_counts_and_ratio():
    x = images(N, 0.5)
    p = pipeline({"op": "salt_pepper", "amount": 0.1, "salt_ratio": 0.3})
    y = p(x, torch.arange(N), p.epoch_keys(0)).images.flatten(1)
    hits = round(0.1 * 784)
    assert ((y == 1.0).sum(1)).tolist() == [round(hits * 0.3)] * N
    assert ((y == 0.0).sum(1)).tolist() == [hits - round(hits * 0.3)] * N


def test_shot_noise_is_poisson():
    x = images(N, 0.5)
    c = 20.0
    p = pipeline({"op": "shot", "c": c, "clip": False})
    y = p(x, torch.arange(N), p.epoch_keys(0)).images
    counts = (y * c).round()
    assert torch.allclose(y * c, counts, atol=1e-4)  # integer photon counts
    assert abs(float(y.mean()) - 0.5) < 0.003
    assert float(y.var()) == pytest.approx(0.5 / c, rel=0.03)  # Var = x / c
    lam = torch.tensor([0.0, 0.5, 3.0, 40.0], dtype=torch.float64).repeat_interleave(20000)
    u = torch.rand(len(lam), dtype=torch.float64, generator=torch.Generator().manual_seed(0)).clamp(1e-9, 1 - 1e-9)
    k = noise.poisson_inverse(lam, u).view(4, -1)
    assert k[0].max() == 0
    for row, mu in zip(k[1:], (0.5, 3.0, 40.0)):
        assert float(row.mean()) == pytest.approx(mu, rel=0.03) and float(row.var()) == pytest.approx(mu, rel=0.06)


def test_speckle_and_uniform_noise():
    x = images(N, 0.5)
    sp = pipeline({"op": "speckle", "sigma": 0.2, "clip": False})
    d = sp(x, torch.arange(N), sp.epoch_keys(0)).images - x
    assert float(d.std()) == pytest.approx(0.5 * 0.2, rel=0.02)
    un = pipeline({"op": "uniform", "width": 0.4, "clip": False})
    d = un(x, torch.arange(N), un.epoch_keys(0)).images - x
    assert float(d.min()) >= -0.2 and float(d.max()) < 0.2
    assert float(d.std()) == pytest.approx(0.4 / math.sqrt(12), rel=0.02)


def test_realized_stats_report_rate_and_magnitude():
    p = pipeline({"op": "patch", "rate": 0.5, "size": 7}, {"op": "gaussian", "sigma": 0.1, "clip": False})
    out = p(images(N, 0.5), torch.arange(N), p.epoch_keys(0))
    rate, magnitude = out.stats.tolist()
    assert rate == pytest.approx(0.5)
    assert magnitude == pytest.approx(0.1 * math.sqrt(2 / math.pi), rel=0.02)  # E|N(0, s)|


@pytest.mark.parametrize(
    "op, message",
    [
        ({"op": "pixel", "rate": 1.2}, "test.rate: must be in [0, 1], got 1.2"),
        ({"op": "gaussian", "sigma": -0.1}, "test.sigma: must be in [0, 10], got -0.1"),
        ({"op": "gausian", "sigma": 0.1}, "did you mean 'gaussian'?"),
        ({"op": "patch"}, "test.rate: required for patch"),
        ({"op": "patch", "rate": 0.5, "szie": 4}, "test.szie: unknown key; did you mean 'size'?"),
        ({"op": "patch", "rate": 0.5, "copies": 3}, "test.copies: only mode static keeps copies"),
        ({"op": "gaussian", "sigma": 0.1, "severity": 2}, "give either sigma or severity"),
        ({"op": "pixel", "rate": [0.5, 0.1]}, "test.rate: lo must not exceed hi"),
        ({"op": "pixel", "rate": {"schedule": "linear", "start": 2}}, "test.rate.start: must be in [0, 1], got 2"),
        ({"op": "pixel", "rate": 0.2, "mode": "scheduled"}, "scheduled needs a schedule"),
        ({"op": "pixel", "rate": 0.2, "fill": "mena"}, "did you mean 'mean'?"),
    ],
)
def test_op_validation_errors(op, message):
    with pytest.raises(SpecError) as err:
        registry.validate(op, "test")
    assert message in str(err.value)


def test_shape_checks():
    ops = [registry.validate({"op": "patch", "rate": 0.5, "size": 5}, "x")]
    with pytest.raises(SpecError, match=r"train_ops\[0\].size: must divide the image size 28x28, got 5"):
        registry.check_image_shape(ops, 28, 28, "train_ops")
    ops = [registry.validate({"op": "region", "box": [0, 0, 9, 4]}, "x")]
    with pytest.raises(SpecError, match="reaches outside the 8x8 image"):
        registry.check_image_shape(ops, 8, 8, "train_ops")


def test_op_text_parsing():
    assert registry.parse_op_text("patch:rate=0.25,0.5,size=4") == {"op": "patch", "rate": [0.25, 0.5], "size": 4}
    assert registry.parse_op_text("gaussian:severity=3") == {"op": "gaussian", "severity": 3}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(
    "op", MASK_OPS + [{"op": "salt_pepper", "amount": 0.1}], ids=lambda o: o["op"] + o.get("count", "")
)
def test_cpu_and_cuda_draw_identical_masks(op):
    index = torch.arange(N)
    p = pipeline(op)
    x = images(N)
    cpu = p(x, index, p.epoch_keys(3))
    cuda = p(x.cuda(), index.cuda(), p.epoch_keys(3, device="cuda"))
    if cpu.mask is not None:
        assert torch.equal(cpu.mask, cuda.mask.cpu())
    assert torch.equal(cpu.images, cuda.images.cpu())
    base = torch.tensor([12345, -7], dtype=torch.int32)
    bits = keyed.unit_bits(keyed.batch_keys(index, base)[1], 784)
    assert torch.equal(bits, keyed.unit_bits(keyed.batch_keys(index.cuda(), base.cuda())[1], 784).cpu())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_and_cuda_noise_agree():
    index = torch.arange(N)
    for op in ({"op": "gaussian", "sigma": 0.2}, {"op": "shot", "c": 12}, {"op": "speckle", "sigma": 0.3}):
        p = pipeline(op)
        x = images(N)
        cpu = p(x, index, p.epoch_keys(1)).images
        cuda = p(x.cuda(), index.cuda(), p.epoch_keys(1, device="cuda")).images.cpu()
        assert torch.allclose(cpu, cuda, atol=1e-5), op


@pytest.mark.parametrize("op", MASK_OPS, ids=lambda o: o["op"] + o.get("count", ""))
def test_static_copies_never_reuse_dynamic_masks_unless_asked(op):
    """A static run and a dynamic run of the same seed must not see the same masks (the
    audit found static-10 equal to dynamic for 10 of 20 epochs); share_views opts in."""
    index = torch.arange(32)
    dynamic = pipeline({**op, "mode": "dynamic"})
    static = pipeline({**op, "mode": "static", "copies": 10})
    shared = pipeline({**op, "mode": "static", "copies": 10, "share_views": True})
    single = masks(pipeline({**op, "mode": "static", "copies": 1}), index)
    for epoch in range(12):  # every copy, and the wrap to copy 0
        drawn = masks(dynamic, index, epoch)
        assert (masks(static, index, epoch) != drawn).flatten(1).any(1).float().mean() > 0.9, epoch
        assert (masks(static, index, epoch) != single).flatten(1).any(1).float().mean() > 0.9, epoch  # nor static-1's
        assert torch.equal(masks(shared, index, epoch), masks(dynamic, index, epoch % 10)), epoch


def test_share_views_is_static_only_and_changes_only_static_specs():
    with pytest.raises(SpecError, match=r"share_views: only mode static has views to share, got mode dynamic"):
        registry.validate({"op": "patch", "rate": 0.5, "share_views": True}, "train_ops[0]")
    assert "share_views" not in registry.validate({"op": "patch", "rate": 0.5}, "x")  # dynamic specs hash as before
    assert registry.validate({"op": "patch", "rate": 0.5, "mode": "static"}, "x")["share_views"] is False
