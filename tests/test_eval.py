"""eval: clean metrics, corruption grids, the MNIST-C suite, baselines, and their use in compare."""

from __future__ import annotations

import json

import pytest
import torch

from masklab.evaluation import grid as evaluate
from masklab.evaluation.suites import MNIST_C, suite_ops
from masklab.ops import registry
from masklab.ops.pipeline import EVAL_VIEW, OpPipeline

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
    assert torch.equal(a(x, idx, a.plan(EVAL_VIEW)).images, b(x, idx, b.plan(EVAL_VIEW)).images)
    c = OpPipeline([cell], 1, (1, 28, 28))
    assert not torch.equal(a(x, idx, a.plan(EVAL_VIEW)).images, c(x, idx, c.plan(EVAL_VIEW)).images)


def test_mnist_c_suite_ops_run_and_change_images():
    ops = suite_ops("mnist-c", (1, 28, 28))
    assert [o["op"] for o in ops] == [o["op"] for o in MNIST_C] and len(ops) == 11
    x = torch.zeros(16, 1, 28, 28)
    x[:, :, 8:20, 12:16] = 1.0  # a bar, so every corruption has something to move
    for op in ops:
        p = OpPipeline([{**op, "mode": "static", "copies": 1}], 0, (1, 28, 28))
        y = p(x, torch.arange(16), p.plan(EVAL_VIEW)).images
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
    assert bodies[0]["metrics"]["robust_acc"] == pytest.approx(sum(c["acc"] for c in bodies[0]["cells"]) / 4)
    for folder in run_dirs(workdir):
        (stored,) = (folder / "eval").glob("grid-*.json")
        assert json.loads(stored.read_text())["cells"][0]["name"] == "gaussian(sigma=0.1)"
    assert (workdir / "robust.png").read_bytes()[:4] == b"\x89PNG"
    cmp = json.loads(
        cli("compare", "tiny", "--metric", "acc@gaussian(sigma=0.2)", "--metric", "robust_acc", "-f", "json").stdout
    )
    stats = cmp["groups"][0]["stats"]
    assert stats["acc@gaussian(sigma=0.2)"]["n"] == 2
    assert stats["robust_acc"]["mean"] == pytest.approx(sum(b["metrics"]["robust_acc"] for b in bodies) / 2)


def test_spec_eval_ops_are_evaluated_after_training(workdir, write_spec):
    body = tiny_spec(eval={"ops": [{"op": "salt_pepper", "amount": [0.05, 0.1]}]})
    assert cli("train", write_spec(body), "-q").exit_code == 0
    (folder,) = run_dirs(workdir)
    summary = json.loads((folder / "summary.json").read_text())
    assert [c["name"] for c in summary["robustness"]] == ["salt_pepper(amount=0.05)", "salt_pepper(amount=0.1)"]
    assert "acc@salt_pepper(amount=0.1)" in summary and "robust_acc" in summary


def test_suite_and_baseline_corruption_error(workdir, write_spec):
    assert cli("train", write_spec(tiny_spec(name="base")), "-q").exit_code == 0
    assert cli("train", write_spec(tiny_spec(name="other", train={"lr": 0.003})), "-q").exit_code == 0
    result = cli("eval", "other", "--suite", "mnist-c", "--baseline", "base", "-f", "json")
    assert result.exit_code == 0, result.stderr
    (body,) = [b for b in json.loads(result.stdout)["evals"] if b["run_id"].startswith("other")]
    assert len(body["cells"]) == 11 and body["baseline"].startswith("base")
    ce = body["corruption_error"]
    assert set(ce["per_op"]) == {o["op"] for o in MNIST_C} and ce["mce"] > 0
    bad = cli("eval", "other", "--suite", "imagenet-c")
    assert bad.exit_code == 2 and "unknown suite" in bad.stderr
