"""rm, prune and tag: they delete or annotate, atomically, and never touch a run that
another process holds, here a real `masklab train` running in another process."""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from masklab.store import housekeeping
from masklab.store.runs import RunStore

from conftest import cli, run_dirs, tiny_spec


def set_info(folder: Path, **fields) -> None:
    info = json.loads((folder / "run.json").read_text())
    (folder / "run.json").write_text(json.dumps({**info, **fields}))


def days_ago(days: float) -> str:
    return (datetime.datetime.now().astimezone() - datetime.timedelta(days=days)).isoformat(timespec="milliseconds")


@pytest.fixture
def three_runs(workdir, write_spec):
    """tiny s0, s1, s2, all done (each with its checkpoint.pt)."""
    assert cli("train", write_spec(tiny_spec(train={"epochs": 1})), "--seeds", "0,1,2", "-q").exit_code == 0
    return run_dirs(workdir)


def test_parse_age():
    assert [housekeeping.parse_age(t) for t in ("90s", "30m", "12h", "7d", "2w", "0", "1.5")] == [
        90,
        1800,
        43200,
        604800,
        1209600,
        0,
        129600,
    ]
    with pytest.raises(Exception, match="30m, 12h, 7d"):
        housekeeping.parse_age("soon")


def test_rm_dry_run_then_rm(three_runs, workdir):
    s0, s1, s2 = three_runs
    dry = cli("rm", s0.name, "tiny-s1", "--dry-run", "-f", "csv")
    assert dry.exit_code == 0, dry.stderr
    rows = list(csv.DictReader(io.StringIO(dry.stdout)))
    assert [(r["run"], r["action"]) for r in rows] == [(s0.name, "would remove run"), (s1.name, "would remove run")]
    assert float(rows[0]["mb"]) > 0 and "would free" in dry.stderr
    table = [line.split("\t") for line in cli("rm", s0.name, "--dry-run").stdout.splitlines()]
    assert table[0] == ["run", "status", "action", "MB"] and table[1][3] == f"{float(rows[0]['mb']):.2f}"  # not 4.9300
    assert run_dirs(workdir) == [s0, s1, s2]
    done = cli("rm", s0.name, "tiny-s1")
    assert done.exit_code == 0 and run_dirs(workdir) == [s2]
    assert not any(p.name.startswith(".trash") for p in (workdir / "runs").iterdir())  # nothing left aside
    assert cli("rm", "tiny").exit_code == 0 and run_dirs(workdir) == []  # a spec name names all its runs
    assert cli("rm", "tiny").exit_code == 1  # nothing left to name


def test_prune_removes_dead_runs_by_age_and_checkpoints_of_finished_runs(three_runs, workdir):
    s0, s1, s2 = three_runs
    set_info(s0, status="failed", finished=days_ago(10))
    set_info(s1, status="interrupted", finished=days_ago(1))
    kept = cli("prune", "--keep-checkpoints", "-f", "json")
    assert [(r["run"], r["action"]) for r in json.loads(kept.stdout)["rows"]] == [(s0.name, "remove run")]
    assert run_dirs(workdir) == [s1, s2] and (s2 / "checkpoint.pt").is_file()
    dry = cli("prune", "--older-than", "12h", "--dry-run", "-f", "json")
    assert [(r["run"], r["action"]) for r in json.loads(dry.stdout)["rows"]] == [
        (s1.name, "would remove run"),
        (s2.name, "would remove checkpoint.pt"),
    ]
    assert run_dirs(workdir) == [s1, s2] and (s2 / "checkpoint.pt").is_file()
    assert cli("prune", "--older-than", "12h").exit_code == 0
    assert run_dirs(workdir) == [s2]
    assert not (s2 / "checkpoint.pt").exists() and (s2 / "model.pt").is_file()
    assert cli("show", s2.name).exit_code == 0 and cli("eval", s2.name).exit_code == 0  # still a whole run


def test_a_stale_run_counts_as_dead(three_runs, workdir):
    s0, _, _ = three_runs
    set_info(s0, status="running", started=days_ago(2), finished=None)  # its process is gone: no lock held
    assert json.loads(cli("runs", "-f", "json").stdout)["rows"][0]["status"] == "stale"
    assert cli("prune", "--older-than", "1d", "--keep-checkpoints").exit_code == 0
    assert s0 not in run_dirs(workdir)


