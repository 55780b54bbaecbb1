"""Adaptive ops: per-class and per-example strengths, placement by saliency, soft masks.

What the issue asks of them: values that move over epochs and resume bit-identically,
salient placement that hides patches of higher gradient magnitude than random placement
on the same model, draws that stay keyed, and one-line spec errors naming the key path.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_resume import InterruptAfterEpoch, without_timing

from masklab import spec as spec_mod
from masklab.errors import Interrupted, SpecError
from masklab.events import Events
from masklab.ops import keyed, masks, registry
from masklab.ops.adaptive import AdaptiveState, per_class_recall
from masklab.ops.pipeline import OpPipeline
from masklab.ops.saliency import input_gradient, pool
from masklab.store.reload import load_trained
from masklab.store.runs import RunStore
from masklab.study import runner as experiment

from conftest import cli, tiny_spec

CLASS_RATE = {
    "adapt": "class",
    "signal": "val_recall",
    "target": 0.9,
    "step": 0.05,
    "init": 0.25,
    "lo": 0.0,
    "hi": 0.75,
}


def ops(*raw: dict) -> list[dict]:
    return [registry.validate(o, f"train_ops[{i}]") for i, o in enumerate(raw)]


# --- the spec ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("train_ops", "extra", "message"),
    [
        ([{"op": "patch", "rate": {"adapt": "class"}}], {}, "train_ops[0].rate.init: required"),
        (
            [{"op": "patch", "rate": {**CLASS_RATE, "init": 0.9}}],
            {},
            "train_ops[0].rate.init: must be in [0, 0.75], got 0.9",
        ),
        ([{"op": "patch", "rate": {**CLASS_RATE, "adapt": "klass"}}], {}, "did you mean 'class'?"),
        ([{"op": "patch", "rate": {**CLASS_RATE, "decay": 0.9}}], {}, "train_ops[0].rate.decay: unknown key"),
        ([{"op": "gaussian", "sigma": {"adapt": "sample", "init": 0.1}}], {}, "train_ops[0].sigma.hi: required"),
        (
            [{"op": "patch", "rate": {"adapt": "class", "signal": "label", "init": 0.2}}],
            {},
            "train_ops[0].rate.up: signal label needs",
        ),
        (
            [{"op": "patch", "rate": 0.3, "size": {"adapt": "class", "init": 4}}],
            {},
            "train_ops[0].size: this parameter cannot adapt",
        ),
        (
            [{"op": "patch", "rate": CLASS_RATE}],
            {"data": {"val_fraction": 0.0}},
            "train_ops[0].rate.signal: val_recall needs a validation split",
        ),
        (
            [{"op": "patch", "rate": CLASS_RATE}],
            {"train": {"seed_batch": 2}},
            "train.seed_batch: seeds can be batched without ops that follow the model, as train_ops[0].rate does",
        ),
        (
            [{"op": "patch", "rate": 0.3, "placement": "salient", "mode": "static"}],
            {},
            "train_ops[0].placement: salient follows the model as it trains",
        ),
        (
            [{"op": "gaussian", "sigma": 0.1, "placement": "salient"}],
            {},
            "train_ops[0].placement: for patch and rect masks only, got op gaussian",
        ),
        (
            [{"op": "patch", "rate": 0.3, "refresh": "batch"}],
            {},
            "train_ops[0].refresh: only with placement salient or background",
        ),
        (
            [{"op": "soft", "strength": 0.3, "fill": "uniform"}],
            {},
            "train_ops[0].fill: a soft mask blends towards one value",
        ),
        (
            [],
            {"eval": {"ops": [{"op": "patch", "rate": CLASS_RATE}]}},
            "eval.ops[0].rate: adaptive values are a training-time thing",
        ),
        (
            [],
            {"eval": {"ops": [{"op": "patch", "rate": 0.3, "placement": "salient"}]}},
            "eval.ops[0].placement: placement by saliency is a training-time thing",
        ),
    ],
)
def test_spec_errors_name_the_key_path(train_ops, extra, message):
    with pytest.raises(SpecError) as err:
        spec_mod.resolve(tiny_spec(train_ops=train_ops, **extra))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_adaptive_form_resolves_complete_and_random_placement_keeps_old_ids():
    spec = spec_mod.resolve(tiny_spec(train_ops=[{"op": "patch", "rate": {"adapt": "class", "init": 0.2}}]))
    assert spec.train_ops[0]["rate"] == {
        "adapt": "class", "signal": "val_recall", "step": 0.05, "target": 0.9, "init": 0.2, "lo": 0.0, "hi": 1.0,
    }  # fmt: skip
    plain = spec_mod.resolve(tiny_spec(train_ops=[{"op": "patch", "rate": 0.3}]))
    placed = spec_mod.resolve(tiny_spec(train_ops=[{"op": "patch", "rate": 0.3, "placement": "random"}]))
    assert "placement" not in plain.train_ops[0] and plain.group_hash() == placed.group_hash()


def test_seed_batch_auto_trains_adaptive_specs_one_run_at_a_time():
    from masklab.study.plan import seeds_per_batch as batch_size  # the planner decides seed groups

    on_gpu = {"seed_batch": "auto", "device": "cuda"}  # where auto batches (planning needs no GPU)
    spec = spec_mod.resolve(tiny_spec(train_ops=[{"op": "patch", "rate": CLASS_RATE}], train=on_gpu))
    plain = spec_mod.resolve(tiny_spec(train_ops=[{"op": "patch", "rate": 0.25}], train=on_gpu))
    assert batch_size(spec, 5) == 1 and batch_size(plain, 5) == 5


def test_classes_named_by_up_must_exist(workdir, write_spec):
    rate = {"adapt": "class", "signal": "label", "up": [3, 12], "init": 0.2}
    result = cli("train", write_spec(tiny_spec(train_ops=[{"op": "patch", "rate": rate}])))
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: train_ops[0].rate.up: class 12 does not exist; the dataset has classes 0..9"


# --- the update rules -----------------------------------------------------------------


def test_class_values_move_by_step_towards_the_target_and_stay_in_bounds():
    state = AdaptiveState(ops({"op": "patch", "rate": CLASS_RATE}), 4, 10, torch.device("cpu"))
    log = state.end_epoch(np.array([0.95, 0.9, 0.5, np.nan]))
    assert log["op0.rate"]["values"] == [0.25] * 4  # the values the epoch used
    assert log["op0.rate"]["signal"] == [0.95, 0.9, 0.5, None]
    assert state.values[0].tolist() == pytest.approx([0.3, 0.25, 0.2, 0.25])  # above: more; at target or unknown: same
    for _ in range(20):
        state.end_epoch(np.array([1.0, 1.0, 0.0, 0.0]))
    assert state.values[0].tolist() == pytest.approx([0.75, 0.75, 0.0, 0.0])


def test_a_negative_step_reverses_and_the_label_rule_moves_by_label():
    down = AdaptiveState(ops({"op": "patch", "rate": {**CLASS_RATE, "step": -0.05}}), 2, 4, torch.device("cpu"))
    down.end_epoch(np.array([0.95, 0.5]))
    assert down.values[0].tolist() == pytest.approx([0.2, 0.3])
    rate = {"adapt": "class", "signal": "label", "up": [1], "step": 0.1, "init": 0.5}
    label = AdaptiveState(ops({"op": "soft", "strength": rate}), 3, 4, torch.device("cpu"))
    label.end_epoch(None)
    label.end_epoch(None)
    assert label.values[0].tolist() == pytest.approx([0.3, 0.7, 0.3])


def test_sample_values_spread_over_lo_hi_by_loss_rank():
    rate = {"adapt": "sample", "init": 0.5, "lo": 0.1, "hi": 0.9, "decay": 0.5}
    state = AdaptiveState(ops({"op": "patch", "rate": rate}), 2, 6, torch.device("cpu"))
    index, labels = torch.tensor([0, 2, 3, 5]), torch.tensor([0, 0, 1, 1])
    logits = torch.tensor([[4.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, -3.0]])  # losses 0.02, 0.69, 0.31, 3.05
    state.observe(index, labels, logits)
    state.end_epoch(None)
    # hardest (index 5) gets lo, easiest (index 0) hi; unseen 1 and 4 keep init
    assert state.values[0].tolist() == pytest.approx([0.9, 0.5, 0.1 + 0.8 / 3, 0.1 + 0.8 * 2 / 3, 0.5, 0.1])
    state.observe(torch.tensor([5]), torch.tensor([1]), torch.tensor([[0.0, 9.0]]))  # now easy: average halves
    first = torch.nn.functional.cross_entropy(torch.tensor([[0.0, -3.0]]), torch.tensor([1]))
    now = torch.nn.functional.cross_entropy(torch.tensor([[0.0, 9.0]]), torch.tensor([1]))
    assert float(state.loss_avg[0][5]) == pytest.approx(float(0.5 * first + 0.5 * now))


def test_per_class_recall_counts_each_class():
    recall = per_class_recall(np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0]), 3)
    assert recall[:2].tolist() == pytest.approx([0.5, 2 / 3]) and np.isnan(recall[2])


# --- what the ops draw ----------------------------------------------------------------


def test_class_adaptive_rates_set_how_much_and_the_static_keys_still_set_where():
    p = OpPipeline(ops({"op": "patch", "rate": CLASS_RATE, "mode": "static"}), 0, (1, 28, 28))
    state = AdaptiveState(p.ops, 2, 64, torch.device("cpu"))
    p.state = state
    index, labels = torch.arange(64), torch.arange(64) % 2
    x = torch.rand(64, 1, 28, 28)
    state.values[0].copy_(torch.tensor([0.25, 0.5]))
    low = p(x, index, p.epoch_keys(0), labels=labels).mask
    counts = low.flatten(1).sum(1) // 16
    assert set(counts[labels == 0].tolist()) == {12} and set(counts[labels == 1].tolist()) == {24}  # round(r * 49)
    state.values[0].copy_(torch.tensor([0.5, 0.75]))
    high = p(x, index, p.epoch_keys(3), labels=labels).mask  # another epoch: static keeps each sample's order
    assert bool((low <= high).all())  # nested: more masking extends the same keyed order


def test_salient_placement_with_no_saliency_is_random_placement():
    raw = {"op": "patch", "rate": 0.5, "size": 4}
    random_p = OpPipeline(ops(raw), 3, (1, 28, 28))
    salient_p = OpPipeline(ops({**raw, "placement": "salient"}), 3, (1, 28, 28))
    x, index = torch.rand(32, 1, 28, 28), torch.arange(100, 132)
    flat = {0: torch.zeros(32, 7, 7)}
    assert torch.equal(
        random_p(x, index, random_p.epoch_keys(1)).mask,
        salient_p(x, index, salient_p.epoch_keys(1), saliency=flat).mask,
    )


def test_placement_takes_the_top_cells_with_keyed_ties_independent_of_the_batch():
    keys_of = OpPipeline(ops({"op": "patch", "rate": 0.25, "size": 7, "placement": "salient"}), 0, (1, 28, 28))
    saliency = torch.zeros(8, 4, 4)
    saliency[:, 0, :] = 1.0  # four cells tie for the top, 16 * 0.25 = 4 chosen: exactly that row
    saliency[:, 1, 0] = 2.0  # one cell above them all
    x, index = torch.rand(8, 1, 28, 28), torch.arange(8)
    grid = keys_of(x, index, keys_of.epoch_keys(0), saliency={0: saliency}).masks[0].grid
    assert bool(grid[:, 1, 0].all()) and int(grid[:, 0, :].sum()) == 8 * 3 and int(grid.sum()) == 8 * 4
    again = torch.cat(
        [
            keys_of(x[i : i + 3], index[i : i + 3], keys_of.epoch_keys(0), saliency={0: saliency[i : i + 3]})
            .masks[0]
            .grid
            for i in range(0, 8, 3)
        ]
    )
    assert torch.equal(grid, again)  # which tied cells: keyed per sample, not by batch
    assert len({tuple(g[0].tolist()) for g in grid}) > 1  # and they differ between samples


def test_salient_boxes_cover_the_brightest_box_and_background_the_darkest():
    saliency = torch.zeros(2, 14, 14)
    saliency[:, 2:6, 8:12] = 1.0
    keys = keyed.Keys(
        keyed.batch_keys(
            torch.arange(2), torch.tensor([keyed.mix(0, 0, 0, s) for s in keyed.STREAMS], dtype=torch.int32)
        )
    )
    salient = masks.rect_mask(keys, 28, 28, [0.08, 0.08], [1.0, 1.0], 1, saliency, "salient").grid  # 8 x 8 boxes
    assert bool(salient[:, 4:12, 16:24].all()) and int(salient[0].sum()) == 64
    background = masks.rect_mask(keys, 28, 28, [0.08, 0.08], [1.0, 1.0], 1, saliency, "background").grid
    assert not bool(background[:, 4:12, 16:24].any())


@pytest.fixture(scope="module")
def trained_cnn(tmp_path_factory):
    root = tmp_path_factory.mktemp("cnn")
    body = tiny_spec(
        model={"arch": "cnn", "width": 8}, data={"train_limit": 1000}, train={"epochs": 3, "batch_size": 64}
    )
    spec = spec_mod.resolve(body)
    run = experiment.train_spec(spec, [0], RunStore(root / "runs"), Events())[0].run
    _, data, model, _ = load_trained(run, torch.device("cpu"))
    return data, model


def test_salient_placement_hides_higher_gradient_patches_than_random_on_the_same_model(trained_cnn):
    data, model = trained_cnn
    x, y = data.test.x[:200].float() / 255.0, data.test.y[:200]
    index = data.test.index[:200]
    grid = pool(input_gradient(model, x, y), 4)  # (200, 7, 7): |d loss / d x| per patch
    hidden = {}
    for placement in ("random", "salient", "background"):
        p = OpPipeline(ops({"op": "patch", "rate": 0.25, "size": 4, "placement": placement}), 0, data.shape)
        out = p(x, index, p.epoch_keys(0), labels=y, saliency=None if placement == "random" else {0: grid})
        chosen = out.masks[0].grid
        assert int(chosen.sum()) == 200 * 12  # the same count however they are placed: round(0.25 * 49)
        hidden[placement] = (grid * chosen).flatten(1).sum(1) / 12  # mean gradient of each image's hidden patches
    # measured on this model: salient 2.2x random, background 0.23x random (means over 200 test images)
    assert float(hidden["salient"].mean()) > 1.8 * float(hidden["random"].mean())
    assert float(hidden["background"].mean()) < 0.35 * float(hidden["random"].mean())
    assert bool((hidden["salient"] >= hidden["random"]).all()) and bool(
        (hidden["background"] <= hidden["random"]).all()
    )
    assert float((hidden["salient"] > hidden["random"]).float().mean()) > 0.95
    top = grid.flatten(1).topk(12, 1).values.mean(1)  # salient takes each image's 12 highest
    assert torch.allclose(top, hidden["salient"])


def test_soft_mask_multiplies_by_m_in_0_1_and_logs_what_it_takes():
    p = OpPipeline(ops({"op": "soft", "strength": 0.6, "size": 4}), 0, (1, 28, 28))
    x = torch.ones(256, 1, 28, 28)
    out = p(x, torch.arange(256), p.epoch_keys(0))
    m = out.images[:, 0]
    assert float(m.min()) >= 0.4 - 1e-6 and float(m.max()) <= 1.0
    assert torch.equal(m[:, :4, :4], m[:, :1, :1].expand(-1, 4, 4))  # one value per 4 x 4 patch
    assert float(out.stats[0]) == pytest.approx(0.3, abs=0.01)  # E[strength * u] = 0.3
    constant = OpPipeline(ops({"op": "soft", "strength": 0.25, "dist": "constant", "fill": 1.0}), 0, (1, 28, 28))
    assert torch.allclose(
        constant(torch.zeros(4, 1, 28, 28), torch.arange(4), constant.epoch_keys(0)).images, torch.tensor(0.25)
    )


# --- end to end -----------------------------------------------------------------------

ADAPTIVE_OPS = [
    {"op": "patch", "size": 7, "rate": {**CLASS_RATE, "step": 0.1, "target": 0.5}, "placement": "salient"},
    {"op": "gaussian", "sigma": {"adapt": "sample", "init": 0.05, "lo": 0.0, "hi": 0.3}},
]


def test_adaptive_values_move_and_an_interrupted_run_resumes_bit_identically(workdir):
    body = tiny_spec(train_ops=ADAPTIVE_OPS, model={"arch": "cnn", "width": 8}, train={"epochs": 3})
    spec = spec_mod.resolve(body)
    reference = experiment.train_spec(spec, [0], RunStore(workdir / "reference"), Events())[0].run
    rows = reference.metrics()
    values = [r["adaptive"]["op0.rate"]["values"] for r in rows]
    assert values[0] == [0.25] * 10 and values[1] != values[0] and values[2] != values[1]
    assert all(v in (0.15, 0.25, 0.35, 0.45) for v in np.round(values[2], 6))  # moved by +-0.1 per epoch
    spread = rows[1]["adaptive"]["op1.sigma"]
    assert spread["min"] == 0.0 and spread["max"] == 0.3

    store = RunStore(workdir / "runs")
    with pytest.raises(Interrupted):
        experiment.train_spec(spec, [0], store, InterruptAfterEpoch(1))
    resumed = experiment.train_spec(spec, [0], store, Events(), resume=True)[0].run
    assert without_timing(resumed.metrics()) == without_timing(rows)
    mine = torch.load(resumed.path / "model.pt", weights_only=True)
    theirs = torch.load(reference.path / "model.pt", weights_only=True)
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    state = torch.load(resumed.path / "checkpoint.pt", weights_only=True)["adaptive"]
    assert state["saliency"]["7"].shape == (300, 4, 4) and float(state["saliency"]["7"].abs().sum()) > 0


def test_show_prints_per_class_values_over_epochs(workdir, write_spec):
    rate = {"adapt": "class", "signal": "label", "up": [0], "step": 0.1, "init": 0.2}
    path = write_spec(tiny_spec(train_ops=[{"op": "patch", "rate": rate}], train={"epochs": 3}))
    assert cli("train", path).exit_code == 0
    result = cli("show", "tiny", "--format", "csv")
    assert result.exit_code == 0
    out = cli("show", "tiny").stdout
    table = out.rstrip("\n").split("\n\n")[-1].splitlines()  # the last part; in a pipe, tables have no title line
    assert table[0].split() == ["epoch", *map(str, range(10))]
    assert table[1].split()[:3] == ["1", "0.2000", "0.2000"]
    assert table[3].split()[:3] == ["3", "0.4000", "0.0000"]


def test_mask_refuses_ops_that_follow_the_model(workdir, write_spec):
    path = write_spec(tiny_spec(train_ops=[{"op": "patch", "rate": 0.3, "placement": "background"}]))
    result = cli("mask", path, "--out", "m.npz")
    assert result.exit_code == 2 and "train_ops[0].placement: follows the model as it trains" in result.stderr


def test_mask_draws_a_soft_mask_and_reports_the_share_it_takes(workdir):
    op = "soft:strength=0.5,size=4"
    out = cli("mask", "--dataset", "mnist-mini", "--op", op, "--limit", "500", "--out", "s.npz", "-f", "json")
    assert out.exit_code == 0, out.stderr
    rows = {r["class"]: r for r in json.loads(out.stdout)["rows"]}
    assert rows["all"]["measure"] == "share taken away (1 - mean m)" and rows["all"]["requested"] == 0.25
    assert rows["all"]["n"] == 500 and abs(rows["all"]["realized"] - 0.25) < 0.01  # E[0.5 * u], u uniform per patch
    images = np.load(workdir / "s.npz")["images"]
    assert images.shape == (500, 28, 28) and float(images.max()) <= 1.0
