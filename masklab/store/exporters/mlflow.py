"""A run folder -> an MLflow run, idempotently.

One MLflow run per masklab run (and per training of it: a run trained again with
--force gets a new MLflow run), in the experiment named after the study or spec. It
holds the resolved spec flattened to params (`train_ops.0.rate`), the per-epoch
metrics with the epoch as step, the summary metrics, tags (masklab.run_id, study,
group, seed, version, data fingerprint, and the run's own `masklab tag`s; the note as
MLflow's description) and the folder's files as artifacts. A sync writes only what the
MLflow run lacks, so exporting twice creates nothing new, and live tracking during
training is the same sync after every epoch.

The store is checked before MLflow opens it (mlflow_uri.py). Artifacts go next to the
store they belong to: an experiment masklab creates in `sqlite:///DIR/NAME.db` keeps
them in `DIR/NAME-artifacts/<experiment>/` (MLflow's default would be `./mlruns` of
whatever folder the command runs in); a file store keeps them in its folder and a
server where it is configured to.
"""

from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path

from masklab import spec as spec_mod
from masklab.errors import RunError
from masklab.store.exporters import StoreFailed, Synced, first_line, metric_name, param_name
from masklab.store.exporters.mlflow_uri import check_uri, scheme_of, sqlite_path

STATUS = {
    "done": "FINISHED",
    "failed": "FAILED",
    "interrupted": "KILLED",
    "stale": "KILLED",
    "pruned": "KILLED",
    "running": "RUNNING",
}
ARTIFACTS = ("spec.yaml", "summary.json", "metrics.jsonl", "*.png", "eval/*.json")
EPOCH_SKIP = ("epoch",)


def ms(timestamp: str | None) -> int | None:
    """An ISO timestamp of run.json in milliseconds since the epoch."""
    if not timestamp:
        return None
    return int(datetime.datetime.fromisoformat(timestamp).timestamp() * 1000)


def absolute_uri(uri: str) -> str:
    """`sqlite:///mlflow.db` (relative to the working folder) -> `sqlite:////abs/mlflow.db`,
    so run.json says where the store is from anywhere; a plain path -> a file: URI."""
    relative = uri[len("sqlite:///") :]
    if uri.startswith("sqlite:///") and not relative.startswith(("/", ":memory:")) and relative:
        return "sqlite:///" + str(Path(relative).resolve())
    if "://" not in uri and ":" not in uri[:3]:  # a folder: MLflow's (deprecated) file store
        return Path(uri).resolve().as_uri()
    return uri


def run_params(run) -> dict[str, str]:
    """The resolved spec as {key path: text}, plus the seed."""
    flat = spec_mod.flatten(run.spec)
    params = {param_name(k): v if isinstance(v, str) else json.dumps(v) for k, v in flat.items() if k != "seeds"}
    params["seed"] = str(run.info.get("seed"))
    return params


def run_tags(run) -> dict[str, str]:
    info = run.info
    tags = {
        "masklab.run_id": run.id,
        "masklab.created": info.get("created"),
        "masklab.name": info.get("name"),
        "masklab.study": info.get("study"),
        "masklab.variant": info.get("variant"),
        "masklab.group": info.get("group"),
        "masklab.seed": info.get("seed"),
        "masklab.status": run.status,
        "masklab.version": info.get("versions", {}).get("masklab"),
        "masklab.dataset": info.get("data", {}).get("dataset"),
        "masklab.data_fingerprint": info.get("data", {}).get("fingerprint"),
        "masklab.path": str(Path(run.path).resolve()),
        "mlflow.source.git.commit": info.get("git_commit"),
        "mlflow.note.content": info.get("note"),
        **{str(k): v for k, v in (info.get("tags") or {}).items()},
    }
    return {k: str(v) for k, v in tags.items() if v is not None}


