"""Seed groups trained as one batched model (train.seed_batch): the same batches and
masks as separate runs bit for bit, the same training up to float rounding, the same
run folders, true statuses on interruption and failure, and resume."""

from __future__ import annotations

import json
import re

import pytest
import torch
from test_resume import InterruptAfterEpoch, without_timing

from masklab import spec as spec_mod
from masklab.errors import Interrupted, SpecError, TrainingFailed
from masklab.events import Events
from masklab.models.build import build_model
from masklab.models.stacked import Stacked
from masklab.ops.pipeline import OpPipeline
from masklab.spec import CNNSpec, MLPSpec
from masklab.store.runs import RunStore
from masklab.study import plan, runner as experiment

from conftest import cli, tiny_spec, trained_once

OPS = [{"op": "patch", "rate": 0.3, "size": 7}, {"op": "gaussian", "sigma": 0.1, "p": 0.5}]
SEEDS = [0, 1, 2]
CNN = {"arch": "cnn", "width": 4, "hidden": 16}


def group_spec(seed_batch, **changes) -> spec_mod.Spec:
    body = tiny_spec(model=CNN, train_ops=OPS, **changes)
    body["train"] = {**body["train"], "seed_batch": seed_batch, **changes.get("train", {})}
    return spec_mod.resolve(body)


@pytest.mark.parametrize(
    "model",
    [
        CNNSpec(width=6),
        CNNSpec(width=4, depth=3, norm="batch"),
        CNNSpec(width=4, norm="none"),
        MLPSpec(hidden=[32, 16]),
    ],
    ids=["cnn-group", "cnn-batch-depth3", "cnn-no-norm", "mlp"],
)
def test_stacked_logits_equal_the_separate_models(model):
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(build_model(model, (1, 28, 28), 10, 0.1 + seed / 100, 0.3))
    stacked = Stacked(models)
    x = torch.rand(3, 5, 1, 28, 28)
    for training in (True, False):
        stacked.train(training)
        with torch.no_grad():
            for m in models:
                m.train(training)
            separate = torch.stack([m(x[i]) for i, m in enumerate(models)]) if model.dropout == 0 else None
            together = stacked(x)
        if separate is not None:
            assert together.shape == (3, 5, 10)
            assert torch.allclose(together, separate, atol=1e-5, rtol=1e-5)
    for i, m in enumerate(models):  # BatchNorm's running statistics moved the same way
        assert all(torch.allclose(v, stacked.state_dict(i)[k], atol=1e-6) for k, v in m.state_dict().items())


def record_pipeline_calls(monkeypatch) -> dict[int, list]:
    """Every (dataset indices, mask pixels, images) the train-time ops produced, per seed."""
    calls: dict[int, list] = {}
    original = OpPipeline.__call__

    def spy(self, x, index, plan):
        out = original(self, x, index, plan)
        calls.setdefault(self.seed, []).append((index.clone(), out.mask.clone(), out.images.clone()))
        return out

    monkeypatch.setattr(OpPipeline, "__call__", spy)
    return calls


@pytest.fixture(scope="module")
def three_seeds(tmp_path_factory) -> dict:
    """Seeds 0-2 of one spec trained one by one and as one batched model, once for the
    module, with what the train-time ops produced for each seed on each path."""
    with trained_once(tmp_path_factory, "three-seeds") as root, pytest.MonkeyPatch.context() as mp:
        calls = record_pipeline_calls(mp)
        separate = experiment.train_spec(group_spec(1), SEEDS, RunStore(root / "separate"), Events())
        seen_separately = {seed: list(seen) for seed, seen in calls.items()}
        calls.clear()
        batched = experiment.train_spec(group_spec(3), SEEDS, RunStore(root / "batched"), Events())
        return {"separate": separate, "batched": batched, "calls": (seen_separately, dict(calls))}


