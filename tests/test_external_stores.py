"""External stores fail fast (issue 21): MLflow tracking URIs are checked before MLflow
opens them (one line naming the URI and the fix, exit 2 for a URI that cannot work, 1
for a store that cannot be reached or written), artifacts go next to the store, a full
disk under the store stops the export in one line; the search database, damaged,
locked, a folder or a link, is one line and nothing is written outside the runs folder."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys

import pytest
from test_disk_full import LIMITED  # masklab in a child whose files may not grow past a limit

from conftest import cli, tiny_spec

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
optuna = pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    """Two finished tiny runs, trained once for the module."""
    from conftest import trained_once

    with trained_once(tmp_path_factory, "stores") as root:
        (root / "tiny.yaml").write_text(json.dumps(tiny_spec(seeds=[0, 1])))
        assert cli("train", root / "tiny.yaml", "-q").exit_code == 0
        yield root / "runs"


@pytest.fixture
def trained(trained_runs, workdir):
    """A copy of them in this test's runs folder (an export records its MLflow run in run.json)."""
    shutil.copytree(trained_runs, workdir / "runs")
    return workdir


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "internal error" not in lines[0] and "Traceback" not in result.stderr
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


@pytest.mark.parametrize(
    "uri, code, says",
    [
        ("bogus://x", 2, "unknown URI scheme 'bogus'; MLflow stores are sqlite, file, http"),
        ("file:///proc/x", 2, "a folder is MLflow's file store, which this MLflow refuses"),
        ("PLAIN", 2, "a folder is MLflow's file store, which this MLflow refuses"),
        ("sqlite:///" + "a" * 300 + ".db", 2, "a file or folder name in the path is too long"),
        ("sqlite:///FOLDER", 2, "is a folder; name a database file in it"),
        ("sqlite:///no/such/folder/m.db", 2, "does not exist; create it (mkdir -p"),
        ("sqlite://", 2, "an in-memory database keeps nothing"),
        ("sqlite:///:memory:", 2, "an in-memory database keeps nothing"),
        ("http://127.0.0.1:PORT", 1, "cannot reach 127.0.0.1:PORT (Connection refused); start the server"),
        ("postgresql://127.0.0.1:PORT/db", 1, "cannot reach 127.0.0.1:PORT (Connection refused)"),
    ],
)
def test_a_tracking_uri_that_cannot_work_is_one_line_naming_it(trained, workdir, uri, code, says):
    (workdir / "folder").mkdir()
    port = str(closed_port())
    uri = uri.replace("PLAIN", str(workdir / "plain")).replace("FOLDER", "folder").replace("PORT", port)
    before = sorted(p.name for p in workdir.iterdir())  # runs, cache, folder
    result = cli("export", "tiny", "--to", f"mlflow:{uri}")
    assert result.exit_code == code
    line = one_error_line(result)
    assert line.startswith(f"Error: --to mlflow:{uri[:40]}") and says.replace("PORT", port) in line
    assert sorted(p.name for p in workdir.iterdir()) == before  # no store, folder or mlruns made