def epoch_points(run) -> dict[str, list[tuple[int, float, int | None]]]:
    """Per-epoch metrics: {name: [(epoch, value, timestamp ms)]}; realized op rates as
    `realized/<op>` (with the op's index when an op appears twice)."""
    rows = run.metrics()
    start = ms(run.info.get("started") or run.info.get("created"))
    points: dict[str, list[tuple[int, float, int | None]]] = {}
    elapsed = 0.0
    for row in rows:
        elapsed += float(row.get("seconds", 0.0))
        stamp = start + int(elapsed * 1000) if start is not None else None
        values = {k: v for k, v in row.items() if isinstance(v, (int, float)) and k not in EPOCH_SKIP}
        ops = row.get("ops") or []
        names = [o["op"] for o in ops]
        for i, o in enumerate(ops):
            values[f"realized/{o['op']}" if names.count(o["op"]) == 1 else f"realized/{i}.{o['op']}"] = o["realized"]
        for key, value in (row.get("scheduled") or {}).items():
            values[f"scheduled/{key}"] = value
        for key, value in values.items():
            points.setdefault(metric_name(key), []).append((int(row["epoch"]), float(value), stamp))
    return points


def summary_metrics(run, per_epoch: set[str]) -> dict[str, float]:
    """Final metrics: the summary's numbers, per-class recall, every stored evaluation's metrics."""
    summary = run.summary
    flat = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    flat.pop("schema_version", None)
    flat.update({f"test_recall/{k}": v for k, v in (summary.get("per_class_recall") or {}).items()})
    for body in run.evals().values():
        flat.update({f"eval/{k}": v for k, v in body.get("metrics", {}).items()})
    named = {metric_name(k): float(v) for k, v in flat.items()}
    return {f"final/{k}" if k in per_epoch else k: v for k, v in named.items()}  # final/train_seconds: the total


def artifact_files(run) -> list[Path]:
    files = []
    for pattern in ARTIFACTS:
        files += sorted(p for p in Path(run.path).glob(pattern) if p.is_file())
    return files


