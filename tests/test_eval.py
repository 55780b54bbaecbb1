"""eval: clean metrics, corruption grids, the MNIST-C suite, baselines, and their use in compare."""

from __future__ import annotations

import json

import pytest
import torch

from masklab.evaluation import robustness as evaluate
from masklab.ops import registry
from masklab.ops.pipeline import EVAL_VIEW, OpPipeline
from masklab.ops.suites import MNIST_C, suite_ops

from conftest import cli, run_dirs, tiny_spec


def test_grid_expansion():
    op = registry.validate({"op": "patch", "rate": [0.25, 0.5, 0.75], "size": [2, 4]}, "g", grid=True)
    cells = evaluate.expand_grid(op)
    assert [(c["rate"], c["size"]) for c in cells] == [(r, s) for r in (0.25, 0.5, 0.75) for s in (2, 4)]
    sev = registry.validate({"op": "gaussian", "severity": [1, 3, 5]}, "g", grid=True)
    assert [(c["severity"], c["sigma"]) for c in evaluate.expand_grid(sev)] == [(1, 0.08), (3, 0.18), (5, 0.38)]
    assert evaluate.cell_name(evaluate.expand_grid(sev)[1]) == "gaussian(severity=3)"


def test_every_model_sees_the_same_corrupted_test_set():
    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    idx = torch.arange(64)
    cell = {**registry.validate({"op": "gaussian", "sigma": 0.3}, "g", grid=True), "mode": "static", "copies": 1}
    a = OpPipeline([cell], 0, (1, 28, 28))
    b = OpPipeline([cell], 0, (1, 28, 28))
    assert torch.equal(a(x, idx, a.epoch_keys(EVAL_VIEW)).images, b(x, idx, b.epoch_keys(EVAL_VIEW)).images)
    c = OpPipeline([cell], 1, (1, 28, 28))
    assert not torch.equal(a(x, idx, a.epoch_keys(EVAL_VIEW)).images, c(x, idx, c.epoch_keys(EVAL_VIEW)).images)


def test_mnist_c_suite_ops_run_and_change_images():
    ops = suite_ops("mnist-c", (1, 28, 28))
    assert [o["op"] for o in ops] == [o["op"] for o in MNIST_C] and len(ops) == 11
    x = torch.zeros(16, 1, 28, 28)
    x[:, :, 8:20, 12:16] = 1.0  # a bar, so every corruption has something to move
    for op in ops:
        p = OpPipeline([{**op, "mode": "static", "copies": 1}], 0, (1, 28, 28))
        y = p(x, torch.arange(16), p.epoch_keys(EVAL_VIEW)).images
        assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
        assert float((y - x).abs().mean()) > 0.001, op["op"]


def test_eval_grid_lands_in_the_run_and_in_compare(workdir, write_spec):
    assert cli("train", write_spec(tiny_spec(seeds=[0, 1])), "-q").exit_code == 0
    result = cli(
        "eval",
        "tiny",
        "--op",
        "gaussian:sigma=0.1,0.2",
        "--op",
        "patch:rate=0.25,0.5,size=4",
        "-f",
        "json",
        "--plot",
        workdir / "robust.png",
    )
    assert result.exit_code == 0, result.stderr
    bodies = json.loads(result.stdout)["evals"]
    assert len(bodies) == 2
    names = [c["name"] for c in bodies[0]["cells"]]
    assert names == ["gaussian(sigma=0.1)", "gaussian(sigma=0.2)", "patch(rate=0.25)", "patch(rate=0.5)"]
    mean = f"robust_acc@{bodies[0]['name']}"  # the mean over this grid, named by it
    assert bodies[0]["name"].startswith("grid-") and "robust_acc" not in bodies[0]["metrics"]
    assert bodies[0]["metrics"][mean] == pytest.approx(sum(c["acc"] for c in bodies[0]["cells"]) / 4)
    for folder in run_dirs(workdir):
        (stored,) = (folder / "eval").glob("grid-*.json")
        assert json.loads(stored.read_text())["cells"][0]["name"] == "gaussian(sigma=0.1)"
    assert (workdir / "robust.png").read_bytes()[:4] == b"\x89PNG"
    cmp = json.loads(
        cli("compare", "tiny", "--metric", "acc@gaussian(sigma=0.2)", "--metric", mean, "-f", "json").stdout
    )
    stats = cmp["groups"][0]["stats"]
    assert stats["acc@gaussian(sigma=0.2)"]["n"] == 2
    assert stats[mean]["mean"] == pytest.approx(sum(b["metrics"][mean] for b in bodies) / 2)


def test_spec_eval_ops_are_evaluated_after_training(workdir, write_spec):
    body = tiny_spec(eval={"ops": [{"op": "salt_pepper", "amount": [0.05, 0.1]}]})
    assert cli("train", write_spec(body), "-q").exit_code == 0
    (folder,) = run_dirs(workdir)
    summary = json.loads((folder / "summary.json").read_text())
    assert [c["name"] for c in summary["robustness"]] == ["salt_pepper(amount=0.05)", "salt_pepper(amount=0.1)"]
    assert "acc@salt_pepper(amount=0.1)" in summary and "robust_acc" in summary