def test_masks_and_batches_are_bit_identical_to_separate_runs(three_seeds):
    separate, batched = three_seeds["calls"]
    assert sorted(batched) == sorted(separate) == SEEDS
    for seed in SEEDS:
        assert len(batched[seed]) == len(separate[seed]) == 2 * 7  # 2 epochs x 7 steps
        for mine, theirs in zip(batched[seed], separate[seed]):
            assert all(torch.equal(a, b) for a, b in zip(mine, theirs))
    assert not torch.equal(batched[0][0][1], batched[1][0][1])  # and the seeds' masks differ


def test_a_batched_seed_trains_as_its_separate_run(three_seeds):
    """Same init, data order and masks: the losses agree to float rounding, far closer
    than two seeds agree with each other; final metrics stay within seed noise."""
    separate, batched = three_seeds["separate"], three_seeds["batched"]
    first = [[r["train_loss"] for r in o.run.metrics()] for o in separate]
    together = [[r["train_loss"] for r in o.run.metrics()] for o in batched]
    between_seeds = min(abs(first[a][0] - first[b][0]) for a in range(3) for b in range(a + 1, 3))
    for mine, theirs in zip(together, first):
        assert abs(mine[0] - theirs[0]) < 1e-4 * theirs[0] < between_seeds / 10
        assert abs(mine[1] - theirs[1]) < 1e-3 * theirs[1]
    for a, b in zip(batched, separate):
        assert abs(a.summary["test_acc"] - b.summary["test_acc"]) <= 0.05


def test_batched_runs_have_the_same_ids_files_and_spec(workdir, write_spec):
    body = tiny_spec(model=CNN, train_ops=OPS, seeds=[0, 1], train={"epochs": 1})
    assert cli("train", write_spec(body, "one.yaml"), "--runs-dir", "separate", "-q").exit_code == 0
    body["train"]["seed_batch"] = 2
    result = cli("train", write_spec(body, "two.yaml"), "--runs-dir", "batched", "-q", "--format", "json")
    assert result.exit_code == 0, result.stderr
    ids = [row["run"] for row in json.loads(result.stdout)["rows"]]
    separate, batched = sorted((workdir / "separate").iterdir()), sorted((workdir / "batched").iterdir())
    assert [p.name for p in separate] == [p.name for p in batched] == ids
    for a, b in zip(separate, batched):
        assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
        assert (a / "spec.yaml").read_text() == (b / "spec.yaml").read_text()
        info_a, info_b = json.loads((a / "run.json").read_text()), json.loads((b / "run.json").read_text())
        assert "seed_batch" not in info_a and info_b["seed_batch"] == {"seeds": [0, 1], "size": 2}
        assert info_b["status"] == "done" and info_b["epochs_done"] == 1
        assert set(json.loads((a / "summary.json").read_text())) == set(json.loads((b / "summary.json").read_text()))
    again = cli("train", write_spec(body, "two.yaml"), "--runs-dir", "batched", "-q")
    assert again.exit_code == 0 and again.stderr.count("already done") == 2
    listed = cli("runs", "--runs-dir", "batched", "--format", "json")
    assert [r["id"] for r in json.loads(listed.stdout)["rows"]] == ids


def test_an_interrupted_group_resumes_bit_identically(workdir):
    spec = group_spec(2, train={"epochs": 3})
    reference = experiment.train_spec(spec, [0, 1], RunStore(workdir / "reference"), Events())
    store = RunStore(workdir / "runs")
    with pytest.raises(Interrupted, match="interrupted after 1 epoch"):
        experiment.train_spec(spec, [0, 1], store, InterruptAfterEpoch(1))
    runs = store.all()
    assert [r.status for r in runs] == ["interrupted"] * 2
    assert all(r.info["epochs_done"] == 1 and len(r.metrics()) == 1 for r in runs)
    outcomes = experiment.train_spec(spec, [0, 1], store, Events(), resume=True)
    for mine, theirs in zip(outcomes, reference):
        assert mine.run.status == "done" and mine.run.info["seed_batch"]["size"] == 2
        assert without_timing(mine.run.metrics()) == without_timing(theirs.run.metrics())
        a = torch.load(mine.run.path / "model.pt", weights_only=True)
        b = torch.load(theirs.run.path / "model.pt", weights_only=True)
        assert all(torch.equal(a[k], b[k]) for k in b)