class MlflowExporter:
    kind = "mlflow"

    def __init__(self, uri: str) -> None:
        import mlflow  # noqa: F401 - ImportError names the extra
        from mlflow.tracking import MlflowClient

        if uri.split(":", 1)[0].split("+", 1)[0] in ("sqlite", "postgresql", "mysql", "mssql"):
            import alembic  # noqa: F401 - database stores need both
            import sqlalchemy  # noqa: F401

        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)  # no INFO lines about creating tables
        # it logs a database error with its traceback, then raises it: masklab reports it in one line
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
        self.target = uri = absolute_uri(uri)
        check_uri(uri)
        self._experiments: dict[str, str] = {}
        self._logged: dict[str, dict[str, set[int]]] = {}  # MLflow run id -> metric -> steps (live tracking)
        try:
            self.client = MlflowClient(tracking_uri=uri)
            self.client.search_experiments(max_results=1)  # opens (and if new, creates) the store
        except Exception as exc:
            raise RunError(
                f"cannot open the store ({first_line(exc)}); check that its disk has space and that you can write "
                "it (or that the server runs), then run the same command again"
            ) from None

    def close(self) -> None:
        pass

    def experiment(self, name: str) -> str:
        if name not in self._experiments:
            found = self.client.get_experiment_by_name(name)
            self._experiments[name] = (
                found.experiment_id if found else self.client.create_experiment(name, self.artifacts(name))
            )
        return self._experiments[name]

    def artifacts(self, experiment: str) -> str | None:
        """Where a new experiment keeps its artifacts: beside an SQLite file; else None,
        the store's own place (a file store's folder, a server's artifact root)."""
        if scheme_of(self.target) != "sqlite":
            return None
        db = Path(sqlite_path(self.target))
        return (db.parent / f"{db.stem}-artifacts" / experiment).as_uri()

    def find(self, run, experiment_id: str):
        """The MLflow run of this training of this masklab run (id and creation time), if any."""
        from mlflow.entities import ViewType

        found = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.`masklab.run_id` = '{run.id}'",
            run_view_type=ViewType.ACTIVE_ONLY,
        )
        created = run.info.get("created")
        return next((r for r in found if r.data.tags.get("masklab.created") == created), None)

    def sync(self, run, live: bool = False) -> Synced:
        """Bring the MLflow run up to date with the folder; with `live`, the folder is
        still training (artifacts and the final status wait for the last sync). Raises
        StoreFailed when the store itself fails (a full disk, a server gone)."""
        try:
            return self._sync(run, live)
        except Exception as exc:
            if store_failure(exc):
                raise StoreFailed(first_line(exc)) from None
            raise

    def _sync(self, run, live: bool) -> Synced:
        from mlflow.entities import Metric, Param, RunTag

        experiment_id = self.experiment(run.info.get("study") or run.info.get("name") or run.id)
        found = self.find(run, experiment_id)
        tags = run_tags(run)
        if found is None:
            found = self.client.create_run(
                experiment_id, start_time=ms(run.info.get("created")), tags=tags, run_name=run.id
            )
            action = "created"
        else:
            action = "updated"
        rid = found.info.run_id
        written = 0
        have_params = found.data.params
        params = [Param(k, v[:6000]) for k, v in run_params(run).items() if k not in have_params]
        new_tags = [RunTag(k, v) for k, v in tags.items() if found.data.tags.get(k) != v]
        points = epoch_points(run)
        logged = self._logged.setdefault(rid, {}) if live else {}
        metrics = []
        for key, series in points.items():
            if key not in logged:
                logged[key] = (
                    {m.step for m in self.client.get_metric_history(rid, key)} if action == "updated" else set()
                )
            metrics += [Metric(key, v, stamp or 0, step) for step, v, stamp in series if step not in logged[key]]
            logged[key].update(step for step, _, _ in series)
        if not live:
            end = ms(run.info.get("finished")) or 0
            have = found.data.metrics
            metrics += [Metric(k, v, end, 0) for k, v in summary_metrics(run, set(points)).items() if k not in have]
        for i in range(0, max(len(params), len(new_tags), 1), 100):  # MLflow's batch limits
            batch_params, batch_tags = params[i : i + 100], new_tags[i : i + 100]
            if batch_params or batch_tags:
                self.client.log_batch(rid, params=batch_params, tags=batch_tags)
        for i in range(0, len(metrics), 1000):
            self.client.log_batch(rid, metrics=metrics[i : i + 1000])
        written += len(params) + len(new_tags) + len(metrics)
        if not live:
            written += self._sync_artifacts(rid, run)
            written += self._sync_status(found, run)
        elif found.info.status != "RUNNING":
            self.client.update_run(rid, status="RUNNING")  # a resumed run
        if action == "updated" and written == 0:
            action = "up to date"
        location = {"tracking_uri": self.target, "experiment_id": experiment_id, "run_id": rid}
        return Synced(action, written, location)

    def _sync_artifacts(self, rid: str, run) -> int:
        have = {}
        for folder in (None, "eval"):
            have.update({f.path: f.file_size for f in self.client.list_artifacts(rid, folder) if not f.is_dir})
        written = 0
        for path in artifact_files(run):
            rel = path.relative_to(run.path).as_posix()
            if have.get(rel) != path.stat().st_size:
                parent = str(Path(rel).parent)
                self.client.log_artifact(rid, str(path), None if parent == "." else parent)
                written += 1
        return written

    def _sync_status(self, found, run) -> int:
        wanted = STATUS.get(run.status, "FAILED")
        if wanted == "RUNNING" or found.info.status == wanted:
            return 0
        end = ms(run.info.get("finished"))
        if end is not None and found.info.start_time is not None:
            end = max(end, found.info.start_time)
        self.client.set_terminated(found.info.run_id, wanted, end_time=end)
        return 1


def store_failure(exc: BaseException) -> bool:
    """An error of the store, not of one run: a database that cannot be written (full
    disk, locked, read-only) or a server that cannot be reached, here or as the cause."""
    try:
        from sqlalchemy.exc import OperationalError
    except ImportError:  # an HTTP store needs no SQLAlchemy
        OperationalError = OSError  # noqa: N806

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (OperationalError, OSError)):  # requests' errors are OSErrors
            return True
        seen = seen.__cause__ or seen.__context__
    return False
