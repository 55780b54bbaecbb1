"""A full disk or a read-only runs dir: one line naming the path, the run marked failed
with the reason when that can be written, no temporary file left, no internal error.

A full disk is simulated without root: the child process runs under RLIMIT_FSIZE with
SIGXFSZ ignored, so a write past the limit fails with EFBIG exactly as ENOSPC would."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

from conftest import cli, run_dirs, tiny_spec

LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.argv = ["masklab", *sys.argv[2:]]
from masklab.__main__ import main
main()
"""


def train_with_file_limit(workdir, path, limit: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", LIMITED, str(limit), "train", str(path), "-q"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
    )


def leftovers(workdir) -> list[str]:
    runs = workdir / "runs"
    return [str(p.relative_to(runs)) for p in runs.rglob("*") if p.name.startswith(".") and p.name != ".lock"]


@pytest.mark.parametrize(
    ("limit", "file"), [(20_000, "checkpoint.pt"), pytest.param(800, "runs", marks=pytest.mark.slow)]
)
def test_a_full_disk_is_one_line_and_a_failed_run_with_its_reason(workdir, write_spec, limit, file):
    path = write_spec(tiny_spec(model={"arch": "mlp", "hidden": [64], "dropout": 0.0}))
    result = train_with_file_limit(workdir, path, limit)
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: ") and f"{file}: File too large" in line and "internal error" not in line
    assert leftovers(workdir) == []
    folders = run_dirs(workdir)
    if file == "runs":  # the run could not even be created ("cannot create run ... in runs"): nothing is left
        assert folders == []
    else:
        info = json.loads((folders[0] / "run.json").read_text())
        assert info["status"] == "failed" and "checkpoint.pt: File too large" in info["error"]


def test_a_read_only_runs_dir_is_one_line(workdir, write_spec, monkeypatch):
    from masklab.store import files

    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(files.os, "open", read_only)
    result = cli("train", write_spec(tiny_spec()), "-q")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "Read-only file system" in result.stderr and "runs" in result.stderr
    assert leftovers(workdir) == [] and run_dirs(workdir) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_a_runs_dir_without_write_permission_is_one_line(workdir, write_spec):
    (workdir / "runs").mkdir()
    (workdir / "runs").chmod(0o555)
    try:
        result = cli("train", write_spec(tiny_spec()), "-q")
    finally:
        (workdir / "runs").chmod(0o755)
    assert result.exit_code == 1 and "Permission denied" in result.stderr and result.stderr.count("\n") == 1