def test_an_interrupted_group_resumes_one_seed_at_a_time(workdir):
    """The checkpoints are single-run checkpoints: a batched group resumes without batching."""
    store = RunStore(workdir / "runs")
    with pytest.raises(Interrupted):
        experiment.train_spec(group_spec(2, train={"epochs": 2}), [0, 1], store, InterruptAfterEpoch(1))
    outcomes = experiment.train_spec(group_spec(1, train={"epochs": 2}), [0, 1], store, Events(), resume=True)
    assert [o.run.status for o in outcomes] == ["done", "done"]
    assert [len(o.run.metrics()) for o in outcomes] == [2, 2]


def test_a_diverging_seed_fails_alone_and_the_others_stay_resumable(workdir, monkeypatch):
    original = Stacked.__call__

    def poison_seed_1(self, x):
        logits = original(self, x)
        return logits + torch.tensor([0.0, float("nan"), 0.0]).view(3, 1, 1) if self.training else logits

    monkeypatch.setattr(Stacked, "__call__", poison_seed_1)
    store = RunStore(workdir / "runs")
    with pytest.raises(TrainingFailed, match="seed 1: loss became non-finite at epoch 1, step 1"):
        experiment.train_spec(group_spec(3), [0, 1, 2], store, Events())
    status = {r.info["seed"]: (r.status, r.info["error"]) for r in store.all()}
    assert status[1][0] == "failed" and status[0][0] == status[2][0] == "interrupted"
    assert "seed 1 of its batch failed" in status[0][1] and "--resume" in status[2][1]


def test_seed_batch_values_and_unsupported_models_are_spec_errors(workdir, write_spec):
    for value, message in (
        (0, "train.seed_batch: must be an integer in [1, 1024], got 0"),
        ("all", "train.seed_batch: must be auto or a number of seeds (1 trains them one by one), got 'all'"),
    ):
        with pytest.raises(SpecError, match=re.escape(message)):
            group_spec(value)
    vit = tiny_spec(model={"arch": "vit", "dim": 16, "depth": 1, "heads": 2})
    vit["train"]["seed_batch"] = 2
    result = cli("train", write_spec(vit))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "Error: train.seed_batch: seeds can be batched for model.arch cnn or mlp only, got vit; use 1 or auto"
    )
    vit["train"]["seed_batch"] = "auto"  # auto falls back to one run at a time
    assert plan.seeds_per_batch(spec_mod.resolve(vit), 5) == 1


@pytest.mark.parametrize(
    ("device", "cuda", "size"),
    [
        ("cpu", False, 1),
        ("cpu", True, 1),
        ("auto", False, 1),
        ("auto", True, 5),
        ("cuda", True, 5),
        ("cuda:1", True, 5),
    ],
)
def test_auto_batches_seeds_on_cuda_only(monkeypatch, device, cuda, size):
    """On a CPU a batched group did not pay for itself (bench/seed_batch.py): auto trains
    the seeds one after another there, and batches them (up to AUTO_LIMIT) on CUDA."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    spec = spec_mod.resolve(tiny_spec(model=CNN, train={"seed_batch": "auto", "device": device}))
    assert plan.seeds_per_batch(spec, 5) == size
    assert plan.seeds_per_batch(spec, 20) == (plan.AUTO_LIMIT if size > 1 else 1)
    explicit = spec_mod.resolve(tiny_spec(model=CNN, train={"seed_batch": 3, "device": device}))
    assert plan.seeds_per_batch(explicit, 5) == 3  # a number is always taken as it is
