"""Trackers: runs exported to a real local MLflow store and read back with MLflow's own
client; TensorBoard event files read back with TensorBoard's own reader; exporting twice
creates nothing new; a missing extra is a one-line error before training; a failing
tracker never costs the run."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import cli, run_dirs, tiny_spec

mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

OPS = [{"op": "patch", "rate": 0.5, "size": 7, "mode": "static", "copies": 2}]
STUDY = tiny_spec(
    name="trk",
    seeds=[0],
    train_ops=OPS,
    variants={"a": {}, "b": {"train.lr": 0.003}},
    eval={"ops": [{"op": "gaussian", "sigma": [0.2]}]},
)


def store_runs(uri: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    from mlflow.tracking import MlflowClient

    return [(m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key)]


@pytest.fixture
def trained(figures, workdir, write_spec):
    """A study of two variants x one seed, with train ops (so every figure is drawn)."""
    assert cli("train", write_spec(STUDY), "-q").exit_code == 0
    return workdir


def test_a_study_exported_to_mlflow_reads_back_with_mlflows_client(trained):
    uri = f"sqlite:///{trained / 'mlflow.db'}"
    first = cli("export", "trk", "--to", f"mlflow:{uri}", "-f", "json")
    assert first.exit_code == 0, first.stderr
    rows = json.loads(first.stdout)["rows"]
    assert [r["action"] for r in rows] == ["created", "created"]
    runs = {r.data.tags["masklab.run_id"]: r for r in store_runs(uri)}
    folders = {p.name: p for p in run_dirs(trained)}
    assert set(runs) == set(folders)
    for rid, folder in folders.items():
        got = runs[rid]
        info = json.loads((folder / "run.json").read_text())
        summary = json.loads((folder / "summary.json").read_text())
        metrics = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
        assert got.info.run_name == rid and got.info.status == "FINISHED"
        assert info["mlflow"]["run_id"] == got.info.run_id  # recorded in run.json
        assert info["mlflow"]["tracking_uri"] == uri
        params = got.data.params
        assert params["train.lr"] == str(0.003 if rid.startswith("trk-b") else 0.01)
        assert params["train_ops.0.mode"] == "static" and params["train_ops.0.copies"] == "2"
        assert params["data.dataset"] == "mnist-mini" and params["seed"] == "0"
        tags = got.data.tags
        assert tags["masklab.study"] == "trk" and tags["masklab.group"] == info["group"]
        assert tags["masklab.seed"] == "0" and tags["masklab.data_fingerprint"] == info["data"]["fingerprint"]
        assert tags["masklab.version"] == info["versions"]["masklab"]
        assert history(uri, got.info.run_id, "val_acc") == [(m["epoch"], m["val_acc"]) for m in metrics]
        assert history(uri, got.info.run_id, "realized/patch") == [
            (m["epoch"], m["ops"][0]["realized"]) for m in metrics
        ]
        assert got.data.metrics["test_acc"] == summary["test_acc"]
        assert got.data.metrics["acc/gaussian sigma 0.2"] == summary["acc@gaussian(sigma=0.2)"]
        assert got.data.metrics["test_recall/3"] == summary["per_class_recall"]["3"]
        from mlflow.tracking import MlflowClient

        artifacts = {a.path for a in MlflowClient(uri).list_artifacts(got.info.run_id)}
        assert {
            "spec.yaml",
            "summary.json",
            "metrics.jsonl",
            "curves.png",
            "confusion.png",
            "recall.png",
            "ops.png",
        } <= artifacts

    again = cli("export", "trk", "--to", f"mlflow:{uri}", "-f", "json")
    assert again.exit_code == 0, again.stderr
    assert [(r["action"], r["written"]) for r in json.loads(again.stdout)["rows"]] == [("up to date", 0)] * 2
    after = store_runs(uri)
    assert len(after) == 2
    for r in after:
        assert len(history(uri, r.info.run_id, "val_acc")) == 2  # no metric point logged twice


def test_tags_and_notes_travel_and_a_retrained_run_gets_a_new_mlflow_run(trained, write_spec):
    uri = f"sqlite:///{trained / 'mlflow.db'}"
    assert cli("tag", "trk-a", "method=static", "--note", "one mask").exit_code == 0
    assert cli("export", "trk-a", "--to", f"mlflow:{uri}").exit_code == 0
    (got,) = store_runs(uri)
    assert got.data.tags["method"] == "static" and got.data.tags["mlflow.note.content"] == "one mask"
    assert cli("tag", "trk-a", "method=dynamic").exit_code == 0
    updated = cli("export", "trk-a", "--to", f"mlflow:{uri}", "-f", "json")
    assert json.loads(updated.stdout)["rows"][0]["action"] == "updated"
    (got,) = store_runs(uri)
    assert got.data.tags["method"] == "dynamic"
    assert cli("train", write_spec(STUDY), "--variant", "a", "--force", "-q").exit_code == 0
    assert (
        json.loads(cli("export", "trk-a", "--to", f"mlflow:{uri}", "-f", "json").stdout)["rows"][0]["action"]
        == "created"
    )
    assert len(store_runs(uri)) == 2  # the earlier training keeps its MLflow run


def test_train_track_mlflow_logs_while_training(figures, workdir, write_spec):
    result = cli("train", write_spec(tiny_spec(train_ops=OPS)), "--track", "mlflow", "-q")
    assert result.exit_code == 0, result.stderr
    uri = f"sqlite:///{workdir / 'mlflow.db'}"  # the default store, in the working folder
    (got,) = store_runs(uri)
    (folder,) = run_dirs(workdir)
    assert got.info.status == "FINISHED" and got.data.tags["masklab.run_id"] == folder.name
    assert [s for s, _ in history(uri, got.info.run_id, "train_loss")] == [1, 2]
    assert json.loads((folder / "run.json").read_text())["mlflow"]["run_id"] == got.info.run_id
    assert "ops.png" in {a.path for a in mlflow.tracking.MlflowClient(uri).list_artifacts(got.info.run_id)}
    again = cli("export", folder.name, "--to", "mlflow", "-f", "json")
    assert json.loads(again.stdout)["rows"][0]["action"] == "up to date"


def test_tensorboard_event_files_read_back_with_tensorboards_reader(figures, workdir, write_spec):
    assert cli("train", write_spec(tiny_spec(train_ops=OPS)), "--track", "tensorboard:tb", "-q").exit_code == 0
    (folder,) = run_dirs(workdir)
    metrics = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    reader = event_accumulator.EventAccumulator(str(workdir / "tb" / folder.name), size_guidance={"images": 0})
    reader.Reload()
    assert [(e.step, e.value) for e in reader.Scalars("accuracy/val")] == [
        (m["epoch"], pytest.approx(m["val_acc"])) for m in metrics
    ]
    assert [e.step for e in reader.Scalars("loss/train")] == [1, 2]
    summary = json.loads((folder / "summary.json").read_text())
    assert reader.Scalars("test/acc")[-1].value == pytest.approx(summary["test_acc"])
    (preview,) = reader.Images("figures/ops")
    assert preview.encoded_image_string[:4] == b"\x89PNG" and preview.width > 300
    again = cli("export", folder.name, "--to", "tensorboard:tb", "-f", "json")
    assert json.loads(again.stdout)["rows"][0]["action"] == "up to date"


def test_without_the_extra_track_fails_at_once_with_the_install_command(workdir, write_spec, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if mlflow were not installed
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    result = cli("train", write_spec(tiny_spec()), "--track", "mlflow")
    assert result.exit_code == 2 and result.stdout == ""
    assert (
        result.stderr == "Error: --track mlflow: needs mlflow, which is not installed: pip install 'masklab[mlflow]'\n"
    )
    assert run_dirs(workdir) == []  # before any training
    unknown = cli("train", write_spec(tiny_spec()), "--track", "wandb")
    assert unknown.exit_code == 2 and "unknown tracker" in unknown.stderr


def test_a_failing_tracker_never_costs_the_run(workdir, write_spec, monkeypatch):
    from masklab.store import exporters

    class Broken:
        kind, target = "mlflow", "sqlite:///nowhere.db"

        def sync(self, run, live=False):
            raise ConnectionError("the tracking server went away")

        def close(self):
            pass

    monkeypatch.setattr(exporters, "open_exporter", lambda text, option: Broken())
    result = cli("train", write_spec(tiny_spec()), "--track", "mlflow")
    assert result.exit_code == 0, result.stderr
    (folder,) = run_dirs(workdir)
    assert json.loads((folder / "run.json").read_text())["status"] == "done"
    warnings = [line for line in result.stderr.splitlines() if "tracking stopped" in line]
    assert len(warnings) == 1  # once per run, then the tracker is left alone
    assert "ConnectionError: the tracking server went away" in warnings[0] and "masklab export" in warnings[0]


def test_a_study_with_jobs_tracks_and_draws_every_run_its_workers_train(figures, workdir, write_spec, monkeypatch):
    """--jobs 2 on a 2-cell grid whose 2 seeds train as one batched model per worker: the
    driver logs each run when it starts, after each epoch and at its end; every run has
    its figures and its TensorBoard folder."""
    from masklab.store import exporters

    real, calls = exporters.open_exporter, []

    class Recorded:
        def __init__(self, inner):
            self.inner, self.kind, self.target = inner, inner.kind, inner.target

        def sync(self, run, live=False):
            calls.append((run.id, live, len(run.metrics())))
            return self.inner.sync(run, live=live)

        def close(self):
            self.inner.close()

    monkeypatch.setattr(exporters, "open_exporter", lambda text, option: Recorded(real(text, option)))
    spec = tiny_spec(name="grid", seeds=[0, 1], train_ops=OPS, train={"seed_batch": 2})
    spec["grid"] = {"train.lr": [0.01, 0.003]}
    result = cli("train", write_spec(spec), "--jobs", "2", "--track", "tensorboard:tb", "-q", "-f", "json")
    assert result.exit_code == 0, result.stderr
    folders = run_dirs(workdir)
    assert len(folders) == 4
    for folder in folders:
        synced = [(live, epochs) for rid, live, epochs in calls if rid == folder.name]
        # a live sync when it starts and after each of its 2 epochs, then its result (summary,
        # figures, final status); a worker's run may be epochs ahead of the driver's sync (a
        # tiny run can finish both epochs before the driver reads its start: seen once in a
        # clean-clone run), so the epochs each sync sees only never go back and end at 2
        assert [live for live, _ in synced] == [True, True, True, False]
        seen = [epochs for _, epochs in synced]
        assert seen == sorted(seen) and seen[-1] == 2 and all(0 <= e <= 2 for e in seen)
        assert {"curves.png", "confusion.png", "recall.png", "ops.png"} <= {p.name for p in folder.iterdir()}
        reader = event_accumulator.EventAccumulator(str(workdir / "tb" / folder.name), size_guidance={"images": 0})
        reader.Reload()
        metrics = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
        assert [(e.step, e.value) for e in reader.Scalars("loss/train")] == [
            (m["epoch"], pytest.approx(m["train_loss"])) for m in metrics
        ]
        assert reader.Images("figures/ops")