def test_a_file_store_that_cannot_be_made_is_one_line(trained, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    result = cli("export", "tiny", "--to", "mlflow:file:///proc/masklab-store")
    assert result.exit_code == 1
    assert "cannot create or open /proc/masklab-store" in one_error_line(result)


def test_a_file_that_is_no_database_is_one_line(trained, workdir):
    (workdir / "m.db").write_bytes(b"not a database at all" * 100)
    result = cli("export", "tiny", "--to", "mlflow:sqlite:///m.db")
    assert result.exit_code == 1 and "m.db: not an SQLite database (file is not a database)" in one_error_line(result)


def test_http_stores_get_short_request_timeouts_unless_the_user_set_them(monkeypatch):
    from masklab.store.exporters import mlflow_uri

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        mlflow_uri.check_uri(f"http://127.0.0.1:{server.getsockname()[1]}")  # it answers: no error
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "10"  # MLflow's default: 120
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"  # the user's own
    assert os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "1"


def test_artifacts_go_next_to_the_sqlite_store_not_into_the_working_folder(trained, workdir, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    uri = f"sqlite:///{elsewhere / 'm.db'}"
    result = cli("export", "tiny", "--to", f"mlflow:{uri}", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert not (workdir / "mlruns").exists() and sorted(p.name for p in elsewhere.iterdir()) == ["m-artifacts", "m.db"]
    client = mlflow.tracking.MlflowClient(uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "tiny"]
    assert experiment.artifact_location == (elsewhere / "m-artifacts" / "tiny").as_uri()
    for row in json.loads(result.stdout)["rows"]:
        names = {f.path for f in client.list_artifacts(row["where"])}
        assert {"spec.yaml", "summary.json", "metrics.jsonl"} <= names
        assert (elsewhere / "m-artifacts" / "tiny" / row["where"] / "artifacts" / "spec.yaml").is_file()


def test_a_full_disk_under_the_mlflow_store_stops_the_export_in_one_line(trained, workdir):
    env = {**os.environ}
    ids = sorted(p.name for p in (trained / "runs").iterdir())
    first = subprocess.run(
        [sys.executable, "-m", "masklab", "export", ids[0], "--to", "mlflow:sqlite:///m.db"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    limit = (workdir / "m.db").stat().st_size + 4096  # room for a page or so: the next run's metrics do not fit
    full = subprocess.run(
        [sys.executable, "-c", LIMITED, str(limit), "export", "tiny", "--to", "mlflow:sqlite:///m.db"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert full.returncode == 1
    line = one_error_line(full)
    assert f"the store failed while exporting {ids[1]}" in line and "disk I/O error" in line
    assert "1 export(s) done before it" in line and "run the same export again" in line
    again = cli("export", "tiny", "--to", "mlflow:sqlite:///m.db", "-f", "json")  # room again: it completes
    assert again.exit_code == 0 and [r["run"] for r in json.loads(again.stdout)["rows"]] == ids


# --- the search database ------------------------------------------------------------------


def search_spec() -> dict:
    body = tiny_spec(train_ops=[{"op": "patch", "rate": 0.25, "size": 4}], train={"epochs": 1})
    body["search"] = {"train_ops[0].rate": {"low": 0.0, "high": 0.8}}
    return body


@pytest.fixture
def searched(workdir, write_spec):
    """A search of one trial, and its database."""
    path = write_spec(search_spec())
    assert cli("search", path, "--trials", "1", "-q").exit_code == 0
    return path, workdir / "runs" / "tiny.search.db"


def damage(db, how: str) -> None:
    if how == "garbage":
        db.write_bytes(os.urandom(8192))
    elif how == "truncated":
        os.truncate(db, 9000)
    elif how == "not UTF-8":
        with sqlite3.connect(db) as con:
            con.execute("UPDATE trial_user_attributes SET value_json = CAST(x'ff' || value_json AS TEXT)")
        con.close()


@pytest.mark.parametrize(
    "how, says",
    [
        ("garbage", "the search database is damaged (file is not a database)"),
        ("truncated", "the search database is damaged (database disk image is malformed)"),
        ("not UTF-8", "the search database is damaged ('utf-8' codec can't decode byte 0xff"),
    ],
)
def test_a_damaged_search_database_is_one_line_with_the_fix(searched, how, says):
    path, db = searched
    damage(db, how)
    result = cli("search", path, "--trials", "2", "-q")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert f"Error: {db}: {says}" in line and f"mv {db} {db}.damaged" in line


def test_a_folder_at_the_search_database_is_one_line(workdir, write_spec):
    (workdir / "runs" / "tiny.search.db").mkdir(parents=True)
    result = cli("search", write_spec(search_spec()), "--trials", "1", "-q")
    assert result.exit_code == 1 and "tiny.search.db is a folder" in one_error_line(result)


@pytest.mark.parametrize("name", ["tiny.search.db", "tiny.search.db.lock", "tiny.search.db-journal"])
def test_a_link_at_the_search_database_is_refused_and_nothing_is_written_outside(workdir, write_spec, name):
    outside = workdir / "outside"
    outside.mkdir()
    (outside / "precious").write_text("precious")
    (workdir / "runs").mkdir()
    (workdir / "runs" / name).symlink_to(outside / ("precious" if name.endswith("lock") else "x.db"))
    result = cli("search", write_spec(search_spec()), "--trials", "1", "-q")
    assert result.exit_code == 1
    assert (
        f"runs/{name} is a symbolic link" in one_error_line(result) and f"rm {workdir / 'runs' / name}" in result.stderr
    )
    assert (
        sorted(p.name for p in outside.iterdir()) == ["precious"] and (outside / "precious").read_text() == "precious"
    )


def test_a_search_database_locked_by_another_process_is_one_line(searched, monkeypatch):
    from masklab.study import search_db

    path, db = searched
    monkeypatch.setattr(search_db, "LOCK_WAIT_S", 0.2)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # as a process that writes and does not let go
    try:
        result = cli("search", path, "--trials", "2", "-q")
    finally:
        holder.close()
    assert result.exit_code == 1
    assert "the search database is locked by another process (database is locked)" in one_error_line(result)


def test_the_readme_reads_runs_back_from_mlflow_without_pandas(workdir, write_spec):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (snippet,) = [b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "search_runs" in b]
    assert cli("train", write_spec(tiny_spec(name="quickstart")), "-q").exit_code == 0
    assert cli("export", "quickstart", "--to", "mlflow").exit_code == 0  # the default store, sqlite:///mlflow.db
    printed = subprocess.run(  # without pandas, which the mlflow extra does not install
        [sys.executable, "-c", "import sys; sys.modules['pandas'] = None\n" + snippet],
        cwd=workdir, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert printed.returncode == 0, printed.stderr
    run = next((workdir / "runs").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert printed.stdout == f"{run.name} {summary['test_acc']}\n"
