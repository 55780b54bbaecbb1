"""How compare reads a metric from runs written by hand (no training): which way is
better, its step (one test example), a value stored as null, its per-epoch curve, and
the name a figure gives each group."""

from __future__ import annotations

import json

import pytest
import yaml

from masklab.analysis import compare as cmp
from masklab.store.runs import Run

from conftest import cli, fake_run

DATA = {"dataset": "mnist-mini", "fingerprint": "f", "n_test": 200}
# per-seed gains of b over a: 0.005, 0.005, 0.0051 -- equal to within one of 200 test examples
ACCS = [(0.8, 0.805), (0.81, 0.815), (0.82, 0.8251)]


def two_groups(root, data=DATA, **summary) -> None:
    for seed, (a, b) in enumerate(ACCS):
        for name, acc in (("a", a), ("b", b)):
            body = {"test_acc": acc, "test_loss": round(1 - acc, 4), **summary}
            fake_run(root / "runs", name=name, seed=seed, group_hash=name * 8, data=data, summary=body)


def comparison(*args: str) -> dict:
    out = cli("compare", "a", "b", *args, "-f", "json")
    assert out.exit_code == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize(
    ("metric", "higher"),
    [("test_acc", True), ("robust_acc", True), ("test_loss", False), ("mce_error", False)]
    + [("test_ce", False), ("train_seconds", False)],
)
def test_which_way_each_metric_is_better(metric, higher):
    assert cmp.higher_is_better(metric) is higher


def test_a_lower_loss_is_better(workdir):
    two_groups(workdir)
    (c,) = comparison("--metric", "test_loss")["comparisons"]
    assert (c["diff"], c["verdict"]) == (pytest.approx(-0.005033, abs=1e-6), "better")


def test_gains_equal_to_within_one_test_example_are_not_tested(workdir):
    two_groups(workdir)
    (c,) = comparison()["comparisons"]
    assert (c["p"], c["ci"], c["verdict"]) == (None, None, "inconclusive")
    assert "identical to within one test example" in c["why"]


def test_without_the_test_set_size_the_spread_is_tested(workdir):
    two_groups(workdir, data={"dataset": "mnist-mini", "fingerprint": "f"})
    (c,) = comparison()["comparisons"]
    assert c["p"] < 0.001 and c["verdict"] == "better"


def write_run(folder, info: dict, summary: dict) -> Run:
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"status": "done", **info}))
    (folder / "summary.json").write_text(json.dumps(summary))
    return Run(folder)


def test_the_step_of_each_metric(tmp_path):
    cells = [{"op": {"suite": "mnist_c"}}] * 3 + [{"op": {"suite": "blur"}}]
    run = write_run(tmp_path / "r", {"data": {"n_test": 200}, "n_val": 50}, {"robustness": cells})
    steps = {m: cmp.quantum([run], m) for m in ("test_acc", "robust_acc", "acc@mnist_c", "acc@gauss", "val_acc")}
    assert steps == {"test_acc": 1 / 200, "robust_acc": 1 / 800, "acc@mnist_c": 1 / 600, "acc@gauss": 1 / 200} | {
        "val_acc": 1 / 50
    }
    assert cmp.quantum([run], "best_val_acc") == 1 / 50 and cmp.quantum([run], "test_loss") == 0.0
    bare = write_run(tmp_path / "bare", {}, {})  # no data, no n_val recorded: no step known
    assert [cmp.quantum([bare], m) for m in ("test_acc", "val_acc")] == [0.0, 0.0] and cmp.quantum([], "test_acc") == 0


def test_a_metric_stored_as_null_is_no_value(workdir):
    two_groups(workdir, test_macro_f1=None)  # null without a non_finite list: not a metric of these runs
    assert comparison()["metrics"] == ["test_acc"]
    out = cli("compare", "a", "b", "--metric", "test_macro_f1")
    assert out.exit_code == 2 and out.stderr.startswith("Error: --metric test_macro_f1: group a-aaaaaaaa has no such")


