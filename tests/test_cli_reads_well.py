"""The command line as a new user meets it: each item here was found by trying it."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from masklab.analysis.plots import text_curves

from conftest import cli, fake_run, run_dirs, tiny_spec


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


# --- issue 25: what a user reads ------------------------------------------------------


def test_a_piped_table_is_tab_separated_with_one_field_per_value(workdir):
    """Values with spaces (a time, a note) stay one field; a tab or a line break in a note
    cannot split a field or a line; --no-header leaves the header row out, for sort."""
    runs = workdir / "runs"
    fake_run(runs, "piped", 0, note="one fixed mask\tper image\nfor good", tags={"method": "static"})
    fake_run(runs, "piped", 1, summary={"test_acc": 0.95})
    fake_run(runs, "piped", 2, summary={"test_acc": 0.91})
    result = cli("runs")
    assert result.exit_code == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    head = ["id", "status", "label", "seed", "dataset", "epochs", "test_acc", "macro_f1", "mlm_acc"]
    assert lines[0] == head + ["tags", "note", "created", "damage"]
    assert len(lines) == 4 and all(len(fields) == len(lines[0]) for fields in lines)
    first = dict(zip(lines[0], lines[1]))
    assert first["note"] == "one fixed mask per image for good" and first["tags"] == "method=static"
    assert first["created"] == "2026-01-01 00:00:00" and first["test_acc"] == "0.9000" and first["mlm_acc"] == "-"
    no_header = cli("runs", "--no-header").stdout.splitlines()
    assert no_header == result.stdout.splitlines()[1:]
    assert cli("runs", "-f", "csv", "--no-header").stdout.splitlines()[0].startswith("piped-0123abcd-s0,done,")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    best = subprocess.run(  # README's pipeline: the runs by test accuracy, best first
        ["bash", "-c", "masklab runs --no-header | sort -t$'\\t' -k7,7r | cut -f1,12"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert best.stdout.splitlines() == [
        "piped-0123abcd-s1\t2026-01-01 00:00:01",
        "piped-0123abcd-s2\t2026-01-01 00:00:02",
        "piped-0123abcd-s0\t2026-01-01 00:00:00",
    ]


def test_help_shows_every_bracket_as_written(monkeypatch):
    """typer reads help as rich markup, where `masklab[mlflow]` loses `[mlflow]`: every
    bracketed word of every command's help is on its --help screen."""
    import typer.main

    from masklab.cli import app

    monkeypatch.setenv("COLUMNS", "400")  # no word folded over two lines

    group = typer.main.get_command(app)
    tag = re.compile(r"\[[a-z#/@][^\[\]]*\]")  # what rich would take for a style
    checked = 0
    for name, command in group.commands.items():
        shown = " ".join(cli(name, "--help").stdout.replace("│", " ").split())
        for text in [command.help or ""] + [p.help or "" for p in command.params]:
            written = " ".join(text.replace("\\[", "[").split())
            for found in tag.findall(written):
                assert found in shown, f"masklab {name} --help lost {found}"
                checked += 1
    assert checked >= 4  # at least export's and train's extras and study's ray


def test_a_masked_language_model_shows_its_own_metric_wherever_accuracy_shows(figures, write_spec):
    body = {
        "name": "mlm",
        "seeds": [0, 1],
        "data": {"dataset": "kjv-mini", "train_limit": 300, "test_limit": 100, "val_fraction": 0.2},
        "model": {"arch": "bert", "dim": 32, "depth": 1, "heads": 2, "vocab_size": 400, "max_len": 32},
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.003, "objective": "masked-modeling"},
        "train_ops": [{"op": "tokens", "rate": 0.15, "action": "mlm"}],
    }
    result = cli("train", write_spec(body))
    assert result.exit_code == 0, result.stderr
    folders = run_dirs(figures)
    summary = json.loads((folders[0] / "summary.json").read_text())
    epochs = [json.loads(line) for line in (folders[0] / "metrics.jsonl").read_text().splitlines()]
    mlm, val = f"{summary['test_mlm_acc']:.4f}", f"{epochs[-1]['val_mlm_acc']:.4f}"
    assert summary["val_mlm_acc"] == epochs[-1]["val_mlm_acc"]
    table = [line.split("\t") for line in result.stdout.splitlines()]  # the train summary
    row = dict(zip(table[0], table[1]))
    assert (row["test_mlm_acc"], row["val_mlm_acc"], row["test_acc"]) == (mlm, val, "-")
    assert (
        f"epoch 2/2  loss {epochs[-1]['train_loss']:.4f}  val_loss {epochs[-1]['val_loss']:.4f}  val_mlm_acc {val}"
        in (result.stderr)
    )
    assert f"{folders[0].name}: done  test_mlm_acc {mlm}" in result.stderr
    listed = [line.split("\t") for line in cli("runs").stdout.splitlines()]
    assert dict(zip(listed[0], listed[1]))["mlm_acc"] == mlm
    shown = cli("show", "mlm-s0").stdout.split("\n\n")
    facts = dict(line.split("\t") for line in shown[0].splitlines()[1:])
    assert (facts["test_mlm_acc"], facts["val_mlm_acc"]) == (mlm, val) and facts["figures"] == "curves.png"
    log = [line.split("\t") for line in shown[1].splitlines()]
    assert log[0] == ["epoch", "train_loss", "val_loss", "val_mlm_acc", "lr", "seconds"] and log[2][3] == val
    compared = cli("compare", "mlm", "-f", "json")  # no --metric: the objective's own
    assert json.loads(compared.stdout)["metrics"] == ["test_mlm_acc"]
