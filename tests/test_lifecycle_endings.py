"""How a run that does not finish is recorded (study/lifecycle.py `_ended`, `_finish`,
`_group_error`): its status, time and error in run.json, and the one line the user
reads. Each ending is raised from inside the training loop, as the real ones are."""

from __future__ import annotations

import json
import os
import time

import pytest
import torch

from masklab import spec as spec_mod
from masklab.errors import Interrupted, Pruned, RunError, UsageError
from masklab.events import Events
from masklab.store.folder import RunBusy
from masklab.store.runs import RunStore
from masklab.study import lifecycle, runner as experiment

from conftest import tiny_spec

CNN2 = {"arch": "cnn", "width": 4, "hidden": 16}


class RaiseAt(Events):
    """Raises `exc` when run training reaches `at`: "started" (before any epoch) or "epoch" (after epoch 1)."""

    def __init__(self, exc: BaseException, at: str = "epoch") -> None:
        self.exc, self.at = exc, at

    def started(self, rid, epochs, steps, start_epoch, runs=1) -> None:
        if self.at == "started":
            raise self.exc

    def epoch(self, rid, row) -> None:
        if self.at == "epoch":
            raise self.exc


def spec(**train):
    return spec_mod.resolve(tiny_spec(train={"epochs": 2, **train}))


def info_of(store: RunStore) -> dict:
    (run,) = store.all()
    return json.loads((run.path / "run.json").read_text())


def test_a_finished_run_records_its_duration(workdir):
    began = time.perf_counter()
    (result,) = experiment.train_spec(spec(), [0], RunStore(workdir / "runs"), Events())
    wall = time.perf_counter() - began
    info = json.loads((result.run.path / "run.json").read_text())
    assert info["status"] == "done" and 0 < info["duration_s"] <= wall and info["finished"]


@pytest.mark.parametrize(
    ("exc", "status", "error"),
    [
        (Pruned("pruned at epoch 1 by the search"), "pruned", "pruned at epoch 1 by the search"),
        (KeyboardInterrupt(), "interrupted", "interrupted"),
        (RuntimeError("boom"), "failed", "RuntimeError: boom"),
        (RunError("a masklab error"), "failed", "a masklab error"),
    ],
)
def test_an_unfinished_run_records_its_status_time_and_error(workdir, exc, status, error):
    store = RunStore(workdir / "runs")
    raised = None
    try:  # a pruned run ends the run, not the study: it is recorded and returned
        experiment.train_spec(spec(), [0], store, RaiseAt(exc))
    except (type(exc), Interrupted) as e:
        raised = e
    info = info_of(store)
    assert (info["status"], info["error"]) == (status, error) and info["finished"] and info["epochs_done"] == 1
    if status == "interrupted":
        rid = info["id"]
        assert str(raised) == f"run {rid} interrupted after 1 epoch(s); `masklab train SPEC --resume` continues it"


def test_out_of_memory_before_the_first_epoch_leaves_no_folder(workdir):
    store = RunStore(workdir / "runs")
    with pytest.raises(Exception) as raised:
        experiment.train_spec(spec(), [0], store, RaiseAt(torch.OutOfMemoryError("CUDA out of memory"), "started"))
    (rid,) = [p.name for p in (workdir / "runs").iterdir()] or [None]
    assert rid is None, "a run that never started leaves no folder"
    assert str(raised.value).startswith("out of memory on cpu while starting run tiny-")
    assert str(raised.value).endswith(
        "reduce train.batch_size (train.eval_batch_size for evaluation) or the model (model.hidden)"
    )


def test_out_of_memory_while_training_fails_the_run_and_says_where(workdir):
    store = RunStore(workdir / "runs")
    with pytest.raises(Exception) as raised:
        experiment.train_spec(spec(), [0], store, RaiseAt(RuntimeError("DefaultCPUAllocator: can't allocate memory")))
    info = info_of(store)
    where = f"out of memory on cpu while training run {info['id']}; reduce train.batch_size"
    assert str(raised.value).startswith(where) and info["status"] == "failed" and info["error"].startswith(where)


def test_a_replacement_that_fails_keeps_the_old_run_and_says_so(workdir):
    store = RunStore(workdir / "runs")
    (old,) = experiment.train_spec(spec(), [0], store, Events())
    before = (old.run.path / "run.json").read_bytes()
    for exc, expected in (
        (RunError("the data went away"), "the data went away; run {rid} is unchanged (done)"),
        (KeyboardInterrupt(), "interrupted before the new run was complete; run {rid} is unchanged (done)"),
        (
            RuntimeError("CUDA out of memory"),
            "out of memory on cpu while training run {rid}; run {rid} is unchanged (done); reduce",
        ),
    ):
        with pytest.raises(BaseException) as raised:
            experiment.train_spec(spec(), [0], store, RaiseAt(exc), force=True)
        text = expected.format(rid=old.run.id)
        assert str(raised.value).startswith(text.split("; reduce")[0]), (str(raised.value), text)
        assert (old.run.path / "run.json").read_bytes() == before and len(store.all()) == 1
    plain = RuntimeError("plain")
    with pytest.raises(RuntimeError) as raised:
        experiment.train_spec(spec(), [0], store, RaiseAt(plain), force=True)
    assert raised.value is plain  # not a masklab error: passed on as it is


