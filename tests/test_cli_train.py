"""End to end: real (tiny) trainings from the command line, and what they leave on disk."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import yaml

from conftest import cli, run_dirs, tiny_spec


def test_train_writes_a_complete_run_folder(figures, workdir, write_spec):
    path = write_spec(tiny_spec())
    result = cli("train", path, "--format", "json")
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["schema_version"] == 1
    (row,) = body["rows"]
    (folder,) = run_dirs(workdir)
    assert row["run"] == folder.name and folder.name.startswith("tiny-") and folder.name.endswith("-s0")
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == [
        "checkpoint.pt",
        "confusion.png",
        "curves.png",
        "metrics.jsonl",
        "model.pt",
        "predictions.npz",
        "recall.png",
        "run.json",
        "spec.yaml",
        "summary.json",
    ]  # no ops.png: TINY has no train ops
    stored = np.load(folder / "predictions.npz", allow_pickle=False)
    assert stored["labels"].dtype == np.uint8 and stored["labels"].shape == stored["predicted"].shape == (200,)
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "done" and info["seed"] == 0 and info["epochs_done"] == 2
    assert info["data"]["dataset"] == "mnist-mini" and len(info["data"]["fingerprint"]) == 16
    assert info["data"]["n_train"] == 300 and info["n_val"] == 60
    assert {"python", "torch", "masklab"} <= set(info["versions"])
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"} <= set(json.loads(lines[0]))
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["test_acc"] == row["test_acc"] and 0.5 < summary["test_acc"] <= 1.0
    assert len(summary["per_class_recall"]) == 10
    resolved = yaml.safe_load((folder / "spec.yaml").read_text())
    assert resolved["seeds"] == [0] and resolved["train"]["optimizer"] == "adamw"  # defaults filled in


def test_same_spec_reuses_the_finished_run_and_force_retrains(workdir, write_spec):
    path = write_spec(tiny_spec())
    assert cli("train", path, "-q").exit_code == 0
    first = run_dirs(workdir)
    created = json.loads((first[0] / "run.json").read_text())["created"]
    again = cli("train", path, "-q", "--format", "csv")
    assert again.exit_code == 0
    assert "already done, reusing it" in again.stderr
    assert list(csv.DictReader(io.StringIO(again.stdout)))[0]["status"] == "reused"
    assert run_dirs(workdir) == first
    (first[0] / "left-by-the-first-run").write_text("")
    forced = cli("train", path, "-q", "--force", "--format", "csv")
    assert forced.exit_code == 0 and run_dirs(workdir) == first
    assert "reusing" not in forced.stderr
    assert list(csv.DictReader(io.StringIO(forced.stdout)))[0]["status"] == "done"
    assert not (first[0] / "left-by-the-first-run").exists()  # a new folder, not the old one reported
    info = json.loads((first[0] / "run.json").read_text())
    assert info["status"] == "done" and info["created"] >= created and info["epochs_done"] == 2


def test_seeds_option_trains_one_run_per_seed(workdir, write_spec):
    path = write_spec(tiny_spec(train={"epochs": 1}))
    result = cli("train", path, "-q", "--seeds", "3,4", "-f", "jsonl")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(x) for x in result.stdout.splitlines()]
    assert [r["seed"] for r in rows] == [3, 4]
    assert [p.name[-3:] for p in run_dirs(workdir)] == ["-s3", "-s4"]
    assert rows[0]["run"][:-3] == rows[1]["run"][:-3]  # one group


@pytest.mark.parametrize(
    "change, code, message",
    [
        ({"train": {"lr": -0.1}}, 2, "train.lr: must be > 0, got -0.1"),
        ({"trian": {}}, 2, "trian: unknown key; did you mean 'train'?"),
        ({"data": {"dataset": "npz:missing.npz"}}, 1, "missing.npz: no such file"),
        ({"data": {"dataset": "mnist"}}, 1, "mnist: IDX files not found"),
        ({"data": {"dataset": "mnist", "root": "nowhere"}}, 1, "data.root nowhere: no such folder"),
        (
            {"train_ops": [{"op": "patch", "rate": 0.5, "size": 5}]},
            2,
            "train_ops[0].size: must divide the image size 28x28, got 5",
        ),
        (
            {"train_ops": [{"op": "region", "box": [20, 20, 10, 10]}]},
            2,
            "train_ops[0].box: [20, 20, 10, 10] reaches outside the 28x28 image",
        ),
        ({"train": {"compile": True, "device": "cpu"}}, 2, "train.compile: true is not supported on cpu"),
    ],
)
def test_bad_input_one_line_error_exit_code_and_no_folder(workdir, write_spec, change, code, message):
    path = write_spec(tiny_spec(**change))
    result = cli("train", path)
    assert result.exit_code == code
    assert result.stdout == ""
    assert result.stderr.startswith("Error: ") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert run_dirs(workdir) == []


def test_diverging_training_keeps_a_failed_run(workdir, write_spec):
    path = write_spec(tiny_spec(train={"lr": 1e6, "optimizer": "sgd", "momentum": 0.0, "schedule": "constant"}))
    result = cli("train", path, "-q")
    assert result.exit_code == 1
    assert "loss became non-finite at epoch 1, step" in result.stderr and "lower train.lr" in result.stderr
    (folder,) = run_dirs(workdir)
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "failed" and "non-finite" in info["error"]
    assert not (folder / "summary.json").exists()
    again = cli("train", path, "-q")
    assert again.exit_code == 1 and "failed earlier (loss became non-finite" in again.stderr
    assert "--resume retries it from its checkpoint, --force starts it over" in again.stderr


def test_runs_show_eval_compare_on_what_was_trained(workdir, write_spec):
    a = write_spec(tiny_spec(), "a.yaml")
    b = write_spec(tiny_spec(name="tiny-b", train={"lr": 0.003}), "b.yaml")
    assert cli("train", a, "-q").exit_code == 0
    assert cli("train", b, "-q").exit_code == 0
    listing = json.loads(cli("runs", "--format", "json").stdout)
    ids = [r["id"] for r in listing["rows"]]
    assert len(ids) == 2 and all(r["status"] == "done" for r in listing["rows"])
    table = list(csv.DictReader(io.StringIO(cli("runs", "--format", "csv").stdout)))
    assert [r["id"] for r in table] == ids and "test_acc" in table[0]

    shown = cli("show", ids[0][:9], "--format", "json")  # a unique prefix names a run
    assert shown.exit_code == 0, shown.stderr
    body = json.loads(shown.stdout)
    assert body["run"]["id"] == ids[0] and len(body["metrics"]) == 2

    ev = cli("eval", ids[0], "--format", "json")
    assert ev.exit_code == 0, ev.stderr
    (evaluation,) = json.loads(ev.stdout)["evals"]
    summary = json.loads((workdir / "runs" / ids[0] / "summary.json").read_text())
    assert evaluation["clean"]["acc"] == summary["test_acc"]  # the reloaded weights give the same answer
    assert (workdir / "runs" / ids[0] / "eval" / "clean.json").is_file()

    cmp = cli("compare", ids[0], ids[1], "--format", "json")
    assert cmp.exit_code == 0, cmp.stderr
    body = json.loads(cmp.stdout)
    assert body["schema_version"] == 1 and body["reference"] == ids[0][:-3]
    assert "train.lr" in body["keys"] and "name" in body["keys"]
    (comparison,) = body["comparisons"]
    second = json.loads((workdir / "runs" / ids[1] / "summary.json").read_text())["test_acc"]
    assert comparison["diff"] == pytest.approx(second - summary["test_acc"])
    assert comparison["verdict"] == "too few seeds" and comparison["why"].startswith("n=1: one run per group")
    assert comparison["interval"] == "mcnemar-exact" and "McNemar's exact p=" in comparison["why"]
    csv_rows = list(csv.DictReader(io.StringIO(cli("compare", ids[0], ids[1], "-f", "csv").stdout)))
    assert [r["group"] for r in csv_rows] == [ids[0][:-3], ids[1][:-3]]


def test_unknown_runs_and_ambiguous_prefixes(workdir, write_spec):
    path = write_spec(tiny_spec(train={"epochs": 1}))
    assert cli("train", path, "-q", "--seeds", "0,1").exit_code == 0
    missing = cli("show", "nope")
    assert missing.exit_code == 1 and "no such run" in missing.stderr
    ambiguous = cli("show", "tiny")
    assert ambiguous.exit_code == 1 and "matches 2 runs" in ambiguous.stderr
