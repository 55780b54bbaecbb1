"""Interrupts and resume: Ctrl-C/SIGTERM leave a resumable run; resuming is bit-identical on CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from masklab import spec as spec_mod
from masklab.errors import Interrupted, UsageError
from masklab.events import Events
from masklab.store.runs import RunStore
from masklab.study import runner as experiment

from conftest import run_dirs, tiny_spec

TIMING = {"seconds", "train_seconds", "samples_per_s"}


class InterruptAfterEpoch(Events):
    """Sends this process SIGINT when an epoch ends, as a user's Ctrl-C would."""

    def __init__(self, epoch: int) -> None:
        self.at = epoch

    def epoch(self, rid: str, row: dict) -> None:
        if row["epoch"] == self.at:
            os.kill(os.getpid(), signal.SIGINT)


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


@pytest.mark.parametrize("precision", ["auto", "bf16"])
def test_interrupt_then_resume_matches_an_uninterrupted_run(workdir, precision):
    """Also under bf16 autocast on CPU: its rounding is as deterministic as fp32's."""
    train = {"epochs": 3, "precision": precision}
    spec = spec_mod.resolve(tiny_spec(train=train, train_ops=[{"op": "patch", "rate": 0.3, "size": 7}]))
    reference = experiment.train_spec(spec, [0], RunStore(workdir / "reference"), Events())[0].run

    store = RunStore(workdir / "runs")
    with pytest.raises(Interrupted, match="interrupted after 1 epoch"):
        experiment.train_spec(spec, [0], store, InterruptAfterEpoch(1))
    (run,) = store.all()
    assert run.status == "interrupted" and run.info["epochs_done"] == 1
    assert len(run.metrics()) == 1 and (run.path / "checkpoint.pt").is_file()

    outcome = experiment.train_spec(spec, [0], store, Events(), resume=True)[0]
    assert outcome.run.path == run.path and run.status == "done"
    assert without_timing(run.metrics()) == without_timing(reference.metrics())
    assert run.summary["test_acc"] == reference.summary["test_acc"]
    mine = torch.load(run.path / "model.pt", weights_only=True)
    theirs = torch.load(reference.path / "model.pt", weights_only=True)
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)


def test_bf16_on_cpu_autocasts_and_auto_stays_fp32(workdir):
    """`precision: bf16` trains under bf16 autocast on CPU (it was silently fp32 there);
    auto keeps CPU runs in fp32, so their numbers do not change with the CPU's bf16 support."""
    from masklab.evaluation.metrics import autocast

    a = torch.randn(4, 4)
    for precision, dtype in (("bf16", torch.bfloat16), ("auto", torch.float32), ("fp32", torch.float32)):
        with autocast(torch.device("cpu"), precision):
            assert (a @ a).dtype == dtype, precision
    runs = {}
    for precision in ("fp32", "bf16"):
        spec = spec_mod.resolve(tiny_spec(train={"epochs": 1, "precision": precision}))
        runs[precision] = experiment.train_spec(spec, [0], RunStore(workdir / precision), Events())[0].run
    assert runs["fp32"].metrics()[0]["train_loss"] != runs["bf16"].metrics()[0]["train_loss"]


def test_resume_refuses_a_changed_spec_and_names_the_keys(workdir):
    spec = spec_mod.resolve(tiny_spec(train={"epochs": 3}))
    store = RunStore(workdir / "runs")
    with pytest.raises(Interrupted):
        experiment.train_spec(spec, [0], store, InterruptAfterEpoch(1))
    changed = spec_mod.resolve(tiny_spec(train={"epochs": 3, "lr": 0.02}))
    with pytest.raises(UsageError, match=r"the spec changed since run tiny-\w+-s0 \(train.lr\)"):
        experiment.train_spec(changed, [0], store, Events(), resume=True)


def test_sigterm_exits_130_and_marks_the_run_interrupted(workdir, write_spec):
    path = write_spec(tiny_spec(train={"epochs": 200}))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "masklab", "train", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            folders = run_dirs(workdir)
            if (
                folders
                and (folders[0] / "metrics.jsonl").is_file()
                and (folders[0] / "metrics.jsonl").read_text().count("\n") >= 1
            ):
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    info = json.loads((run_dirs(workdir)[0] / "run.json").read_text())
    assert info["status"] == "interrupted" and info["epochs_done"] >= 1
    assert out == ""
