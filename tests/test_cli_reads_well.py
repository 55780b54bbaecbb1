"""The command line as a new user meets it: each item here was found by trying it."""

from __future__ import annotations

import csv
import io
import json

import numpy as np

from masklab.analysis.plots import text_curves

from conftest import cli, run_dirs, tiny_spec


def test_eval_baseline_puts_mce_in_its_own_columns(workdir, write_spec):
    assert cli("train", write_spec(tiny_spec(train={"epochs": 1})), "--seeds", "0,1", "-q").exit_code == 0
    result = cli("eval", "tiny-s1", "--op", "gaussian:sigma=0.2,0.4", "--baseline", "tiny-s0", "-f", "csv")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    (mean,) = [
        r
        for r in rows
        if r["run"].endswith("-s1") and r["corruption"].startswith("mean over corruptions (robust_acc@grid-")
    ]
    body = json.loads(
        cli("eval", "tiny-s1", "--op", "gaussian:sigma=0.2,0.4", "--baseline", "tiny-s0", "-f", "json").stdout
    )
    s1 = next(b for b in body["evals"] if b["run_id"].endswith("-s1"))
    assert float(mean["acc"]) == s1["metrics"][f"robust_acc@{s1['name']}"]  # the accuracy column holds accuracy
    assert float(mean["mce"]) == s1["corruption_error"]["mce"]
    table = cli("eval", "tiny-s1", "--op", "gaussian:sigma=0.2,0.4", "--baseline", "tiny-s0").stdout
    assert table.splitlines()[0].split() == ["run", "corruption", "acc", "macro_f1", "mCE", "relative_mCE"]


def test_compare_csv_keeps_the_curve_and_the_ascii_curve_shows_the_reference(workdir, write_spec):
    for name, lr in (("ca", 0.01), ("cb", 0.003)):
        assert (
            cli(
                "train", write_spec(tiny_spec(name=name, train={"lr": lr}), f"{name}.yaml"), "--seeds", "0,1", "-q"
            ).exit_code
            == 0
        )
    result = cli("compare", "ca", "cb", "--curve", "val_acc", "-f", "csv")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["epoch"], r["metric"]) for r in rows] == [("1", "val_acc"), ("2", "val_acc")] * 2
    assert "writing the per-epoch curve rows" in result.stderr
    same = {"epoch": [1, 2], "mean": [0.5, 0.9], "std": [0, 0], "min": [0.5, 0.9], "max": [0.5, 0.9]}
    text = text_curves({"ref": same, "other": dict(same)}, "val_acc")
    plot = "".join(line.split("|", 1)[1] for line in text.splitlines()[1:15])
    assert plot.count("*") == 2 and "o" not in plot  # where the curves meet, the reference's mark shows
    assert "  * ref (reference)" in text


def test_show_has_the_recall_and_the_grid_that_json_has(workdir, write_spec):
    body = tiny_spec(eval={"ops": [{"op": "gaussian", "sigma": [0.2, 0.4]}]})
    assert cli("train", write_spec(body), "-q").exit_code == 0
    shown = cli("show", "tiny-s0")
    assert shown.exit_code == 0, shown.stderr
    summary = json.loads(cli("show", "tiny-s0", "-f", "json").stdout)["summary"]
    parts = shown.stdout.split("\n\n")
    recall = [line.split() for line in parts[1].splitlines()[1:]]
    assert recall == [[k, f"{v:.4f}"] for k, v in summary["per_class_recall"].items()]
    grid = [line.split() for line in parts[2].splitlines()[1:]]
    assert [g[:2] for g in grid] == [[c["name"], f"{c['acc']:.4f}"] for c in summary["robustness"]]
    assert parts[0].splitlines()[0].split() == ["key", "value"]  # a pipe: the header row first, no title


def test_a_run_is_named_by_its_name_and_seed(workdir, write_spec):
    assert cli("train", write_spec(tiny_spec(train={"epochs": 1})), "--seeds", "0,1", "-q").exit_code == 0
    ids = [p.name for p in run_dirs(workdir)]
    assert json.loads(cli("show", "tiny-s1", "-f", "json").stdout)["run"]["id"] == ids[1]
    assert cli("show", "tiny-s7").exit_code == 1


def test_training_on_an_npz_with_copies_says_it_runs_k_times_the_steps(workdir, write_spec):
    out = workdir / "three.npz"
    args = ["mask", "--dataset", "mnist-mini", "--limit", "300", "--op", "patch", "--rate", "0.5", "--copies", "3"]
    assert cli(*args, "--out", out).exit_code == 0
    body = tiny_spec(data={"dataset": f"npz:{out}", "train_limit": None, "val_fraction": 0.0}, train={"epochs": 1})
    result = cli("train", write_spec(body))
    assert result.exit_code == 0, result.stderr
    assert "holds 3 masked copies of each training image (300 images, 900 samples)" in result.stderr
    assert "3x the steps per epoch" in result.stderr
    assert "training 1 epochs x 28 steps" in result.stderr  # 900 // 32, not 300 // 32


def test_numbers_in_json_have_no_float_noise(workdir, write_spec):
    assert (
        cli("train", write_spec(tiny_spec(train={"epochs": 1, "lr": 0.003, "schedule": "constant"})), "-q").exit_code
        == 0
    )
    shown = cli("show", "tiny-s0", "-f", "json").stdout
    lr = json.loads(shown)["metrics"][0]["lr"]
    assert lr == 0.003 and '"lr": 0.003,' in shown
    assert np.isfinite(lr)
