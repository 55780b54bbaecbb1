"""A run is what it says it is: reused, resumed or compared only on the inputs it
recorded (its data by content, its init_from source by id and content)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_data import write_idx_folder
from test_data_cache import edit_in_place_keeping_mtime
from test_resume import InterruptAfterEpoch

from masklab import spec as spec_mod
from masklab.data import fingerprint, mnist_mini
from masklab.errors import Interrupted, RunError
from masklab.events import Events
from masklab.store import weights
from masklab.store.runs import RunStore
from masklab.study import runner

from conftest import cli, fake_run, run_dirs, tiny_spec


def write_npz(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (300, 1, 8, 8), dtype=np.uint8)
    y = np.arange(300) % 3
    np.savez(path, train_images=x[:200], train_labels=y[:200], test_images=x[200:], test_labels=y[200:])


def npz_spec(**changes) -> dict:
    return tiny_spec(name="npzrun", data={"dataset": "npz:d.npz", "train_limit": None, "test_limit": None}, **changes)


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def facts(ref: str) -> dict[str, str]:
    """The key/value part of `masklab show` in a pipe (tab-separated columns)."""
    lines = cli("show", ref).stdout.split("\n\n")[0].splitlines()[1:]
    return dict(line.split("\t", 1) for line in lines)


def one_error(result) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


def test_a_finished_run_is_not_reused_on_data_changed_in_place(workdir, write_spec):
    write_npz(workdir / "d.npz", 0)
    spec = write_spec(npz_spec())
    assert cli("train", spec, "-q").exit_code == 0
    (folder,) = run_dirs(workdir)
    before = tree_bytes(folder)
    recorded = json.loads((folder / "run.json").read_text())["data"]
    assert recorded["inputs"] == [
        {"path": str(workdir / "d.npz"), "sha256": hashlib.sha256((workdir / "d.npz").read_bytes()).hexdigest()}
    ]

    write_npz(workdir / "d.npz", 1)  # other arrays, same name
    again = cli("train", spec, "-q")
    error = one_error(again)
    assert again.exit_code == 1 and again.stdout == ""
    assert f"run {folder.name} was trained on npz:d.npz as it was: {workdir / 'd.npz'} has changed since" in error
    assert "--force" in error and "restore" in error
    assert tree_bytes(folder) == before and run_dirs(workdir) == [folder]  # nothing written or changed

    dry = json.loads(cli("train", spec, "--dry-run", "-f", "json").stdout)
    assert [(r["state"], r["action"]) for r in dry["rows"]] == [("done", "refuse")]

    write_npz(workdir / "d.npz", 0)  # restored: the same content, a new inode and mtime
    reused = cli("train", spec, "-f", "json")
    assert reused.exit_code == 0 and json.loads(reused.stdout)["rows"][0]["status"] == "reused"

    write_npz(workdir / "d.npz", 1)
    forced = cli("train", spec, "--force", "-f", "json")
    assert forced.exit_code == 0 and json.loads(forced.stdout)["rows"][0]["status"] == "done"
    now = json.loads((folder / "run.json").read_text())["data"]
    assert now["fingerprint"] != recorded["fingerprint"] and now["inputs"] != recorded["inputs"]


def test_an_idx_edit_that_restores_the_mtime_is_seen(workdir, write_spec, monkeypatch):
    """Same size, same inode, mtime put back: the digest cache's ctime catches it, and
    the decoded-data cache (keyed by content) does not serve the old arrays."""
    monkeypatch.setattr(fingerprint, "RACY_S", 0.0)  # cache digests of files written a moment ago
    write_idx_folder(workdir / "idx", n_train=60, n_test=20, side=8)
    spec = write_spec(tiny_spec(data={"dataset": "idx:idx", "train_limit": None, "test_limit": None}))
    assert cli("train", spec, "-q").exit_code == 0
    time.sleep(0.05)  # the edit lands on a later clock tick than the first write
    labels = workdir / "idx" / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[8:] = bytes(len(raw) - 8)
    edit_in_place_keeping_mtime(labels, bytes(raw))
    fingerprint._memo.clear()  # as a new process starts
    again = cli("train", spec, "-q")
    assert again.exit_code == 1 and f"{labels} has changed since" in one_error(again)


def test_an_interrupted_run_is_not_resumed_on_changed_data(workdir, write_spec):
    write_npz(workdir / "d.npz", 0)
    spec = spec_mod.resolve(npz_spec(train={"epochs": 3}))
    store = RunStore(workdir / "runs")
    with pytest.raises(Interrupted):
        runner.train_spec(spec, [0], store, InterruptAfterEpoch(1))
    (run,) = store.all()
    before = tree_bytes(run.path)
    write_npz(workdir / "d.npz", 1)
    path = write_spec(npz_spec(train={"epochs": 3}))
    for args in ((), ("--resume",), ("--resume", "--jobs", "2")):
        result = cli("train", path, "-q", *args)
        assert result.exit_code == 1 and f"run {run.id} was trained on npz:d.npz as it was" in one_error(result)
        assert tree_bytes(run.path) == before and run.status == "interrupted"
    write_npz(workdir / "d.npz", 0)
    assert cli("train", path, "-q", "--resume").exit_code == 0 and run.status == "done"


def test_the_runner_refuses_too_when_no_study_driver_checked_first(workdir):
    """The check in the run's lifecycle (every executor's path): the loaded data's
    fingerprint against the one recorded, for reuse and for resume."""
    write_npz(workdir / "d.npz", 0)
    spec = spec_mod.resolve(npz_spec(train={"epochs": 3}))
    store = RunStore(workdir / "runs")
    runner.train_spec(spec, [0], store, Events())
    write_npz(workdir / "d.npz", 1)
    with pytest.raises(RunError, match="d.npz has changed since"):
        runner.train_spec(spec, [0], store, Events())
    (run,) = store.all()
    data = {k: v for k, v in run.info["data"].items() if k != "inputs"}
    run.update_info(status="interrupted", data=data)  # as a run recorded before masklab pinned input files
    with pytest.raises(RunError, match="with data fingerprint .*; the data now gives"):
        runner.train_spec(spec, [0], store, Events(), resume=True)
    assert run.info["status"] == "interrupted"
    path = workdir / "spec.yaml"
    path.write_text(yaml.safe_dump(npz_spec(train={"epochs": 3})))
    driven = cli("train", path, "-q", "--resume")  # the driver loads the data to check such a run
    assert driven.exit_code == 1 and "with data fingerprint" in one_error(driven)


def test_a_new_seed_does_not_join_a_group_trained_on_other_data(workdir, write_spec):
    write_npz(workdir / "d.npz", 0)
    spec = write_spec(npz_spec())
    assert cli("train", spec, "-q").exit_code == 0
    write_npz(workdir / "d.npz", 1)
    joined = cli("train", spec, "-q", "--seeds", "1")
    error = one_error(joined)
    assert joined.exit_code == 1 and "would join group npzrun-" in error and "share their data" in error
    assert len(run_dirs(workdir)) == 1
    both = cli("train", spec, "-q", "--seeds", "0,1", "--force")
    assert both.exit_code == 0 and len(run_dirs(workdir)) == 2


def pre_and_ft(write_spec) -> tuple[Path, Path]:
    pre = write_spec(tiny_spec(name="pre", train={"epochs": 1}), "pre.yaml")
    ft = write_spec(tiny_spec(name="ft", train={"epochs": 1, "init_from": "pre"}), "ft.yaml")
    return pre, ft


def test_a_fine_tune_waits_for_its_source_and_is_pinned_to_it(workdir, write_spec):
    pre, ft = pre_and_ft(write_spec)
    dry = cli("train", ft, "--dry-run", "-f", "json")
    row = json.loads(dry.stdout)["rows"][0]
    assert dry.exit_code == 0 and row["action"] == "needs source" and "pre: no such run" in row["detail"]
    refused = cli("train", ft, "-q")
    assert refused.exit_code == 1 and "needs its init_from source" in one_error(refused) and run_dirs(workdir) == []

    assert cli("train", pre, "-q").exit_code == 0
    first = json.loads(cli("train", ft, "-f", "json").stdout)["rows"][0]
    (source,) = [p for p in run_dirs(workdir) if p.name.startswith("pre-")]
    group = source.name.rsplit("-s", 1)[0]
    folder = workdir / "runs" / first["run"]
    assert yaml.safe_load((folder / "spec.yaml").read_text())["train"]["init_from"] == group
    info = json.loads((folder / "run.json").read_text())
    pre_info = json.loads((source / "run.json").read_text())
    digest = hashlib.sha256((source / "model.pt").read_bytes()).hexdigest()
    assert pre_info["model_sha256"] == digest
    assert info["init_from"] == {"run": source.name, "model_sha256": digest, "tensors_loaded": 4}
    shown = facts(first["run"])
    assert shown["init from"] == f"{source.name} (model.pt sha256 {digest[:16]})"
    assert shown["data fingerprint"] == info["data"]["fingerprint"]

    # the pretraining trained again as another group: the name is ambiguous, never a guess
    assert cli("train", pre, "-q", "--set", "train.epochs=2").exit_code == 0
    ambiguous = cli("train", ft, "-q")
    error = one_error(ambiguous)
    (newer,) = [p.name.rsplit("-s", 1)[0] for p in run_dirs(workdir) if p.name.startswith("pre-") and p != source]
    listed = re.escape(f"names 2 groups, different specs trained under the name pre: {group} (1 run, created ")
    assert ambiguous.exit_code == 2 and re.search(f"^Error: train.init_from: pre: {listed}.*, {newer} \\(1 run", error)
    assert error.endswith(f"; name the group you mean, e.g. {newer} (masklab runs --name pre lists their runs)")
    by_seed = one_error(cli("train", ft, "-q", "--set", "train.init_from=pre-s0"))
    assert (
        by_seed.startswith("Error: train.init_from: pre-s0: matches runs of 2 groups") and f"e.g. {newer}-s0" in by_seed
    )
    second = json.loads(cli("train", ft, "-f", "json", "--set", f"train.init_from={newer}").stdout)["rows"][0]
    assert second["status"] == "done" and second["run"] != first["run"]  # a new fine-tune beside the old one
    old = json.loads(cli("train", ft, "-f", "json", "--set", f"train.init_from={group}").stdout)["rows"][0]
    assert old["run"] == first["run"] and old["status"] == "reused"


def retrain_in_place(source: Path) -> str:
    """What `--force` on the source does to it: other weights, their SHA-256 recorded."""
    state = {k: v + 0.01 for k, v in weights.load_state(source / "model.pt").items()}
    body = weights.to_bytes(state)
    (source / "model.pt").write_bytes(body)
    info = json.loads((source / "run.json").read_text())
    info["model_sha256"] = hashlib.sha256(body).hexdigest()
    (source / "run.json").write_text(json.dumps(info))
    return info["model_sha256"]


def test_a_fine_tune_of_a_source_trained_again_is_not_reused(workdir, write_spec):
    pre, ft = pre_and_ft(write_spec)
    assert cli("train", pre, "-q").exit_code == 0
    assert cli("train", ft, "-q").exit_code == 0
    source, tuned = sorted(run_dirs(workdir), key=lambda p: not p.name.startswith("pre-"))
    before = tree_bytes(tuned)
    digest = retrain_in_place(source)
    again = cli("train", ft, "-q")
    error = one_error(again)
    assert again.exit_code == 1 and f"was fine-tuned from run {source.name}, whose model.pt has changed" in error
    assert tree_bytes(tuned) == before
    assert cli("train", ft, "-q", "--force").exit_code == 0
    assert json.loads((tuned / "run.json").read_text())["init_from"]["model_sha256"] == digest


def test_a_source_whose_model_is_not_what_it_recorded_is_refused(workdir, write_spec):
    pre, ft = pre_and_ft(write_spec)
    assert cli("train", pre, "-q").exit_code == 0
    (source,) = run_dirs(workdir)
    state = {k: v * 2 for k, v in weights.load_state(source / "model.pt").items()}
    (source / "model.pt").write_bytes(weights.to_bytes(state))  # not the weights it finished with
    refused = cli("train", ft, "-q")
    assert refused.exit_code == 1 and "model.pt is not the one it finished with" in one_error(refused)
    assert run_dirs(workdir) == [source]


def test_compare_refuses_a_group_that_mixes_data_versions(workdir):
    runs = workdir / "runs"
    fake_run(runs, "g", 0, data={"dataset": "mnist-mini", "fingerprint": "aaaa"})
    fake_run(runs, "g", 1, data={"dataset": "mnist-mini", "fingerprint": "bbbb"})
    fake_run(runs, "h", 0, group_hash="4567cdef")
    for args in (("g", "h"), ("g", "--by", "train.lr")):
        result = cli("compare", *args)
        error = one_error(result)
        assert result.exit_code == 1 and "group g-0123abcd mixes runs trained on different data" in error
        assert "aaaa: g-0123abcd-s0" in error and "bbbb: g-0123abcd-s1" in error
    assert cli("compare", "g", "h", "--per-run").exit_code == 0


def test_compare_says_when_a_groups_data_changed_since(workdir, write_spec):
    write_npz(workdir / "d.npz", 0)
    assert cli("train", write_spec(npz_spec()), "-q").exit_code == 0
    assert cli("train", write_spec(npz_spec(train={"lr": 0.02})), "-q").exit_code == 0
    groups = sorted({p.name.rsplit("-s", 1)[0] for p in run_dirs(workdir)})
    quiet = cli("compare", *groups, "-f", "json")
    assert quiet.exit_code == 0 and "changed since" not in quiet.stderr
    digests = [hashlib.sha256((workdir / "d.npz").read_bytes()).hexdigest()]
    write_npz(workdir / "d.npz", 1)
    digests.append(hashlib.sha256((workdir / "d.npz").read_bytes()).hexdigest())
    loud = cli("compare", *groups, "-f", "json")
    assert loud.exit_code == 0
    assert json.loads(loud.stdout)["groups"] == json.loads(quiet.stdout)["groups"]  # the numbers, as they were
    warned = [line for line in loud.stderr.splitlines() if "changed since" in line]
    assert warned == [
        f"warning: {g}: {workdir / 'd.npz'} has changed since (sha256 {digests[0][:12]} then, {digests[1][:12]} now); "
        "its numbers are for the data as it was when its runs trained"
        for g in groups
    ]
    assert json.loads(loud.stdout)["warnings"] == [w.removeprefix("warning: ") for w in warned]
    assert f"{workdir / 'd.npz'} has changed since" in facts(f"{groups[0]}-s0")["data inputs"]


def test_a_run_records_the_files_of_each_kind_of_dataset(workdir, write_spec):
    from masklab.data import registry

    write_idx_folder(workdir / "idx")
    assert [p.name for p in registry.input_paths("idx:idx")] == [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    assert registry.input_paths("mnist-mini") == [mnist_mini.EMBEDDED / "mnist-mini.npz"]
    assert [p.name for p in registry.input_paths("kjv-mini")] == ["kjv-mini.jsonl"]
    assert registry.input_paths("text:some/folder") == [Path("some/folder")]
    made = cli("mask", "--dataset", "idx:idx", "--op", "pixel", "--rate", "0.5", "--out", "m.npz")
    assert made.exit_code == 0, made.stderr
    assert [p.name for p in registry.input_paths("npz:m.npz")][:2] == ["m.npz", "train-images-idx3-ubyte.gz"]
    assert os.path.realpath(registry.input_paths("npz:m.npz")[1]) == str(workdir / "idx" / "train-images-idx3-ubyte.gz")
