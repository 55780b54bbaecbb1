"""The run store: created locked, committed whole, never written through a link, read
tolerantly, valid JSON. No training here: folders are written by hand."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import time

import pytest

from masklab.errors import RunError
from masklab.store import files
from masklab.store.runs import Run, RunBusy, RunStore, StoreWriteError, acquire, finite_json

from conftest import cli, fake_run


def new_run(store: RunStore, rid: str = "x-0123abcd-s0"):
    return store.create(rid, "name: x\n", {"id": rid, "name": "x", "status": "running"})


def test_a_created_run_is_locked_from_the_moment_it_exists(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    seen = []
    publish = files.rename_noreplace

    def watching(src, dst):  # what another process could see at the instant of publication
        seen.append(Run(src).is_locked())
        publish(src, dst)
        seen.append(Run(dst).is_locked())

    monkeypatch.setattr(files, "rename_noreplace", watching)
    run, lock = new_run(store)
    assert seen == [True, True] and run.is_locked()
    with pytest.raises(RunBusy, match="being written by another process"):
        acquire(run.path, run.id, tries=1)  # a concurrent --resume cannot take it, so cannot delete it
    lock.release()
    assert not run.is_locked()
    with pytest.raises(RunError, match="already exists"):
        new_run(store)
    assert [p.name for p in tmp_path.iterdir()] == [run.id]  # the failed creation left nothing


def test_a_lock_on_a_folder_that_was_swapped_meanwhile_is_refused(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    run, lock = new_run(store)
    lock.release()
    flock = __import__("fcntl").flock

    def swap_then_lock(fd, how):  # another process replaces the folder between open and flock
        os.rename(run.path, tmp_path / "elsewhere")
        os.mkdir(run.path)
        (run.path / ".lock").touch()
        monkeypatch.setattr("fcntl.flock", flock)
        flock(fd, how)

    monkeypatch.setattr("fcntl.flock", swap_then_lock)
    with pytest.raises(RunBusy, match="replaced by another process"):
        acquire(run.path, run.id)


@pytest.mark.parametrize("name", ["run.json", "summary.json", "spec.yaml"])
def test_an_atomic_write_replaces_a_planted_link_instead_of_following_it(tmp_path, name):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    store = RunStore(tmp_path / "runs")
    run, lock = new_run(store)
    (run.path / name).unlink(missing_ok=True)
    (run.path / name).symlink_to(outside)
    files.write_file(run.path, name, b"{}")
    assert outside.read_text() == "precious" and not (run.path / name).is_symlink()
    assert (run.path / name).read_text() == "{}"


def test_appends_locks_and_eval_folders_never_follow_a_planted_link(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "file").write_text("precious")
    store = RunStore(tmp_path / "runs")
    run, lock = new_run(store)
    (run.path / "metrics.jsonl").symlink_to(outside / "file")
    with pytest.raises(StoreWriteError, match="metrics.jsonl.*symbolic link"):
        run.append_metrics({"epoch": 1})
    (run.path / "eval").symlink_to(outside)
    with pytest.raises(StoreWriteError, match="not a real folder"):
        run.write_eval("clean", {"metrics": {}})
    lock.release()
    (run.path / ".lock").unlink()
    (run.path / ".lock").symlink_to(outside / "made-by-masklab")
    with pytest.raises(StoreWriteError, match="lock"):
        run.lock()
    assert sorted(p.name for p in outside.iterdir()) == ["file"] and (outside / "file").read_text() == "precious"


def test_a_failed_write_names_the_path_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    run, lock = new_run(store)
    real_write = os.write

    def full(fd, data):
        if len(data) > 100:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StoreWriteError, match=r"cannot write .*checkpoint.pt: No space left on device"):
        run.write_bytes("checkpoint.pt", b"x" * 1000)
    assert sorted(p.name for p in run.path.iterdir()) == [".lock", "run.json", "spec.yaml"]
    assert run.record_status(status="failed", error="disk full")  # small enough to record
    assert run.info["status"] == "failed"


def test_a_status_on_a_full_disk_is_written_in_place_or_not_at_all(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    run, lock = new_run(store)
    run.update_info(**{f"key{i}": {"nested": i} for i in range(20)})  # as indented as a real run.json
    monkeypatch.setattr(os, "write", lambda fd, data: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
    assert run.record_status(status="failed", error="disk full")  # compact JSON, in the old file's bytes
    assert json.loads((run.path / "run.json").read_text())["status"] == "failed"
    before = (run.path / "run.json").read_bytes()
    real_pwrite = os.pwrite

    def cut(fd, data, offset):  # the limit strikes after 10 bytes
        if offset >= 10:
            raise OSError(errno.EFBIG, "File too large")
        return real_pwrite(fd, bytes(data[: 10 - offset]), offset)

    monkeypatch.setattr(os, "pwrite", cut)
    assert not run.record_status(status="interrupted")
    assert (run.path / "run.json").read_bytes() == before  # never half a status
    assert not run.record_status(error="y" * 5000)  # no room: nothing truncated, nothing written
    assert (run.path / "run.json").read_bytes() == before


def test_non_finite_numbers_are_written_as_null_and_listed(tmp_path):
    body = finite_json({"test_loss": math.nan, "cells": [{"acc": 0.5}, {"acc": math.inf}], "ok": 1.0})
    assert body == {
        "test_loss": None,
        "cells": [{"acc": 0.5}, {"acc": None}],
        "ok": 1.0,
        "non_finite": ["cells[1].acc", "test_loss"],
    }
    store = RunStore(tmp_path)
    run, _ = new_run(store)
    run.write_summary({"test_loss": -math.inf})
    run.append_metrics({"epoch": 1, "val_loss": math.nan})
    strict = {"parse_constant": lambda c: pytest.fail(f"bare {c} in JSON")}
    assert json.loads((run.path / "summary.json").read_text(), **strict)["non_finite"] == ["test_loss"]
    assert json.loads((run.path / "metrics.jsonl").read_text(), **strict) == {
        "epoch": 1,
        "val_loss": None,
        "non_finite": ["val_loss"],
    }


DAMAGE = [
    ("run.json", "[1, 2]", "run.json: holds a list"),
    ("run.json", '{"status": "done", "name": "x", "seed": 0, "data": "mnist"}', "run.json: data holds a string"),
    ("run.json", '{"status": "done", "name": "x"}', "run.json: no seed"),
    ("run.json", '{"status": "done", "name": "x", "seed": 0, "tags": "a=b"}', "run.json: tags holds a string"),
    ("run.json", '{"status": "done", "name": "x", "seed": 0, "note": ["n"]}', "run.json: note holds a list"),
    ("run.json", "", "run.json: not valid JSON"),
    ("run.json", "[" * 100_000, "run.json: not valid JSON"),
    ("run.json", '{"status": "bogus"}', "run.json: status 'bogus'"),
    ("summary.json", '"hello"', "summary.json: holds a string"),
    ("summary.json", '{"test_acc": 0.9', "summary.json: not valid JSON"),
    ("spec.yaml", "", "spec.yaml: empty"),
    ("spec.yaml", "\x00\x01garbage: [", "spec.yaml:"),
    ("spec.yaml", "name: x\nseeds: [0]\ndata: {}\nmodel: 5\ntrain: {}\n", "spec.yaml: model holds a number"),
    ("spec.yaml", "name: x\nseeds: [0]\ndata: {}\ntrain: {}\n", "spec.yaml: no model"),
    ("spec.yaml", "a: &a [*a]\n", "spec.yaml: the YAML holds a recursive alias"),
    ("metrics.jsonl", '{"epoch": 1}\n[1]\n{"epoch": 2}\n', "metrics.jsonl: line 2"),
    ("eval/grid-1.json", '{"metrics": {"x": ', "eval/grid-1.json: not valid JSON"),
    ("eval/grid-1.json", '{"metrics": {"x": "high"}}', "eval/grid-1.json: not an evaluation record"),
]


@pytest.mark.parametrize(("name", "text", "named"), DAMAGE, ids=[f"{n}:{t[:12]}" for n, t, _ in DAMAGE])
def test_a_structurally_wrong_file_makes_the_run_damaged_and_names_the_file(tmp_path, name, text, named):
    folder = fake_run(tmp_path)
    (folder / name).parent.mkdir(exist_ok=True)
    (folder / name).write_text(text)
    run = Run(folder)
    assert run.status == "damaged" and run.damage().startswith(named)
    assert isinstance(run.info, dict) and isinstance(run.spec, dict) and isinstance(run.summary, dict)
    assert all(isinstance(r, dict) for r in run.metrics()) and isinstance(run.evals(), dict)


def test_a_fifo_or_a_link_in_place_of_a_file_is_damage_not_a_hang(tmp_path):
    folder = fake_run(tmp_path)
    (folder / "summary.json").unlink()
    os.mkfifo(folder / "summary.json")
    assert Run(folder).damage() == "summary.json: is not a regular file"
    (folder / "summary.json").unlink()
    (folder / "summary.json").symlink_to(tmp_path / "elsewhere.json")
    assert Run(folder).damage().startswith("summary.json: is a symbolic link")


def test_a_partial_last_metrics_line_is_a_crash_mid_append_not_damage(tmp_path):
    folder = fake_run(tmp_path)
    with open(folder / "metrics.jsonl", "a") as fh:
        fh.write('{"epoch": 2, "train_lo')
    run = Run(folder)
    assert run.damage() is None and run.status == "done" and [r["epoch"] for r in run.metrics()] == [1]
    run.truncate_metrics(1)
    assert (folder / "metrics.jsonl").read_text().count("\n") == 1 and run.metrics()[0]["epoch"] == 1


def test_damaged_runs_are_listed_and_never_break_runs_show_or_compare(workdir):
    runs = workdir / "runs"
    for seed in range(3):
        fake_run(runs, seed=seed, summary={"test_acc": 0.9 + seed / 100})
    (runs / "fake-0123abcd-s1" / "run.json").write_text("[1, 2]")
    listed = cli("runs", "-f", "json")
    assert listed.exit_code == 0, listed.stderr
    rows = {r["id"]: r for r in json.loads(listed.stdout)["rows"]}
    assert rows["fake-0123abcd-s1"]["status"] == "damaged" and "run.json" in rows["fake-0123abcd-s1"]["damage"]
    assert rows["fake-0123abcd-s0"]["status"] == "done"
    shown = cli("show", "fake-0123abcd-s1")
    assert shown.exit_code == 0 and "run.json: holds a list" in shown.stdout
    compared = cli("compare", "fake-0123abcd", "-f", "json")
    assert compared.exit_code == 0, compared.stderr
    assert "skipping fake-0123abcd-s1: status damaged" in compared.stderr  # matched by its folder name
    assert json.loads(compared.stdout)["groups"][0]["seeds"] == [0, 2]
    tagged = runs / "fake-0123abcd-s2" / "run.json"  # the fields housekeeping reads, of the wrong kind
    tagged.write_text(json.dumps({**json.loads(tagged.read_text()), "tags": "x", "finished": "not a time"}))
    for args in (("runs", "--tag", "a=b"), ("prune", "--dry-run", "--older-than", "0s")):
        result = cli(*args)
        assert result.exit_code == 0 and "Traceback" not in result.stderr, (args, result.stderr)
    exported = cli("export", "fake-0123abcd", "--to", f"tensorboard:{workdir / 'tb'}")
    assert (
        exported.exit_code == 1
        and "fake-0123abcd-s1: damaged (run.json: holds a list, not an object); not exported" in exported.stderr
    )


def test_commit_publishes_a_finished_scratch_folder_by_one_rename(tmp_path):
    store = RunStore(tmp_path / "runs")
    scratch = fake_run(tmp_path / "worker", name="w")  # a worker's scratch folder, outside the store
    run = store.commit(scratch, scratch.name)
    assert run.path == store.root / scratch.name and run.status == "done" and not scratch.exists()
    again = fake_run(tmp_path / "worker", name="w", summary={"test_acc": 0.5})
    with pytest.raises(RunError, match="already exists"):
        store.commit(again, again.name)
    assert again.is_dir() and run.summary["test_acc"] == 0.9  # refused: both folders as they were
    with run.lock() as held:  # a replacement is committed by the holder of the old run's lock
        replaced = store.commit(again, again.name, replace=run)
        held.release()
    assert replaced.summary["test_acc"] == 0.5 and sorted(p.name for p in store.root.iterdir()) == [run.id]


def test_commit_refuses_unfinished_damaged_or_linked_folders(tmp_path):
    store = RunStore(tmp_path / "runs")
    with pytest.raises(RunError, match="its status is interrupted, not done"):
        store.commit(fake_run(tmp_path / "a", status="interrupted"), "x")
    broken = fake_run(tmp_path / "b")
    (broken / "summary.json").write_text("[]")
    with pytest.raises(RunError, match="summary.json: holds a list"):
        store.commit(broken, "x")
    linked = fake_run(tmp_path / "c")
    (linked / "model.pt").symlink_to("/etc/hostname")
    with pytest.raises(RunError, match="model.pt is a symbolic link"):
        store.commit(linked, "x")
    assert not store.root.exists() or not list(store.root.iterdir())


def test_commit_copies_across_disks_and_swaps_without_renameat2(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    old = store.commit(fake_run(tmp_path / "w1"), "fake-0123abcd-s0")
    monkeypatch.setattr(files, "_RENAMEAT2", None)  # the portable fallback
    real_rename = os.rename

    def other_disk(src, dst):
        if "worker" in str(src):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", other_disk)
    scratch = fake_run(tmp_path / "worker", summary={"test_acc": 0.25})
    with old.lock() as held:
        new = store.commit(scratch, old.id, replace=old)
        held.release()
    assert new.summary["test_acc"] == 0.25 and [p.name for p in store.root.iterdir()] == [old.id]


def test_sweep_removes_what_a_dead_process_left_and_keeps_live_work(tmp_path):
    store = RunStore(tmp_path)
    staged, lock = store.stage("x-0123abcd-s0", "name: x\n", {"status": "running"})
    dead = tmp_path / ".tmp-y-0123abcd-s0-abc"
    dead.mkdir()
    (dead / "run.json").write_text("{}")
    old = time.time() - 3600
    for p in (staged.path, dead):
        os.utime(p, (old, old))
    store.sweep()
    assert staged.path.is_dir() and not dead.exists()  # the stage is locked by a live process
    lock.release()
    store.sweep()
    assert not staged.path.exists()


def across_disks(monkeypatch, fail: dict | None = None):
    """os.rename out of a `worker` folder fails as between disks; `fail` maps a path
    prefix to the errno a rename (or copy) into it fails with."""
    real_rename, real_copy = os.rename, shutil.copytree

    def rename(src, dst):
        for prefix, code in (fail or {}).items():
            if os.path.basename(dst).startswith(prefix) or os.path.basename(src).startswith(prefix):
                raise OSError(code, os.strerror(code))
        if "worker" in str(src):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_rename(src, dst)

    def copytree(src, dst, **kw):
        real_copy(src, dst, **kw)
        if "copy" in (fail or {}):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(shutil, "copytree", copytree)


def test_a_commit_from_another_disk_into_a_store_not_yet_made(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "a" / "b" / "runs")  # made on first use, parents and all
    across_disks(monkeypatch)
    run = store.commit(fake_run(tmp_path / "worker"), "fake-0123abcd-s0")
    assert run.summary == {"test_acc": 0.9} and [p.name for p in store.root.iterdir()] == [run.id]
    again = fake_run(tmp_path / "worker2" / "worker")
    with pytest.raises(RunError, match="run fake-0123abcd-s0 already exists; commit it with replace"):
        store.commit(again, run.id)
    assert again.is_dir() and [p.name for p in store.root.iterdir()] == [run.id]  # our copy dropped, theirs kept


@pytest.mark.parametrize(
    ("folder", "fail"),
    [("scratch", {".tmp-": errno.EIO}), ("worker", {"copy": errno.ENOSPC})],  # renamed in; copied from another disk
)
def test_a_failed_bring_in_names_the_path_and_leaves_nothing(tmp_path, monkeypatch, folder, fail):
    store = RunStore(tmp_path / "runs")
    store.root.mkdir()
    scratch = fake_run(tmp_path / folder)
    across_disks(monkeypatch, fail)
    with pytest.raises(StoreWriteError) as failed:
        store.commit(scratch, "fake-0123abcd-s0")
    code = next(iter(fail.values()))
    assert str(failed.value).startswith(f"cannot write {store.root}/.tmp-fake-0123abcd-s0-")
    assert f": {os.strerror(code)} (errno {code});" in str(failed.value)
    assert list(store.root.iterdir()) == [] and scratch.is_dir()


def test_a_failed_discard_names_the_run_and_releases_its_lock(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    run = store.commit(fake_run(tmp_path / "w"), "fake-0123abcd-s0")
    across_disks(monkeypatch, {".trash-": errno.EBUSY})
    with pytest.raises(StoreWriteError, match=f"^cannot write {run.path}: {os.strerror(errno.EBUSY)} "):
        store.discard(run)
    assert not run.is_locked()  # taken by discard, released by it
    with run.lock() as held:
        with pytest.raises(StoreWriteError):
            store.discard(run, held=held)
        with pytest.raises(RunBusy):
            acquire(run.path, run.id, tries=1)  # still ours: discard leaves a held lock to its holder


def test_own_refuses_a_run_outside_the_store_or_hidden_in_it(tmp_path):
    store = RunStore(tmp_path / "runs")
    outside = Run(fake_run(tmp_path / "elsewhere"))
    hidden = Run(fake_run(store.root, name=".stage-x"))
    for run in (outside, hidden):
        with pytest.raises(RunError) as refused:
            store.own(run)
        assert (
            str(refused.value) == f"{run.path}: not in the runs folder {store.root}; masklab touches only its own runs"
        )


def test_a_failed_publish_names_the_run_folder_and_leaves_nothing_behind(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    tried = []

    def fails(src, dst):
        tried.append(os.path.basename(src))
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(files, "rename_noreplace", fails)
    eio = f": {os.strerror(errno.EIO)} (errno {errno.EIO});"
    with pytest.raises(StoreWriteError) as created:
        new_run(store)
    assert str(created.value).startswith(f"cannot write {store.root / 'x-0123abcd-s0'}{eio}")
    scratch = fake_run(tmp_path / "scratch")
    with pytest.raises(StoreWriteError) as committed:
        store.commit(scratch, "fake-0123abcd-s0")
    assert str(committed.value).startswith(f"cannot write {store.root / 'fake-0123abcd-s0'}{eio}")
    assert tried[0].startswith(".tmp-x-0123abcd-s0-") and tried[1].startswith(".tmp-fake-0123abcd-s0-")
    assert list(store.root.iterdir()) == [] and (scratch / "summary.json").is_file()  # handed back whole
    staged, lock = store.stage("y-0123abcd-s0", "name: y\n", {"status": "running"})
    assert staged.path.name.startswith(".stage-y-0123abcd-s0-") and staged.id == "y-0123abcd-s0"
    lock.release()


def test_a_store_that_cannot_be_made_is_named_with_the_reason(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    store = RunStore(tmp_path / "file" / "runs")
    scratch = fake_run(tmp_path / "scratch")
    for attempt in (lambda: store.commit(scratch, "fake-0123abcd-s0"), lambda: new_run(store)):
        with pytest.raises(StoreWriteError) as failed:
            attempt()
        assert str(failed.value).startswith(f"cannot write {store.root}: Not a directory (errno {errno.ENOTDIR});")
    assert (scratch / "summary.json").is_file()
