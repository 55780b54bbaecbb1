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
from masklab.store.runs import DamagedFile, RunStore

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


# --- housekeeping touches only its own runs -----------------------------------------------


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error(result) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


@pytest.fixture
def victim(workdir) -> Path:
    """A folder outside the runs folder that looks like a run to a careless tool."""
    folder = workdir / "victim"
    folder.mkdir()
    (folder / "spec.yaml").write_text("name: x\n")
    (folder / "run.json").write_text('{"status": "done"}')
    (folder / "thesis.tex").write_text("precious\n")
    return folder


@pytest.mark.parametrize("command", ["rm", "tag", "export"])
def test_a_folder_outside_the_runs_folder_is_never_touched(three_runs, victim, workdir, command):
    before, runs_before = tree(victim), {p: tree(p) for p in three_runs}
    extra = {"rm": (), "tag": ("k=v",), "export": ("--to", "tensorboard:tb")}[command]
    for ref in ("victim", "./victim", str(victim), "runs/../victim"):
        result = cli(command, ref, *extra)
        error = one_error(result)
        assert result.exit_code == 1, (ref, result.stderr)
        assert "no such run" in error if "/" not in ref else "not a run folder in the runs folder" in error
    assert tree(victim) == before and {p: tree(p) for p in three_runs} == runs_before
    assert not (workdir / "tb").exists()


def test_a_typo_or_a_removed_run_names_nothing(three_runs, workdir):
    s0 = three_runs[0]
    assert cli("rm", s0.name).exit_code == 0
    again = cli("rm", s0.name)
    assert again.exit_code == 1 and f"{s0.name}: no such run" in one_error(again)
    (workdir / s0.name).mkdir()  # the same name in the working folder
    (workdir / s0.name / "spec.yaml").write_text("name: tiny\n")
    assert cli("rm", s0.name).exit_code == 1 and (workdir / s0.name / "spec.yaml").is_file()
    assert run_dirs(workdir) == three_runs[1:]


def test_names_resolve_exactly_ref_never_removes_ref2(workdir, write_spec):
    assert cli("train", write_spec(tiny_spec(name="ref2", train={"epochs": 1})), "-q").exit_code == 0
    (ref2,) = run_dirs(workdir)
    for name in ("ref", "ref-s0", "ref2-s1", "re"):
        result = cli("rm", name)
        assert result.exit_code == 1 and "no such run" in one_error(result)
    assert run_dirs(workdir) == [ref2]
    assert cli("train", write_spec(tiny_spec(name="ref", train={"epochs": 1})), "-q").exit_code == 0
    ref = next(p for p in run_dirs(workdir) if p.name.startswith("ref-"))
    removed = cli("rm", "ref", "-f", "json")
    assert [r["run"] for r in json.loads(removed.stdout)["rows"]] == [ref.name] and run_dirs(workdir) == [ref2]
    prefix = ref2.name[: len("ref2-") + 2]  # a unique prefix reaching into the hash
    assert cli("rm", prefix, "--dry-run").exit_code == 0


def test_a_link_in_the_runs_folder_is_reported_and_only_unlinked(three_runs, victim, workdir):
    s0 = three_runs[0]
    before = tree(victim)
    link = workdir / "runs" / "planted-0123abcd-s0"
    link.symlink_to(victim)
    for ref in (link.name, f"runs/{link.name}", str(link), "planted"):
        for command, extra in (("rm", ()), ("tag", ("k=v",)), ("export", ("--to", "tensorboard:tb"))):
            result = cli(command, ref, *extra)
            assert result.exit_code == 1 and "is a symbolic link" in one_error(result), (command, ref)
            assert "masklab rm --unlink planted-0123abcd-s0" in result.stderr
    pruned = cli("prune", "--older-than", "0", "-f", "json")
    assert pruned.exit_code == 0 and f"{link} is a symbolic link, not a run; left alone" in pruned.stderr
    assert link.is_symlink() and tree(victim) == before
    wrong = cli("rm", "--unlink", s0.name)
    assert wrong.exit_code == 1 and "is not a symbolic link" in one_error(wrong) and s0.is_dir()
    unlinked = cli("rm", "--unlink", f"runs/{link.name}", "-f", "json")
    assert unlinked.exit_code == 0, unlinked.stderr
    row = json.loads(unlinked.stdout)["rows"][0]
    assert (row["run"], row["status"], row["action"]) == (link.name, f"link to {victim}", "remove link")
    assert not os.path.lexists(link) and tree(victim) == before and s0.is_dir()


def test_a_folder_in_the_runs_folder_that_is_not_a_run_is_left_alone(three_runs, workdir):
    notes = workdir / "runs" / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("keep\n")
    result = cli("rm", "notes")
    assert result.exit_code == 1 and "not a run folder (masklab names them <name>-<hash>-s<seed>)" in one_error(result)
    assert cli("prune", "--older-than", "0").exit_code == 0 and (notes / "todo.txt").read_text() == "keep\n"


@pytest.mark.parametrize(
    "damage", [b"{not json", b"[1, 2]", b'{"status": "done", "name": "tiny", "seed": 0, "tags": "x"}']
)
def test_tag_never_rewrites_a_damaged_run_json(three_runs, damage):
    s0, s1, _ = three_runs
    (s0 / "run.json").write_bytes(damage)
    before = s1.joinpath("run.json").read_bytes()
    result = cli("tag", "tiny", "k=v")
    error = one_error(result)
    assert result.exit_code == 1 and f"run {s0.name} is damaged (run.json: " in error and "nothing tagged" in error
    assert (s0 / "run.json").read_bytes() == damage and s1.joinpath("run.json").read_bytes() == before
    alone = cli("tag", s0.name, "--note", "x")
    assert alone.exit_code == 1 and (s0 / "run.json").read_bytes() == damage


def test_tag_never_writes_a_run_json_into_a_folder_that_is_not_a_run(three_runs, workdir):
    folder = workdir / "runs" / "tiny-0123abcd-s9"  # run-shaped, but no run.json: damaged
    folder.mkdir()
    (folder / "spec.yaml").write_text(yaml.safe_dump(tiny_spec()))
    result = cli("tag", folder.name, "k=v")
    assert result.exit_code == 1 and "run.json: missing" in one_error(result)
    assert not (folder / "run.json").exists()


def test_rm_and_prune_report_the_status_each_run_had(three_runs, workdir):
    s0, s1, s2 = three_runs
    set_info(s1, status="failed", finished=days_ago(10))
    (s2 / "summary.json").write_text("[]")  # damaged
    removed = cli("rm", s0.name, s2.name, "-f", "json")
    assert [(r["run"], r["status"]) for r in json.loads(removed.stdout)["rows"]] == [
        (s0.name, "done"),
        (s2.name, "damaged"),
    ]
    pruned = cli("prune", "--older-than", "1d", "-f", "json")
    assert [(r["run"], r["status"], r["action"]) for r in json.loads(pruned.stdout)["rows"]] == [
        (s1.name, "failed", "remove run")
    ]
    assert run_dirs(workdir) == []


def test_the_store_never_rewrites_a_run_json_it_cannot_read(three_runs):
    """Below every command: update_info refuses, record_status gives up (says False)."""
    s0 = three_runs[0]
    (s0 / "run.json").write_bytes(b'"a string"')
    run = RunStore(s0.parent).get(s0.name)
    with pytest.raises(DamagedFile, match="run.json: holds a string, not an object"):
        run.update_info(tags={"k": "v"})
    assert run.record_status(status="failed") is False
    assert (s0 / "run.json").read_bytes() == b'"a string"'