def test_a_curve_is_the_mean_and_sample_std_per_epoch(workdir):
    for seed, vals in enumerate([(0.5, 0.6, 0.7), (0.7, 0.6, 0.9)]):
        folder = fake_run(workdir / "runs", name="a", seed=seed, group_hash="a" * 8)
        lines = [json.dumps({"epoch": e + 1, "val_acc": v}) for e, v in enumerate(vals)]
        (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    fake_run(workdir / "runs", name="b", group_hash="b" * 8)  # one run, one epoch: no spread
    curves = json.loads(cli("compare", "a", "b", "--curve", "val_acc", "-f", "json").stdout)["curves"]["groups"]
    a, b = curves["a-aaaaaaaa"], curves["b-bbbbbbbb"]
    assert a["epoch"] == [1, 2, 3] and a["mean"] == pytest.approx([0.6, 0.6, 0.8])
    assert a["std"] == pytest.approx([0.1414214, 0.0, 0.1414214]) and (a["min"], a["max"]) == (
        [0.5, 0.6, 0.7],
        [0.7, 0.6, 0.9],
    )
    assert (b["n"], b["std"]) == (1, [0.0])


def test_a_curve_with_a_missing_value_is_refused(workdir):
    for seed, second in enumerate((0.6, None)):
        folder = fake_run(workdir / "runs", name="a", seed=seed, group_hash="a" * 8)
        lines = [json.dumps({"epoch": 1, "val_acc": 0.5}), json.dumps({"epoch": 2, "val_acc": second})]
        (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    out = cli("compare", "a", "--curve", "val_acc")
    assert (out.exit_code, out.stderr.splitlines(keepends=True)[-1]) == (
        2,
        "Error: --curve val_acc: runs of a-aaaaaaaa have no per-epoch 'val_acc' (try val_acc, train_loss, "
        "train_acc, val_loss)\n",
    )


def test_a_figure_names_groups_without_their_hash_unless_two_would_share_a_name():
    names = cmp.display_names([cmp.Group(k, []) for k in ("q-static-0123abcd", "q-11111111", "q-22222222")])
    assert names == {"q-static-0123abcd": "q-static", "q-11111111": "q-11111111", "q-22222222": "q-22222222"}


def test_runs_that_saw_different_data_eval_ops_or_masklab_are_warned_of(workdir):
    one, two = "0.1." + "1" * 70, "0.2." + "2" * 70
    for seed in range(2):
        fake_run(workdir / "runs", name="a", seed=seed, group_hash="a" * 8, versions={"masklab": one})
        other = fake_run(
            workdir / "runs",
            name="b",
            seed=seed,
            group_hash="b" * 8,
            versions={"masklab": two},
            data={"dataset": "mnist-mini", "fingerprint": "g"},
        )
        spec = yaml.safe_load((other / "spec.yaml").read_text())
        (other / "spec.yaml").write_text(
            yaml.safe_dump({**spec, "eval": {"ops": [{"op": "gaussian", "sigma": [0.1]}]}})
        )
    body = comparison()
    assert body["warnings"] == [
        "the runs used different data fingerprints (f, g); their numbers may not be comparable",
        "the runs used different evaluation ops (None, {'ops': [{'op': 'gaussian', 'sigma': [0.1]}]}); their numbers "
        "may not be comparable",
        f"the runs used different masklab versions ({one}, {two[:44]}); their numbers may not be comparable",
    ]
    assert [g["spec"] for g in body["groups"]] == [
        {"eval.ops[0].op": None, "eval.ops[0].sigma": None, "name": "a"},
        {"eval.ops[0].op": "gaussian", "eval.ops[0].sigma": [0.1], "name": "b"},
    ]
    assert [(c["group"], c["reference"]) for c in body["comparisons"]] == [("b-bbbbbbbb", "a-aaaaaaaa")]
    assert body["notes"] == [
        "test_acc: compared on seeds only, the test set taken as fixed: some runs have no stored per-example "
        "predictions (trained before masklab stored them) (a-aaaaaaaa, b-bbbbbbbb)"
    ]


def test_the_rows_of_a_comparison_carry_each_statistic(workdir):
    two_groups(workdir)
    out = cli("compare", "a", "b", "--metric", "test_loss", "-f", "jsonl")
    ref, row = (json.loads(line) for line in out.stdout.splitlines())
    assert (ref["name"], ref["verdict"], ref["mean"], ref["max"]) == ("a", "reference", pytest.approx(0.19), 0.2)
    assert (row["name"], row["n"], row["min"], row["max"]) == ("b", 3, 0.1749, 0.195)
    assert row["ci_low"] < row["diff"] < row["ci_high"] < 0 and row["p"] < 0.001 and row["interval"] == "paired-t"


def test_val_acc_is_the_last_epochs_and_best_val_acc_the_highest(workdir):
    for seed, peak in enumerate((0.7, 0.8)):
        for name in ("a", "b"):
            folder = fake_run(workdir / "runs", name=name, seed=seed, group_hash=name * 8)
            lines = [json.dumps({"epoch": e + 1, "val_acc": v}) for e, v in enumerate((0.5, peak, 0.6))]
            (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    groups = comparison("--metric", "best_val_acc", "--metric", "val_acc")["groups"]
    assert groups[0]["stats"]["best_val_acc"]["values"] == {"0": 0.7, "1": 0.8}
    assert groups[0]["stats"]["val_acc"]["values"] == {"0": 0.6, "1": 0.6}


def test_a_masked_language_models_runs_compare_on_their_own_metric(workdir):
    for name in ("a", "b"):
        fake_run(workdir / "runs", name=name, group_hash=name * 8, summary={"test_mlm_acc": 0.3})
    assert comparison()["metrics"] == ["test_mlm_acc"]


def test_a_group_mixing_data_versions_or_nothing_finished_is_one_line(workdir):
    for seed, fingerprint in ((0, "f"), (1, "f"), (5, "zz")):
        fake_run(workdir / "runs", name="a", seed=seed, data={"dataset": "mnist-mini", "fingerprint": fingerprint})
    mixed = cli("compare", "a")
    assert (mixed.exit_code, mixed.stderr) == (
        1,
        "Error: group a-0123abcd mixes runs trained on different data (data fingerprint f: a-0123abcd-s0, "
        "a-0123abcd-s1; zz: a-0123abcd-s5): its seeds are not replicates of one experiment; train them again on one "
        "version of the data (masklab train SPEC --seeds ... --force), or compare them --per-run\n",
    )
    fake_run(workdir / "runs", name="c", status="failed")
    failed = cli("compare", "c")
    assert (failed.exit_code, failed.stderr.splitlines()[-1]) == (
        2,
        "Error: nothing to compare: no finished runs among those named",
    )
