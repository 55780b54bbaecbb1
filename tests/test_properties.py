"""Properties the design promises, over generated inputs (Hypothesis): masks that do not
depend on batch size, order or which other samples share the batch; exact realized
counts; static copies that cycle exactly K masks; specs that survive --set, dump and
load; validation that answers any YAML value with masklab's own error or a spec."""

from __future__ import annotations

import math

import torch
import yaml
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from masklab import spec as spec_mod
from masklab.errors import MasklabError
from masklab.ops import registry
from masklab.ops.pipeline import OpPipeline

SHAPE = (1, 28, 28)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MASK_OPS = st.one_of(
    st.builds(lambda c: {"op": "pixel", "count": c}, st.sampled_from(["exact", "bernoulli"])),
    st.builds(lambda s: {"op": "patch", "size": s}, st.sampled_from([2, 4, 7, 14])),
    st.builds(lambda s, m: {"op": "block", "size": s, "min_patches": m}, st.sampled_from([2, 4, 7]), st.integers(1, 6)),
    st.builds(
        lambda a, w: {"op": "stripes", "axis": a, "max_width": w},
        st.sampled_from(["rows", "cols", "both"]),
        st.integers(1, 6),
    ),
    st.builds(
        lambda lo, n: {"op": "rect", "area": [lo, min(0.9, lo * 3)], "n": n}, st.floats(0.01, 0.3), st.integers(1, 3)
    ),
)
RATES = st.floats(0.0, 1.0, allow_nan=False)
SEEDS = st.integers(0, 2**31 - 1)


def pipeline(op: dict, seed: int, **kw) -> OpPipeline:
    return OpPipeline([registry.validate(op, "op")], seed, SHAPE, **kw)


def draw(p: OpPipeline, index: torch.Tensor, epoch: int = 0) -> torch.Tensor:
    x = torch.rand(len(index), *SHAPE, generator=torch.Generator().manual_seed(0))
    return p(x, index, p.epoch_keys(epoch)).mask


@FAST
@given(op=MASK_OPS, rate=RATES, seed=SEEDS, data=st.data())
def test_a_samples_mask_depends_on_its_index_only(op, rate, seed, data):
    """Any dataset indices, in any order, cut into any batches: sample i gets one mask."""
    if op["op"] != "rect":
        op = {**op, "rate": rate}
    indices = data.draw(st.lists(st.integers(0, 60_000), min_size=1, max_size=48, unique=True))
    order = data.draw(st.permutations(range(len(indices))))
    batch = data.draw(st.integers(1, len(indices)))
    epoch = data.draw(st.integers(0, 20))
    p = pipeline(op, seed)
    index = torch.tensor(indices)
    whole = draw(p, index, epoch)
    shuffled = index[list(order)]
    parts = torch.cat([draw(p, shuffled[i : i + batch], epoch) for i in range(0, len(indices), batch)])
    assert torch.equal(parts, whole[list(order)])