def test_a_seed_group_interrupted_names_its_runs_and_how_to_continue(workdir):
    store = RunStore(workdir / "runs")
    group = spec_mod.resolve(tiny_spec(model=CNN2, train={"epochs": 2, "seed_batch": 2}))
    with pytest.raises(Interrupted) as raised:
        experiment.train_spec(group, [0, 1], store, RaiseAt(KeyboardInterrupt()))
    ids = ", ".join(sorted(r.id for r in store.all()))
    assert str(raised.value) == f"runs {ids} interrupted after 1 epoch(s); `masklab train SPEC --resume` continues them"


def interrupted_run(store: RunStore, s) -> dict:
    """A run of `s`, seed 0, interrupted after its first epoch, with its checkpoint."""
    with pytest.raises(Interrupted):
        experiment.train_spec(s, [0], store, RaiseAt(KeyboardInterrupt()))
    return info_of(store)


def test_a_run_left_running_without_its_lock_is_stale_and_needs_resume_or_force(workdir):
    store = RunStore(workdir / "runs")
    s = spec()
    info = interrupted_run(store, s)
    (run,) = store.all()
    run.update_info(status="running")  # its process died without a word: the lock is free
    with pytest.raises(RunError) as raised:
        lifecycle.find_or_create(store, s, 0, lambda: run.info, force=False, resume=False)
    assert str(raised.value) == (
        f"run {info['id']} exists with status stale; pass --resume to continue it or --force to start over"
    )


def test_a_run_claimed_for_resuming_is_held_against_a_second_claim(workdir):
    store = RunStore(workdir / "runs")
    s = spec()
    interrupted_run(store, s)
    (run,) = store.all()
    claim = lifecycle.find_or_create(store, s, 0, lambda: run.info, force=False, resume=True)
    try:
        assert claim.mode == "resume" and claim.run.path == run.path
        with pytest.raises(RunBusy):
            lifecycle.find_or_create(store, s, 0, lambda: run.info, force=False, resume=True)
    finally:
        claim.release()


def test_resuming_a_changed_spec_names_six_keys_at_most(workdir):
    store = RunStore(workdir / "runs")
    interrupted_run(store, spec())
    changed = spec(
        lr=0.0123,
        batch_size=17,
        weight_decay=0.123,
        warmup=0.1,
        label_smoothing=0.1,
        eval_batch_size=64,
        schedule="cosine",
        epochs=3,
    )
    with pytest.raises(UsageError) as raised:
        experiment.train_spec(changed, [0], store, Events(), resume=True)
    text = str(raised.value)
    assert text.startswith("cannot resume: the spec changed since run tiny-") and text.endswith(
        "; drop --resume to start a new run"
    )
    assert len(text[text.index("(") + 1 : text.rindex(")")].split(", ")) == 6


def test_a_damaged_checkpoint_leaves_the_run_as_it_was(workdir):
    store = RunStore(workdir / "runs")
    s = spec()
    before = interrupted_run(store, s)
    (run,) = store.all()
    (run.path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RunError):
        experiment.train_spec(s, [0], store, Events(), resume=True)
    after = info_of(store)
    assert (after["status"], after["error"], after["epochs_done"]) == (before["status"], before["error"], 1)


def test_a_seed_group_out_of_memory_says_how_many_seeds_were_batched(workdir):
    store = RunStore(workdir / "runs")
    group = spec_mod.resolve(tiny_spec(model=CNN2, train={"epochs": 2, "seed_batch": 2}))
    with pytest.raises(Exception) as raised:
        experiment.train_spec(group, [0, 1], store, RaiseAt(RuntimeError("CUDA out of memory")))
    assert str(raised.value) == (
        "out of memory on cpu while training seeds batched (2 at once); reduce train.batch_size "
        "(train.eval_batch_size for evaluation) or the model (model.width or model.hidden)"
    )


class ReadWhileRunning(Events):
    """Reads run.json after each epoch, while the run trains."""

    def __init__(self, store: RunStore) -> None:
        self.store, self.seen = store, []

    def epoch(self, rid, row) -> None:
        self.seen.append(json.loads((self.store.root / rid / "run.json").read_text()))


def test_a_resumed_run_drops_its_old_ending_while_it_trains(workdir):
    store = RunStore(workdir / "runs")
    s = spec()
    interrupted_run(store, s)
    reader = ReadWhileRunning(store)
    experiment.train_spec(s, [0], store, reader, resume=True)
    (running,) = reader.seen  # epoch 2, the one left
    assert running["status"] == "running" and running["pid"] == os.getpid() and running["device"] == "cpu"
    assert running["started"] and not {"error", "finished", "duration_s"} & set(running)


def test_a_seed_group_that_cannot_claim_every_seed_leaves_nothing_behind(workdir):
    """Seed 1 is damaged: the group claims none, seed 0's new folder is removed."""
    store = RunStore(workdir / "runs")
    group = spec_mod.resolve(tiny_spec(model=CNN2, train={"epochs": 1, "seed_batch": 2}))
    experiment.train_spec(spec_mod.resolve(tiny_spec(model=CNN2, train={"epochs": 1})), [1], store, Events())
    (done,) = store.all()
    (done.path / "run.json").write_text("{not json")
    with pytest.raises(RunError):
        lifecycle.claim_all(store, group, [0, 1], lambda seed: {"seed": seed}, force=False, resume=False)
    assert [p.name for p in store.root.iterdir() if not p.name.startswith(".")] == [done.path.name]
