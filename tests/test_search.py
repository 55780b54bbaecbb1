"""masklab search: trials are ordinary validation-only runs, the study survives a kill,
and --confirm compares the best configuration with the spec's own on fresh seeds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import cli, tiny_spec

optuna = pytest.importorskip("optuna")

SPACE = {
    "startup": 2,
    "train_ops[0].rate": {"low": 0.0, "high": 0.8},
    "train_ops[0].mode": ["static", "dynamic"],
    "train_ops[0].size": [4, 7],
}


def search_spec(**changes) -> dict:
    body = tiny_spec(train_ops=[{"op": "patch", "rate": 0.25, "size": 4}], **changes)
    body["search"] = dict(SPACE)
    return body


def trials_of(workdir, name: str = "tiny") -> list:
    (study,) = optuna.get_all_study_summaries(f"sqlite:///{workdir / 'runs' / f'{name}.search.db'}")
    loaded = optuna.load_study(
        study_name=study.study_name, storage=f"sqlite:///{workdir / 'runs' / f'{name}.search.db'}"
    )
    return loaded.get_trials()


def test_a_search_runs_ordinary_validation_only_trials(workdir, write_spec):
    result = cli("search", write_spec(search_spec()), "--trials", "3", "--format", "json")
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout)
    assert [t["trial"] for t in body["trials"]] == [0, 1, 2]
    assert body["db"].endswith("runs/tiny.search.db") and body["best"]["trial"] in (0, 1, 2)
    runs = {t["run"] for t in body["trials"]}
    for rid in runs:
        folder = workdir / "runs" / rid
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["test"] == "skipped" and not any(k.startswith("test_") for k in summary)  # never looked at
        assert not (folder / "predictions.npz").exists()
        info = json.loads((folder / "run.json").read_text())
        assert info["status"] == "done" and info["trial"]["metric"] == "val_acc"
        spec = yaml.safe_load((folder / "spec.yaml").read_text())
        assert spec["eval"]["test"] is False and spec["name"] == "tiny-search"
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        trial = next(t for t in body["trials"] if t["run"] == rid)
        # the last epoch's value, as JSON writes it (12 significant digits)
        assert trial["val_acc"] == pytest.approx(rows[-1]["val_acc"], abs=1e-12)
    for t in trials_of(workdir):
        assert sorted(t.intermediate_values) == [1, 2]  # every epoch reported
    table = cli("search", "spec.yaml", "--trials", "3")  # the study has its trials: nothing trains
    lines = table.stdout.splitlines()
    rates = [f"{t['search.train_ops[0].rate']:.4g}" for t in body["trials"]]
    assert [
        dict(zip(lines[0].split("\t"), line.split("\t")))["search.train_ops[0].rate"] for line in lines[1:4]
    ] == rates
    best = body["best"]["params"]["train_ops[0].rate"]
    assert f"train_ops[0].rate={best:.4g}," in lines[-1]  # 0.1493, not 0.1493115016854058
    assert f"{best:.4g}" == str(best) or str(best) not in lines[-1]
    shown = cli("compare", "tiny-search", "--metric", "val_acc")
    assert shown.exit_code == 0 and "tiny-search-" in shown.stdout  # compare works on trials


def test_a_killed_search_continues_from_its_database(workdir, write_spec):
    path = write_spec(search_spec(train={"epochs": 6, "batch_size": 16}))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "masklab", "search", str(path), "--trials", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    db = workdir / "runs" / "tiny.search.db"
    try:
        deadline = time.time() + 120
        killed_in = None
        while time.time() < deadline and killed_in is None:  # kill once the second trial has trained an epoch
            for folder in (workdir / "runs").glob("tiny-search-*"):
                info = json.loads((folder / "run.json").read_text()) if (folder / "run.json").is_file() else {}
                if info.get("trial", {}).get("number") == 1 and info.get("epochs_done", 0) >= 1:
                    killed_in = folder
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert killed_in is not None and db.is_file()
    before = trials_of(workdir)
    assert [t.state for t in before][:2] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING]
    epochs_at_kill = json.loads((killed_in / "run.json").read_text())["epochs_done"]
    assert 1 <= epochs_at_kill < 6

    result = cli("search", path, "--trials", "3")
    assert result.exit_code == 0, result.stderr
    assert "trial 1: taken up again" in result.stderr
    after = trials_of(workdir)
    assert [t.number for t in after] == [0, 1, 2]  # nothing asked twice
    assert after[1].state == optuna.trial.TrialState.COMPLETE and all(t.state.is_finished() for t in after)
    assert after[1].params == before[1].params and after[1].user_attrs["run"] == killed_in.name
    info = json.loads((killed_in / "run.json").read_text())
    assert info["status"] == "done" and info["epochs_done"] == 6
    lines = (killed_in / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4, 5, 6]  # resumed, not restarted
    assert len({t.user_attrs["run"] for t in after}) == 3


def test_two_search_processes_share_one_study(workdir, write_spec):
    path = write_spec(search_spec(train={"epochs": 3, "batch_size": 16}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "masklab", "search", str(path), "--trials", "4"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err.decode()[-1500:] for _, err in outs]
    trials = trials_of(workdir)
    assert 4 <= len(trials) <= 5  # each asks while fewer than 4 are finished or running: at most one over
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    # which process takes which trial is the scheduler's choice (under load one may take all)
    for t in trials:  # every trial trained once: one run, three epochs, no restart
        lines = (workdir / "runs" / t.user_attrs["run"] / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    assert len({t.user_attrs["run"] for t in trials}) == len(trials)


def test_confirm_compares_the_best_with_the_spec_on_fresh_seeds(workdir, write_spec):
    result = cli("search", write_spec(search_spec()), "--trials", "2", "--confirm", "2", "--format", "json")
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout)
    confirm = body["confirm"]
    assert confirm["seeds"] == [1, 2]  # the search trained with seed 0: left out
    groups = [g["group"] for g in confirm["groups"]]
    assert groups[0].startswith("tiny-") and groups[1].startswith("tiny-best-")
    assert all(g["seeds"] == [1, 2] and g["stats"]["test_acc"]["n"] == 2 for g in confirm["groups"])
    compared = {(c["metric"], c["paired"]) for c in confirm["comparisons"]}
    assert compared == {("test_acc", True), ("test_macro_f1", True)}  # paired over the same seeds
    assert all(c["verdict"] in ("better", "worse", "equivalent", "inconclusive") for c in confirm["comparisons"])
    names = sorted(p.name.rsplit("-", 2)[0] for p in (workdir / "runs").iterdir() if p.is_dir())
    assert names.count("tiny") == 2 and names.count("tiny-best") == 2


@pytest.mark.parametrize(
    ("search", "message"),
    [
        ({}, "search: names no key path to search"),
        (
            {"train_ops[0].rate": {"low": 0.0, "high": 1.5}},
            "search.train_ops[0].rate: the value 1.5 makes an invalid spec: train_ops[0].rate: must be in [0, 1], got 1.5",
        ),
        ({"train_ops[0].rate": {"low": 0.5, "high": 0.1}}, "search.train_ops[0].rate: low must be below high"),
        ({"train_ops[0].rate": {"lo": 0.1, "high": 0.5}}, "search.train_ops[0].rate.lo: unknown key"),
        (
            {"train_ops[0].rate": [0.1, 0.2], "metric": "test_acc"},
            "search.metric: must be a per-epoch validation column",
        ),
        (
            {"train_ops[0].mode": ["static", "sometimes"]},
            "search.train_ops[0].mode: the value 'sometimes' makes an invalid spec",
        ),
    ],
)
def test_search_spec_errors_are_one_line_and_name_the_key(workdir, write_spec, search, message):
    body = search_spec()
    body["search"] = search
    result = cli("search", write_spec(body), "--trials", "1")
    assert result.exit_code == 2
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not (workdir / "runs").exists() or not any((workdir / "runs").iterdir())


def test_without_optuna_the_error_names_the_install_command(workdir, write_spec, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    result = cli("search", write_spec(search_spec()), "--trials", "1")
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == "Error: masklab search needs Optuna; pip install 'masklab[search]' (or pip install optuna)"
    )