def expected_pixels(op: dict, rate: float) -> int | None:
    """Masked pixels per 28x28 image of an exact-count op, or None where overlaps decide."""
    n = {"pixel": 784, "patch": (28 // op.get("size", 4)) ** 2, "block": (28 // op.get("size", 4)) ** 2, "stripes": 28}
    if op["op"] == "pixel" and op["count"] == "exact":
        return round(rate * 784)
    if op["op"] in ("patch", "block"):
        return round(rate * n[op["op"]]) * op["size"] ** 2
    if op["op"] == "stripes" and op["axis"] != "both":
        return round(rate * 28) * 28
    return None


@FAST
@given(op=MASK_OPS, rate=RATES, seed=SEEDS)
def test_exact_count_ops_mask_exactly_round_rate_times_units(op, rate, seed):
    pixels = expected_pixels(op, rate)
    assume(pixels is not None)
    mask = draw(pipeline({**op, "rate": rate}, seed), torch.arange(32))
    assert mask.flatten(1).sum(1).tolist() == [pixels] * 32


@FAST
@given(rate=st.floats(0.0, 1.0), seed=SEEDS, amount=st.floats(0.0, 1.0), ratio=st.floats(0.0, 1.0))
def test_salt_and_pepper_hits_exactly_round_amount_times_pixels(rate, seed, amount, ratio):
    p = pipeline({"op": "salt_pepper", "amount": amount, "salt_ratio": ratio}, seed)
    x = torch.full((16, *SHAPE), 0.5)
    y = p(x, torch.arange(16), p.epoch_keys(0)).images.flatten(1)
    hits = round(amount * 784)
    assert ((y == 0) | (y == 1)).sum(1).tolist() == [hits] * 16
    assert (y == 1).sum(1).tolist() == [round(hits * ratio)] * 16


@FAST
@given(op=MASK_OPS, rate=st.floats(0.2, 0.8), seed=SEEDS, copies=st.integers(1, 5), share=st.booleans())
def test_static_copies_cycle_exactly_k_masks(op, rate, seed, copies, share):
    """Epoch e draws copy e mod K; with distinct draws possible, K distinct masks per sample."""
    if op["op"] != "rect":
        op = {**op, "rate": rate}
    p = pipeline({**op, "mode": "static", "copies": copies, "share_views": share}, seed)
    index = torch.arange(8)
    epochs = [draw(p, index, e) for e in range(2 * copies + 1)]
    for e in range(copies, 2 * copies + 1):
        assert torch.equal(epochs[e], epochs[e % copies])
    if share:  # copy k is the draw dynamic mode makes in epoch k
        dynamic = pipeline({**op, "mode": "dynamic"}, seed)
        assert all(torch.equal(epochs[k], draw(dynamic, index, k)) for k in range(copies))
    distinct = [len({epochs[e][i].numpy().tobytes() for e in range(copies)}) for i in range(len(index))]
    assert max(distinct) <= copies
    if op["op"] == "pixel":  # 784 pixels: two draws never coincide
        assert distinct == [copies] * len(index)


# --set values that are valid for their key; the dump of the resolved spec must load back equal
SETTABLE = {
    "train.lr": st.floats(1e-5, 1.0),
    "train.epochs": st.integers(1, 50),
    "train.batch_size": st.integers(1, 1024),
    "train.optimizer": st.sampled_from(["adamw", "sgd"]),
    "train.schedule": st.sampled_from(["onecycle", "cosine", "constant"]),
    "train.label_smoothing": st.floats(0.0, 0.5),
    "data.val_fraction": st.floats(0.0, 0.5),
    "data.train_limit": st.one_of(st.none(), st.integers(20, 4000)),
    "model.width": st.integers(4, 64),
    "seeds": st.lists(st.integers(0, 1000), min_size=1, max_size=5, unique=True),
    "name": st.from_regex(r"[a-z][a-z0-9._-]{0,15}", fullmatch=True),
    "train_ops[0].rate": st.floats(0.0, 1.0),
    "train_ops[0].mode": st.sampled_from(["static", "dynamic"]),
    "train_ops[0].size": st.sampled_from([1, 2, 4, 7, 14, 28]),
}


@FAST
@given(values=st.fixed_dictionaries({}, optional=SETTABLE))
def test_set_then_dump_then_load_round_trips(tmp_path_factory, values):
    folder = tmp_path_factory.mktemp("spec")
    path = folder / "spec.yaml"
    path.write_text("name: base\ntrain_ops:\n  - {op: patch, rate: 0.25, size: 4}\nmodel: {arch: cnn}\n")
    overrides = [
        f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
        for k, v in values.items()
    ]
    spec = spec_mod.load_spec(path, overrides)
    for key, value in values.items():
        got = spec_mod.flatten(spec.to_dict()).get(key.replace("[0]", ".0"), spec_mod.flatten(spec.to_dict()).get(key))
        if isinstance(value, float):
            assert math.isclose(got, value, rel_tol=1e-12), key
        elif got is not None or value is None:
            assert got == value, key
    dumped = folder / "resolved.yaml"
    dumped.write_text(spec_mod.dump_yaml(spec))
    again = spec_mod.load_spec(dumped)
    assert again.to_dict() == spec.to_dict() and again.group_hash() == spec.group_hash()


YAML_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
        st.sampled_from(["auto", "cnn", "static", "patch", "gaussian", "linear", "epoch", "[0]", "{}", "0.5"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["op", "rate", "size", "schedule", "x"]), inner, max_size=4),
    ),
    max_leaves=12,
)
KEYS = st.sampled_from(
    [
        "name",
        "seeds",
        "data",
        "data.dataset",
        "data.val_fraction",
        "data.train_limit",
        "train_ops",
        "train_ops[0]",
        "train_ops[0].rate",
        "train_ops[0].mode",
        "train_ops[0].copies",
        "train_ops[0].fill",
        "model",
        "model.arch",
        "model.hidden",
        "train",
        "train.lr",
        "train.epochs",
        "train.device",
        "train.seed_batch",
        "eval.ops",
        "eval.suite",
        "variants",
        "nonsense",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.lists(st.tuples(KEYS, YAML_VALUES), min_size=1, max_size=4))
def test_validation_answers_any_value_with_a_spec_or_masklabs_own_error(changes):
    raw = {"name": "fuzz", "train_ops": [{"op": "patch", "rate": 0.25}], "model": {"arch": "cnn"}}
    for key, value in changes:
        try:
            spec_mod.set_path(raw, key, value, "fuzz")
        except MasklabError:
            continue
    try:
        spec = spec_mod.resolve(raw)
    except MasklabError as exc:
        assert str(exc) and "\n" not in str(exc)  # one line for the user
        return
    assert spec_mod.resolve(spec.to_dict()).to_dict() == spec.to_dict()


@FAST
@given(seed=SEEDS, lo=st.floats(0.0, 0.5), width=st.floats(0.01, 0.5), ratio=st.floats(0.0, 1.0))
def test_per_image_ranges_draw_one_value_per_image(seed, lo, width, ratio):
    """A [lo, hi] setting is drawn per image: salt-and-pepper hits round(a * 784) pixels with
    a in [lo, hi], round(ratio * hits) of them salt; Gaussian noise has a per-image sigma in [lo, hi]."""
    hi = lo + width
    x = torch.full((24, *SHAPE), 0.5)
    p = pipeline({"op": "salt_pepper", "amount": [lo, hi], "salt_ratio": ratio}, seed)
    y = p(x, torch.arange(24), p.epoch_keys(0)).images.flatten(1)
    hits = ((y == 0) | (y == 1)).sum(1)
    assert bool(((hits >= round(lo * 784) - 1) & (hits <= round(hi * 784) + 1)).all())
    salt = (y == 1).sum(1).tolist()
    assert all(abs(s - h * ratio) <= 0.5 + 1e-4 for s, h in zip(salt, hits.tolist()))  # round(ratio * hits), float32
    g = pipeline({"op": "gaussian", "sigma": [lo + 0.05, hi + 0.05], "clip": False}, seed)
    noise = (g(x, torch.arange(24), g.epoch_keys(0)).images - x).flatten(1).std(1)
    assert bool(((noise > (lo + 0.05) * 0.85) & (noise < (hi + 0.05) * 1.15)).all())
    assert len(set(noise.tolist())) == 24  # one sigma per image


@FAST
@given(seed=SEEDS, lo=st.floats(0.02, 0.3), width=st.floats(0.0, 0.3))
def test_rect_boxes_cover_the_area_drawn(seed, lo, width):
    """One rect per image covers a fraction of the image drawn uniformly from [lo, hi]
    (a box is rounded to whole pixels and clamped, never skipped): the mean over 64
    images lies near (lo + hi) / 2 and every image has a box of at least one pixel."""
    hi = lo + width
    mask = draw(pipeline({"op": "rect", "area": [lo, hi], "aspect": [1.0, 1.0]}, seed), torch.arange(64))
    covered = mask.flatten(1).float().mean(1)
    assert bool((covered > 0).all())
    assert abs(float(covered.mean()) - (lo + hi) / 2) < 0.02 + 0.35 * width
    assert bool((covered <= hi + 0.04).all()) and bool((covered >= lo - 0.04).all())