def test_suite_and_baseline_corruption_error(workdir, write_spec):
    """mCE from the command line equals the MNIST-C errors of the run over the baseline's,
    per corruption, averaged (Hendrycks & Dietterich's CE, and the relative CE)."""
    assert cli("train", write_spec(tiny_spec(name="base")), "-q").exit_code == 0
    assert cli("train", write_spec(tiny_spec(name="other", train={"lr": 0.003})), "-q").exit_code == 0
    result = cli("eval", "other", "base", "--suite", "mnist-c", "--baseline", "base", "-f", "json")
    assert result.exit_code == 0, result.stderr
    bodies = {b["run_id"].split("-")[0]: b for b in json.loads(result.stdout)["evals"]}
    base, body = bodies["base"], bodies["other"]
    assert len(body["cells"]) == 11 and body["baseline"].startswith("base")
    ce = body["corruption_error"]
    assert set(ce["per_op"]) == {o["op"] for o in MNIST_C}
    base_acc = {c["name"]: c["acc"] for c in base["cells"]}
    ces = [(1 - c["acc"]) / (1 - base_acc[c["name"]]) for c in body["cells"]]  # one cell per corruption
    rel = [
        (c["acc"] - body["clean"]["acc"]) / (base_acc[c["name"]] - base["clean"]["acc"])
        for c in body["cells"]
        if base["clean"]["acc"] - base_acc[c["name"]] > 0
    ]
    assert ce["mce"] == pytest.approx(sum(ces) / len(ces)) and ce["relative_mce"] == pytest.approx(sum(rel) / len(rel))
    assert len({c["acc"] for c in body["cells"]}) > 3  # the cells differ: the means are not trivial
    for folder in run_dirs(workdir):
        assert (folder / "eval" / "mnist-c.json").is_file()
    bad = cli("eval", "other", "--suite", "imagenet-c")
    assert bad.exit_code == 2 and "unknown suite" in bad.stderr


def magick_motion_blur(image, radius: int, sigma: float, angle: float):
    """ImageMagick's MotionBlurImage (MagickCore/effect.c) on one grey image, written as the
    C code reads: a 2 * radius + 1 tap kernel exp(-i^2 / 2 sigma^2) normalised, offsets
    ceil(i * point.y / hypot - 0.5), ceil(i * point.x / hypot - 0.5) with point = width *
    (sin a, cos a), and the edge virtual-pixel method (coordinates clamped)."""
    import math

    width = 2 * math.ceil(radius) + 1
    kernel = [math.exp(-(i * i) / (2.0 * sigma * sigma)) for i in range(width)]
    kernel = [k / sum(kernel) for k in kernel]
    px, py = width * math.sin(math.radians(angle)), width * math.cos(math.radians(angle))
    hyp = math.hypot(px, py)
    offsets = [(math.ceil(i * py / hyp - 0.5), math.ceil(i * px / hyp - 0.5)) for i in range(width)]
    h, w = len(image), len(image[0])
    return [
        [
            sum(
                k * image[min(max(y + oy, 0), h - 1)][min(max(x + ox, 0), w - 1)]
                for k, (ox, oy) in zip(kernel, offsets)
            )
            for x in range(w)
        ]
        for y in range(h)
    ]


def test_motion_blur_is_imagemagicks_kernel():
    """MNIST-C blurs with ImageMagick: the suite op reproduces it to float precision."""
    from masklab.ops import keyed

    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    x[:, :, :, :3] = 1.0  # a bright edge, so edge replication matters
    cell = {**suite_ops("mnist-c", (1, 28, 28))[2], "mode": "static", "copies": 1}
    assert (cell["op"], cell["radius"], cell["sigma"]) == ("motion_blur", 10, 3.0)
    p = OpPipeline([cell], 0, (1, 28, 28))
    plan = p.epoch_keys(EVAL_VIEW)
    y = p(x, torch.arange(6), plan).images
    keys = keyed.Keys(keyed.batch_keys(torch.arange(6), plan.bases[0]))
    angles = -45.0 + 90.0 * keys.uniform(keyed.EXTRA).double()
    for i in range(6):
        ref = torch.tensor(
            magick_motion_blur(x[i, 0].double().tolist(), 10, 3.0, float(angles[i])), dtype=torch.float64
        )
        assert torch.allclose(y[i, 0].double(), ref.clamp(0, 1), atol=1e-6), i


def test_impulse_noise_draws_per_pixel_like_scikit_image():
    """MNIST-C's impulse noise is skimage.util.random_noise(mode='s&p', amount=0.17): each
    pixel hit with probability 0.17, a hit salt or pepper with probability 1/2 each."""
    (cell,) = [o for o in suite_ops("mnist-c", (1, 28, 28)) if o["op"] == "salt_pepper"]
    assert (cell["amount"], cell["count"], cell["salt_ratio"]) == (0.17, "bernoulli", 0.5)
    p = OpPipeline([{**cell, "mode": "static", "copies": 1}], 0, (1, 28, 28))
    x = torch.full((2000, 1, 28, 28), 0.5)
    y = p(x, torch.arange(2000), p.epoch_keys(EVAL_VIEW)).images.flatten(1)
    hits = (y != 0.5).sum(1).double()
    n = 784 * 2000
    assert abs(float(hits.sum()) / n - 0.17) < 4 * (0.17 * 0.83 / n) ** 0.5
    assert float(hits.var()) == pytest.approx(784 * 0.17 * 0.83, rel=0.1)  # binomial per image, not a fixed count
    salt = float((y == 1.0).sum()) / float(hits.sum())
    assert abs(salt - 0.5) < 4 * (0.25 / float(hits.sum())) ** 0.5
