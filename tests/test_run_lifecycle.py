"""A run's life through the CLI: --force replaces atomically, a held run is never
touched by another process (a study waits for it), a crash mid-append does not spoil --resume."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time

from masklab import spec as spec_mod
from masklab.store.runs import Run, RunStore, run_id

from conftest import cli, run_dirs, tiny_spec


def fingerprint(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def hidden(workdir) -> list[str]:
    return [p.name for p in (workdir / "runs").iterdir() if p.name.startswith(".")]


def test_force_keeps_the_finished_run_until_the_new_one_is_complete(workdir, write_spec, monkeypatch):
    from masklab.study import runner

    real_fit = runner.fit
    path = write_spec(tiny_spec())
    assert cli("train", path, "-q").exit_code == 0
    (run,) = run_dirs(workdir)
    before = fingerprint(run)
    for failure in (KeyboardInterrupt, RuntimeError("DefaultCPUAllocator: can't allocate memory")):

        def broken(*args, failure=failure, **kwargs):
            assert run.is_dir() and json.loads((run / "run.json").read_text())["status"] == "done"
            raise failure

        monkeypatch.setattr(runner, "fit", broken)
        result = cli("train", path, "--force", "-q")
        assert result.exit_code in (1, 130) and f"run {run.name} is unchanged (done)" in result.stderr
        assert fingerprint(run) == before and hidden(workdir) == []
    monkeypatch.setattr(runner, "fit", real_fit)
    assert cli("train", path, "--force", "-q").exit_code == 0
    (again,) = run_dirs(workdir)
    assert again == run and fingerprint(run)["run.json"] != before["run.json"] and hidden(workdir) == []


def test_a_run_held_by_another_process_is_never_touched(workdir, write_spec):
    path = write_spec(tiny_spec())
    spec = spec_mod.load_spec(path)
    rid = run_id(spec.name, spec.group_hash(), 0)
    store = RunStore(workdir / "runs")
    run, lock = store.create(rid, spec_mod.dump_yaml(spec), {"id": rid, "name": "tiny", "seed": 0, "status": "running"})
    before = fingerprint(run.path)
    for flags in (("--resume",), ("--force",), ()):  # the study waits for it, touching nothing, until stopped
        log = workdir / "stderr.txt"
        with log.open("w") as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "masklab",
                    "train",
                    str(path),
                    "-q",
                    "--runs-dir",
                    str(workdir / "runs"),
                    *flags,
                ],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
            try:
                deadline = time.time() + 120
                while "another process is training: " + rid not in log.read_text() and time.time() < deadline:
                    assert proc.poll() is None, log.read_text()
                    time.sleep(0.1)
                assert fingerprint(run.path) == before
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=60) == 130, log.read_text()
            finally:
                proc.kill()
        assert fingerprint(run.path) == before
    assert run.path.is_dir() and json.loads((run.path / "run.json").read_text())["status"] == "running"
    lock.release()
    assert Run(run.path).status == "stale"
    assert cli("train", path, "--resume", "-q").exit_code == 0  # no checkpoint: started over, in place


def test_a_partial_last_metrics_line_does_not_spoil_resume(workdir, write_spec, monkeypatch):
    from masklab.errors import Interrupted
    from masklab.study import runner

    path = write_spec(tiny_spec(train={"epochs": 3}))
    real_fit = runner.fit

    def one_epoch_then_stop(group, *args, **kwargs):
        spec = group.spec
        group.spec = spec_mod.dataclasses.replace(spec, train=spec_mod.dataclasses.replace(spec.train, epochs=1))
        real_fit(group, *args, **kwargs)
        raise Interrupted("interrupted after epoch 1")

    monkeypatch.setattr(runner, "fit", one_epoch_then_stop)
    assert cli("train", path, "-q").exit_code == 130
    monkeypatch.setattr(runner, "fit", real_fit)
    (run,) = run_dirs(workdir)
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"epoch": 2, "train_loss": 0.8')  # the crash came mid-append
    result = cli("train", path, "--resume", "-q")
    assert result.exit_code == 0, result.stderr
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "done" and "error" not in info