def test_tags_and_notes_shown_filtered_and_naming_compare_groups(workdir, write_spec):
    assert cli("train", write_spec(tiny_spec(name="ta"), "a.yaml"), "--seeds", "0,1", "-q").exit_code == 0
    assert (
        cli("train", write_spec(tiny_spec(name="tb", train={"lr": 0.003}), "b.yaml"), "--seeds", "0,1", "-q").exit_code
        == 0
    )
    before = {p.name for p in run_dirs(workdir)}
    tagged = cli("tag", "ta", "method=static", "paper=fig2", "--note", "one mask per image")
    assert tagged.exit_code == 0, tagged.stderr
    assert cli("tag", "tb", "method=dynamic").exit_code == 0
    assert {p.name for p in run_dirs(workdir)} == before  # ids and folders unchanged
    rows = json.loads(cli("runs", "-f", "json").stdout)["rows"]
    assert [(r["tags"], r["note"]) for r in rows] == [("method=static,paper=fig2", "one mask per image")] * 2 + [
        ("method=dynamic", None)
    ] * 2
    assert "method=static,paper=fig2" in cli("runs").stdout
    picked = json.loads(cli("runs", "--tag", "method=dynamic", "-f", "json").stdout)["rows"]
    assert [r["name"] for r in picked] == ["tb", "tb"]
    named = json.loads(cli("compare", "ta", "tb", "--name-by", "method", "-f", "json").stdout)
    assert [g["group"] for g in named["groups"]] == ["static", "dynamic"] and named["reference"] == "static"
    assert cli("tag", "ta", "--remove", "paper", "--note", "").exit_code == 0
    info = json.loads((run_dirs(workdir)[0] / "run.json").read_text())
    assert info["tags"] == {"method": "static"} and info["note"] is None
    bad = cli("tag", "ta", "no equals sign")
    assert bad.exit_code == 2 and bad.stderr.startswith("Error: no equals sign: expected KEY=VALUE")


SLOW_SPEC = tiny_spec(name="busy", train={"epochs": 200, "batch_size": 8}, data={"train_limit": 2000})


@pytest.fixture
def run_in_progress(workdir, write_spec):
    """A real `masklab train` in another process, caught while it trains; stopped after the test."""
    spec = write_spec(SLOW_SPEC, "busy.yaml")
    proc = subprocess.Popen(
        [sys.executable, "-m", "masklab", "train", str(spec), "-q"],
        cwd=workdir,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    store = RunStore(workdir / "runs")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        busy = [r for r in store.all() if r.info.get("name") == "busy"]
        if busy and busy[0].status == "running" and busy[0].info.get("epochs_done", 0) >= 1:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the training in the other process never got going")
    yield busy[0]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def test_rm_prune_and_tag_leave_a_run_in_progress_alone(three_runs, run_in_progress, workdir):
    s0, s1, s2 = three_runs
    set_info(s0, status="failed", finished=days_ago(30))
    busy = run_in_progress
    refused = cli("rm", busy.id, s1.name)
    assert (
        refused.exit_code == 1
        and "being trained by another process" in refused.stderr
        and "nothing removed" in refused.stderr
    )
    assert busy.path.is_dir() and s1.is_dir()  # nothing removed, not even the free run
    pruned = cli("prune", "--older-than", "0", "-f", "json")
    assert pruned.exit_code == 0, pruned.stderr
    actions = {r["run"]: r["action"] for r in json.loads(pruned.stdout)["rows"]}
    assert actions == {s0.name: "remove run", s1.name: "remove checkpoint.pt", s2.name: "remove checkpoint.pt"}
    assert busy.path.is_dir() and (busy.path / "checkpoint.pt").is_file() and busy.status == "running"
    assert cli("tag", busy.id, "k=v").exit_code == 1
    assert "tags" not in busy.info
    exported = cli("export", busy.id, "--to", "tensorboard:tb")
    assert "being trained by another process" in exported.stderr and not (workdir / "tb" / busy.id).exists()


def test_the_run_json_rewrite_is_atomic(three_runs):
    """annotate() writes through the store's atomic write: no temporary file stays behind."""
    s0 = three_runs[0]
    run = RunStore(s0.parent).get(s0.name)
    housekeeping.annotate(run, {"a": "1"}, [], "n")
    assert yaml.safe_load((s0 / "run.json").read_text())["tags"] == {"a": "1"}
    assert sorted(p.name for p in s0.iterdir() if p.name.startswith(".")) == [".lock"]
