"""The MNIST-C suite at MNIST-C's strengths, and corruption errors (mCE) to exact values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from masklab.evaluation.stored import corruption_errors
from masklab.ops.pipeline import EVAL_VIEW, OpPipeline
from masklab.ops.suites import suite_ops

# google-research/mnist-c corruptions.py, the severity each of its functions is called with
PINNED = [
    ("shot", {"c": 3.0}),
    ("salt_pepper", {"amount": 0.17, "count": "bernoulli", "salt_ratio": 0.5}),
    ("motion_blur", {"radius": 10, "sigma": 3.0, "angle": [-45.0, 45.0]}),
    ("shear", {"degrees": 22.92}),
    ("scale", {"factor": 0.7}),
    ("rotate", {"degrees": 22.92}),
    ("brightness", {"delta": 0.5}),
    ("translate", {"pixels": 3.0}),
    ("inverse_stripe", {"fraction": 0.25}),
    ("dotted_line", {}),
    ("zigzag", {}),
]


def suite_cell(name: str) -> dict:
    (op,) = [o for o in suite_ops("mnist-c", (1, 28, 28)) if o["op"] == name]
    return op


def corrupt(name: str, x: torch.Tensor) -> torch.Tensor:
    p = OpPipeline([{**suite_cell(name), "mode": "static", "copies": 1}], 0, (1, 28, 28))
    return p(x.clone(), torch.arange(len(x)), p.epoch_keys(EVAL_VIEW)).images[:, 0]


def test_the_suite_holds_mnist_cs_strengths():
    ops = suite_ops("mnist-c", (1, 28, 28))
    assert [o["op"] for o in ops] == [name for name, _ in PINNED]
    for op, (_, params) in zip(ops, PINNED):
        assert {k: op[k] for k in params} == params, op["op"]
    assert math.radians(22.92) == pytest.approx(0.4, abs=1e-4)  # MNIST-C's 0.4 rad


def test_shot_noise_is_poisson_with_c_3():
    """On x = 0.5: min(K / 3, 1) with K ~ Poisson(1.5) (clipped to [0, 1]); 50,176 draws."""
    from scipy.stats import poisson

    k = np.arange(60)
    pmf, value = poisson.pmf(k, 3 * 0.5), np.minimum(k / 3, 1.0)
    mean = float(pmf @ value)
    var = float(pmf @ value**2) - mean**2
    y = corrupt("shot", torch.full((64, 1, 28, 28), 0.5))
    assert float(y.mean()) == pytest.approx(mean, abs=4 * (var / y.numel()) ** 0.5)
    assert float(y.var()) == pytest.approx(var, rel=0.03)
    assert torch.equal(torch.unique(y), torch.tensor([0.0, 1 / 3, 2 / 3, 1.0]))


def row_centres(y: torch.Tensor) -> np.ndarray:
    """(B, H, W) -> the column centre of mass of each row, (B, H)."""
    cols = torch.arange(y.shape[-1], dtype=torch.float64)
    return ((y.double() * cols).sum(-1) / y.double().sum(-1)).numpy()


def test_shear_rotate_scale_translate_move_pixels_by_mnist_cs_amounts():
    vertical = torch.zeros(8, 1, 28, 28)
    vertical[..., 12:16] = 1.0  # a bar down the middle
    rows = np.arange(6, 22)
    slopes = [np.polyfit(rows, c[rows], 1)[0] for c in row_centres(corrupt("shear", vertical))]
    assert np.allclose(np.abs(slopes), math.sin(0.4), atol=0.01)  # skimage's shear: x += sin(a) * y
    assert {np.sign(s) for s in slopes} == {-1.0, 1.0}  # both directions occur

    horizontal = vertical.transpose(-1, -2).contiguous()
    turned = corrupt("rotate", horizontal).transpose(-1, -2)
    slopes = [np.polyfit(rows, c[rows], 1)[0] for c in row_centres(turned)]
    assert np.allclose(np.abs(slopes), math.tan(0.4), atol=0.02)

    square = torch.zeros(8, 1, 28, 28)
    square[..., 4:24, 4:24] = 1.0
    shrunk = corrupt("scale", square)
    assert float(shrunk.sum()) / float(square.sum()) == pytest.approx(0.7**2, rel=0.01)  # 20 x 20 -> 14 x 14

    moved = corrupt("translate", square)
    shift = row_centres(moved)[:, 13] - 13.5
    assert np.allclose(np.abs(shift), 3.0, atol=1e-4)


def test_brightness_and_stripe_are_exact():
    zeros = torch.zeros(2, 1, 28, 28)
    assert torch.equal(corrupt("brightness", zeros + 0.25), torch.full((2, 28, 28), 0.75))
    striped = corrupt("inverse_stripe", zeros)
    assert striped[0, 0].tolist() == [1.0] * 7 + [0.0] * 14 + [1.0] * 7


def test_corruption_errors_to_exact_values():
    cells = [
        {"name": "a1", "op": {"op": "a"}, "acc": 0.8},
        {"name": "a2", "op": {"op": "a"}, "acc": 0.6},
        {"name": "b1", "op": {"op": "b"}, "acc": 0.5},
        {"name": "c1", "op": {"op": "c"}, "acc": 0.1},  # not in the baseline: left out
    ]
    base = [{"name": "a1", "acc": 0.7}, {"name": "a2", "acc": 0.5}, {"name": "b1", "acc": 0.6}]
    ce = corruption_errors(cells, 0.9, base, 0.85)
    # CE_a = (0.2 + 0.4) / (0.3 + 0.5); relative: ((0.2 - 0.1) + (0.4 - 0.1)) / ((0.3 - 0.15) + (0.5 - 0.15))
    assert ce["per_op"]["a"] == pytest.approx({"ce": 0.75, "relative_ce": 0.8})
    assert ce["per_op"]["b"] == pytest.approx({"ce": 1.25, "relative_ce": 1.6})  # 0.5 / 0.4, 0.4 / 0.25
    assert set(ce["per_op"]) == {"a", "b"}
    assert ce["mce"] == pytest.approx(1.0) and ce["relative_mce"] == pytest.approx(1.2)
    # a baseline that is no worse corrupted than clean: no relative CE, never a division by zero
    flat = corruption_errors(cells[2:3], 0.9, [{"name": "b1", "acc": 0.85}], 0.85)
    assert flat["per_op"]["b"]["relative_ce"] is None and flat["relative_mce"] is None
