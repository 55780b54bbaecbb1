"""What rm, prune and tag decide and report, on runs written by hand (no training): the
bytes of what they remove, the time that dates a dead run, the words of a refusal."""

from __future__ import annotations

import datetime
import json
import os
import shutil

import pytest

from masklab.errors import RunError
from masklab.store import housekeeping
from masklab.store.runs import RunStore

from conftest import cli, fake_run, run_dirs


def days_ago(days: float) -> str:
    return (datetime.datetime.now().astimezone() - datetime.timedelta(days=days)).isoformat()


def rows_of(result) -> list[tuple]:
    assert result.exit_code == 0, result.stderr
    return [(r["run"], r["status"], r["action"], r["mb"]) for r in json.loads(result.stdout)["rows"]]


def test_size_of_counts_the_bytes_of_regular_files_and_never_follows_a_link(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"x" * 1000)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.bin").write_bytes(b"y" * 234)
    (tmp_path / "link").symlink_to("/" + "z" * 300)  # a link's own size is its target's length
    os.mkfifo(tmp_path / "fifo")
    assert housekeeping.size_of(tmp_path) == 1234
    assert housekeeping.size_of(tmp_path / "a.bin") == 1000
    assert housekeeping.size_of(tmp_path / "link") == 301


def test_prune_removes_a_checkpoint_file_only_and_reports_its_size(workdir):
    runs = workdir / "runs"
    kept = fake_run(runs, name="kept")
    (kept / "checkpoint.pt").write_bytes(b"c" * 123_456)
    fake_run(runs, name="nockpt")  # done, no checkpoint.pt: nothing to do
    linked = fake_run(runs, name="linked")
    (linked / "checkpoint.pt").symlink_to(kept / "checkpoint.pt")  # a link is not its checkpoint
    assert rows_of(cli("prune", "--dry-run", "-f", "json")) == [
        ("kept-0123abcd-s0", "done", "would remove checkpoint.pt", 0.12)
    ]
    assert (kept / "checkpoint.pt").stat().st_size == 123_456 and (linked / "checkpoint.pt").is_symlink()


def test_prune_dates_a_dead_run_by_its_last_recorded_time(workdir):
    runs = workdir / "runs"
    (runs / "notes").mkdir(parents=True)  # not a run: listed first (no time), passed by
    created = fake_run(runs, name="created", status="failed", created=days_ago(30))
    garbled = fake_run(runs, name="garbled", status="failed", finished="not a time", started=days_ago(30))
    untimed = fake_run(runs, name="untimed", status="failed", created=None)
    old = (datetime.datetime.now() - datetime.timedelta(days=30)).timestamp()
    os.utime(untimed / "run.json", (old, old))  # no time recorded: run.json's modification time
    recent = fake_run(runs, name="recent", status="failed", created=days_ago(30), finished=days_ago(1))
    outside = fake_run(workdir / "elsewhere", name="outside", status="failed", created=days_ago(30))
    (runs / "outside-0123abcd-s0").symlink_to(outside)  # a planted link: warned of, never followed
    (runs / ".hidden").symlink_to(outside)  # hidden: the store's own business, no warning
    shutil.copytree(created, runs / "backup")  # a dead run's copy under a name that is not a run id: not ours
    result = cli("prune", "--older-than", "7d", "--dry-run", "-f", "json")
    assert sorted(r[0] for r in rows_of(result)) == [created.name, garbled.name, untimed.name]
    assert result.stderr == (
        f"warning: {runs / 'outside-0123abcd-s0'} is a symbolic link, not a run; left alone "
        "(masklab rm --unlink outside-0123abcd-s0 removes it)\nwould free 0.0 MB in 3 action(s)\n"
    )
    assert cli("prune", "--older-than", "7d").exit_code == 0
    assert [p.name for p in run_dirs(workdir)] == ["backup", "notes", "outside-0123abcd-s0", recent.name]
    assert outside.is_dir()


def test_tags_split_at_the_first_equals_sign_and_a_bad_one_is_one_line(workdir):
    fake_run(workdir / "runs", name="ref")
    assert cli("tag", "ref", "url=a=b", "empty=").exit_code == 0
    assert json.loads((run_dirs(workdir)[0] / "run.json").read_text())["tags"] == {"url": "a=b", "empty": ""}
    for bad in ("novalue", "bad key=v", "=v"):
        out = cli("tag", "ref", bad)
        assert (out.exit_code, out.stderr) == (
            2,
            f"Error: {bad}: expected KEY=VALUE with a key of letters, digits, '.', '_' or '-', e.g. method=static\n",
        )


def test_runs_held_by_another_process_are_named_with_their_pids_five_at_most(workdir):
    store = RunStore(workdir / "runs")
    held = [fake_run(workdir / "runs", name="m", seed=s, status="running", pid=4242 + s) for s in range(6)]
    locks = [store.get(p.name).lock() for p in held]
    try:
        out = cli("rm", "m")
        shown = ", ".join(f"m-0123abcd-s{s} (pid {4242 + s})" for s in range(5))
        assert (out.exit_code, out.stderr) == (
            1,
            f"Error: 6 run(s) are being trained by another process: {shown}; nothing removed. Wait for them, "
            "or name the other runs\n",
        )
    finally:
        for lock in locks:
            lock.release()
    assert len(run_dirs(workdir)) == 6


def test_a_damaged_run_is_never_tagged_and_the_refusal_says_what_to_do(workdir):
    folder = fake_run(workdir / "runs", name="ref")
    (folder / "summary.json").write_text("[]")
    message = (
        f"run {folder.name} is damaged (summary.json: holds a list, not an object); nothing tagged: masklab never "
        "rewrites a file it cannot read. Restore the file, or remove the run"
    )
    out = cli("tag", "ref", "k=v")
    assert (out.exit_code, out.stderr) == (1, f"Error: {message}\n")
    with pytest.raises(RunError) as refused:  # annotate checks again, under the lock
        housekeeping.annotate(RunStore(workdir / "runs").get(folder.name), {"k": "v"}, [], None)
    assert str(refused.value) == message
