"""Search: Optuna proposes, every trial is an ordinary run, validation decides.

    search:
      metric: val_acc                       # a per-epoch validation column (default val_acc; val_loss is minimised)
      train_ops[0].rate: {low: 0.0, high: 0.8}
      train_ops[0].mode: [static, dynamic]
      train_ops[0].size: [2, 4, 7]

Every other key of `search:` is a key path with its space: `{low, high}` (integers if
both are integers; `log: true`, `step: s` as Optuna takes them) or a list of choices.
Optuna's TPE sampler proposes (seeded: `sampler_seed`, default 0) and a median pruner
fed each epoch's validation value stops trials that trail the others
(`pruner: median | none`; `startup: 5` trials finish before it prunes).

A trial is an ordinary run of the spec with the proposed values set, named
`<name>-search`, trained with `seed` (default: the spec's first seed), with
`eval.test: false`: a trial never evaluates on the test split, so nothing in the search
can read it, and the value told to Optuna is the last epoch's validation metric, read
from the run's metrics.jsonl. Runs are found by id like any other: a proposal equal to
an earlier trial's configuration reuses its run.

The Optuna study lives in `<runs dir>/<name>.search.db` (SQLite), one study per spec,
search section and seed (its name ends in their hash), so workers share it and a
search that was killed resumes where it stopped: a trial left running by a process
that is gone is taken up again (its run resumes from its checkpoint), new trials are
asked only for what is missing, and no trial runs twice.

`confirm` then trains the best configuration and the spec's own over fresh seeds (the
search's seed left out) with the test split back on, for compare's statistics.
"""

from __future__ import annotations

import copy
import dataclasses
import fcntl
import hashlib
import json
import os
import platform
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from masklab import schema as sc, spec as spec_mod
from masklab.errors import Interrupted, SpecError, UsageError
from masklab.spec import Spec
from masklab.store.runs import RunStore
from masklab.study.search_db import check_database, database_errors, open_lock
from masklab.study.trial import make_pruner, require_optuna, storage

SETTINGS = ("metric", "pruner", "startup", "sampler_seed", "seed")
WAIT_POLL_S = 2.0
CLAIM_GRACE_S = 60.0  # a trial another process has just asked for, before it names its driver


@dataclass(frozen=True)
class Dimension:
    """One searched key path: a float or int range, or choices."""

    path: str
    kind: str  # float | int | choice
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.path, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.path, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.path, self.low, self.high, step=self.step, log=self.log)

    def extremes(self) -> list:
        return list(self.choices) if self.kind == "choice" else [self.low, self.high]


@dataclass
class SearchPlan:
    """A spec file's search: its base spec (as a raw mapping), space and settings."""

    name: str
    base: dict
    space: list[Dimension]
    metric: str = "val_acc"
    pruner: str = "median"
    startup: int = 5
    sampler_seed: int = 0
    seed: int = 0
    db: Path = field(default=Path("search.db"))

    @property
    def direction(self) -> str:
        return "minimize" if self.metric.endswith("loss") else "maximize"

    @property
    def study_name(self) -> str:
        """`<name>-<hash>`: a changed spec, space or setting is a new study in the same file."""
        body = {
            "spec": resolve_base(self.base, self.name).to_dict() | {"seeds": None},
            "space": [dataclasses.asdict(d) for d in self.space],
            "settings": [self.metric, self.pruner, self.startup, self.sampler_seed, self.seed],
        }
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:8]
        return f"{self.name}-{digest}"


def resolve_base(raw: dict, name: str) -> Spec:
    return spec_mod.resolve(copy.deepcopy(raw), default_name=name)


def plan_search(path: str | Path, sets: list[str] | tuple[str, ...], runs_root: Path) -> SearchPlan:
    """Read a spec file's `search:` section and check every value of its space on the spec."""
    raw = spec_mod.read_spec_file(path)
    if "variants" in raw:
        raise SpecError("variants: a search tunes one spec; drop variants: (or search each variant's file)")
    if "search" not in raw:
        raise SpecError(
            f"{path}: no search: section; add one, e.g. search: {{train_ops[0].rate: {{low: 0.0, high: 0.8}}}}"
        )
    section = sc.need_mapping(raw.pop("search"), "search")
    raw.pop("sequential", None)  # how `train --until decided` decides: not part of a trial
    for assignment in sets:
        spec_mod.apply_override(raw, assignment)
    name = raw.get("name") or spec_mod._default_name(Path(path))
    base = resolve_base(raw, name)
    plan = SearchPlan(name=base.name, base=raw, space=[], seed=base.seeds[0], db=runs_root / f"{base.name}.search.db")
    for key, value in section.items():
        key = str(key)
        if key in SETTINGS:
            _setting(plan, key, value)
        else:
            plan.space.append(_dimension(key, value))
    if not plan.space:
        raise SpecError("search: names no key path to search, e.g. train_ops[0].rate: {low: 0.0, high: 0.8}")
    for dim in plan.space:  # every end of every range, every choice, applies to the spec
        for value in dim.extremes():
            body = copy.deepcopy(raw)
            spec_mod.set_path(body, dim.path, value, f"search.{dim.path}")
            try:
                resolve_base(body, name)
            except SpecError as exc:
                raise SpecError(f"search.{dim.path}: the value {sc.show(value)} makes an invalid spec: {exc}") from None
    if plan.metric.startswith("test"):
        raise SpecError(
            f"search.metric: {plan.metric} reads the test split; a search selects on validation (val_acc, val_loss)"
        )
    if base.data.val_fraction <= 0:
        raise SpecError("data.val_fraction: a search selects on the validation split; set it > 0")
    return plan


def _setting(plan: SearchPlan, key: str, value: Any) -> None:
    where = f"search.{key}"
    if key == "metric":
        plan.metric = sc.as_str(value, where, r"val_[A-Za-z0-9_]+", "a per-epoch validation column such as val_acc")
    elif key == "pruner":
        plan.pruner = sc.as_choice(value, where, ("median", "none"))
    elif key == "startup":
        plan.startup = sc.as_int(value, where, 0, 10_000)
    elif key == "sampler_seed":
        plan.sampler_seed = sc.as_int(value, where, 0, 2**31 - 1)
    else:
        plan.seed = sc.as_int(value, where, 0, 2**31 - 1)


def _dimension(path: str, value: Any) -> Dimension:
    where = f"search.{path}"
    spec_mod._split_path(path)  # a bad key path fails here, naming it
    if isinstance(value, list):
        items = sc.as_list(value, where, min_len=1)
        for i, v in enumerate(items):
            if not (v is None or isinstance(v, (bool, int, float, str))):
                raise SpecError(f"{where}[{i}]: choices are numbers, strings, booleans or null, got {sc.kind_of(v)}")
        return Dimension(path, "choice", choices=tuple(items))
    value = sc.need_mapping(value, where)
    sc.reject_unknown(value, ["low", "high", "log", "step"], where)
    if "low" not in value or "high" not in value:
        raise SpecError(f"{where}: a range needs low and high, e.g. {{low: 0.0, high: 0.8}}; or give a list of choices")
    low, high = sc.as_float(value["low"], f"{where}.low"), sc.as_float(value["high"], f"{where}.high")
    if low >= high:
        raise SpecError(f"{where}: low must be below high, got {low:g} and {high:g}")
    is_int = all(isinstance(value[k], int) and not isinstance(value[k], bool) for k in ("low", "high"))
    log = sc.as_bool(value.get("log", False), f"{where}.log")
    if log and low <= 0:
        raise SpecError(f"{where}.log: a log range needs low > 0, got {low:g}")
    step = sc.as_float(value["step"], f"{where}.step", 0.0, lo_open=True) if "step" in value else None
    if log and step:
        raise SpecError(f"{where}: give log or step, not both (Optuna takes one)")
    return Dimension(path, "int" if is_int else "float", low, high, log, step)


# --- one trial ------------------------------------------------------------------------


def trial_spec(plan: SearchPlan, params: dict, ref: dict) -> Spec:
    """The run a trial trains: the spec with the trial's values, validation only."""
    body = copy.deepcopy(plan.base)
    for path, value in params.items():
        spec_mod.set_path(body, path, value, f"search.{path}")
    body.setdefault("eval", {})
    body["eval"] = dict(body["eval"] or {}, test=False)
    body["name"] = f"{plan.name}-search"
    spec = resolve_base(body, plan.name)
    return dataclasses.replace(spec, seeds=[plan.seed], trial=ref)


def trial_value(run, metric: str) -> float | None:
    """The last epoch's validation value, from metrics.jsonl (never from summary.json)."""
    rows = run.metrics()
    return float(rows[-1][metric]) if rows and rows[-1].get(metric) is not None else None


# --- the driver -----------------------------------------------------------------------


@dataclass
class SearchResult:
    study_name: str
    trials: list[dict]  # number, state, value, params, run, epochs
    best: dict | None


def _alive(driver: dict | None, me: dict, started: datetime | None = None) -> bool:
    """Whether the search that took a trial still runs (on this host; other hosts are
    trusted). A trial with no driver yet was asked for moments ago by another search
    process, which names itself next: it is taken as held for CLAIM_GRACE_S."""
    if not driver:
        return started is not None and (datetime.now() - started).total_seconds() < CLAIM_GRACE_S
    if driver.get("host") != platform.node():
        return True
    if driver.get("pid") == os.getpid():
        return driver.get("search") == me["search"]  # another search in this process left it: not running now
    try:
        os.kill(int(driver["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, ValueError):
        return True
    return True


def make_sampler(plan: SearchPlan, number: int):
    """TPE (random for the first `startup` trials; constant liar for trials still running)."""
    optuna = require_optuna()
    seed = int(hashlib.sha256(f"{plan.sampler_seed}:{number}".encode()).hexdigest()[:8], 16)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=plan.startup, constant_liar=True)


def open_study(plan: SearchPlan):
    """The search's Optuna study in its SQLite file (search_db checks the file first)."""
    optuna = require_optuna()
    plan.db.parent.mkdir(parents=True, exist_ok=True)
    check_database(plan.db)
    sampler = make_sampler(plan, 0)
    # Optuna creates its tables on first use; two searches starting at once would both try
    with os.fdopen(open_lock(plan.db), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return optuna.create_study(
            storage=storage(f"sqlite:///{plan.db.resolve()}"),
            study_name=plan.study_name,
            direction=plan.direction,
            sampler=sampler,
            pruner=make_pruner(plan.pruner, plan.startup),
            load_if_exists=True,
        )


def run_search(
    plan: SearchPlan,
    n_trials: int,
    store: RunStore,
    execute: Callable[[list[Spec]], None],
    jobs: int = 1,
    note: Callable[[str], None] = lambda message: None,
) -> SearchResult:
    """Bring the study to `n_trials` finished trials: take up orphaned ones, ask for the
    missing ones `jobs` at a time, train them through `execute`, tell Optuna each value.
    A database that fails (damaged, locked) is a RunError naming it."""
    with database_errors(plan.db):
        return _run_search(plan, n_trials, store, execute, jobs, note)


def _run_search(plan, n_trials, store, execute, jobs, note) -> SearchResult:
    optuna = require_optuna()
    study = open_study(plan)
    url = f"sqlite:///{plan.db.resolve()}"
    TrialState = optuna.trial.TrialState
    me = {"host": platform.node(), "pid": os.getpid(), "search": uuid.uuid4().hex[:12]}
    waiting: list[Spec] = []  # my trials whose run another search process was training
    while True:
        waiting = [spec for spec in waiting if not _tell(study, spec, store, plan, optuna, note)]
        trials = study.get_trials(deepcopy=False)
        finished = [t for t in trials if t.state.is_finished()]
        running = [t for t in trials if t.state == TrialState.RUNNING]
        orphans = [t for t in running if not _alive(t.user_attrs.get("driver"), me, t.datetime_start)]
        batch = orphans[:jobs]
        for t in batch:
            note(f"trial {t.number}: taken up again (its process is gone); its run continues from its checkpoint")
        while len(batch) < jobs and len(finished) + len(running) + (len(batch) - len(orphans[:jobs])) < n_trials:
            trial = study.ask()
            study._storage.set_trial_user_attr(trial._trial_id, "driver", me)  # at once: other searches see it held
            batch.append(study._storage.get_trial(trial._trial_id))
        if not batch:
            if len(finished) >= n_trials or not running:
                break
            time.sleep(WAIT_POLL_S)  # trials held by another live search process
            continue
        specs = []
        for t in batch:
            study._storage.set_trial_user_attr(t._trial_id, "driver", me)
            params = t.params if t.params else _suggest(study, t, plan)
            try:
                trial_spec(plan, params, {})
            except SpecError as exc:  # values that are fine alone but not together (static + salient)
                study._storage.set_trial_user_attr(t._trial_id, "error", str(exc))
                study.tell(t.number, state=optuna.trial.TrialState.FAIL)
                note(f"trial {t.number}: failed, an invalid combination: {exc}")
                continue
            ref = {
                "storage": url,
                "study": plan.study_name,
                "trial_id": t._trial_id,  # Optuna's own id (FrozenTrial offers no public one)
                "number": t.number,
                "metric": plan.metric,
                "pruner": plan.pruner,
                "startup": plan.startup,
            }
            spec = trial_spec(plan, params, ref)
            study._storage.set_trial_user_attr(t._trial_id, "run", f"{spec.name}-{spec.group_hash()}-s{plan.seed}")
            specs.append(spec)
        todo = [s for s in specs if not _settled(store, s)]
        try:
            if todo:
                execute(todo)
        except Interrupted:
            note("interrupted: the trials in progress stay open; the same command continues them")
            raise
        waiting += [spec for spec in specs if not _tell(study, spec, store, plan, optuna, note)]
    return summarize(study, plan, optuna)


def _suggest(study, frozen, plan: SearchPlan) -> dict:
    """The trial's values, drawn with a sampler seeded by (sampler_seed, trial number): a
    search alone proposes the same sequence every time, and searches sharing the study
    do not propose the same random values side by side."""
    optuna = require_optuna()
    study.sampler = make_sampler(plan, frozen.number)
    trial = optuna.trial.Trial(study, frozen._trial_id)
    return {d.path: d.suggest(trial) for d in plan.space}


def _settled(store: RunStore, spec: Spec) -> bool:
    """A run that needs no training: finished, or pruned or failed under an earlier trial."""
    run = store.get(f"{spec.name}-{spec.group_hash()}-s{spec.seeds[0]}")
    return run is not None and run.status in ("done", "pruned", "failed")


def through_executor(executor, store: RunStore, events=None) -> Callable[[list[Spec]], None]:
    """Train specs through a study executor (in process, `--jobs N` workers, Ray)."""
    from masklab.study.executors import run_study
    from masklab.study.plan import PlannedRun, Study

    def execute(specs: list[Spec]) -> None:
        runs = [PlannedRun(spec, seed) for spec in specs for seed in spec.seeds]
        run_study(Study(specs[0].name, [], runs), store, executor, events)

    return execute


def _tell(study, spec: Spec, store: RunStore, plan: SearchPlan, optuna, note) -> bool:
    """Tell Optuna how the trial's run ended; False while another process still trains it."""
    ref = spec.trial
    rid = f"{spec.name}-{spec.group_hash()}-s{spec.seeds[0]}"
    run = store.get(rid)
    status = run.status if run else "missing"
    if status == "running":
        return False
    if study._storage.get_trial(ref["trial_id"]).state.is_finished():
        return True  # told already (by a search that took the trial up)
    trial = optuna.trial.Trial(study, ref["trial_id"])
    if run is not None:  # a reused run's curve was reported under another trial: report it here too
        reported = study._storage.get_trial(ref["trial_id"]).intermediate_values
        for row in run.metrics():
            if row.get(plan.metric) is not None and row["epoch"] not in reported:
                trial.report(float(row[plan.metric]), row["epoch"])
    value = trial_value(run, plan.metric) if run else None
    if status == "done" and value is not None:
        study.tell(ref["number"], value)
        note(f"trial {ref['number']}: {plan.metric} {value:.4f} ({rid})")
    elif status == "pruned":
        study.tell(ref["number"], state=optuna.trial.TrialState.PRUNED)
        note(f"trial {ref['number']}: pruned after epoch {len(run.metrics())} ({rid})")
    else:
        study._storage.set_trial_user_attr(ref["trial_id"], "error", (run.info.get("error") if run else "") or status)
        study.tell(ref["number"], state=optuna.trial.TrialState.FAIL)
        note(f"trial {ref['number']}: failed ({status}) ({rid})")
    return True


def summarize(study, plan: SearchPlan, optuna) -> SearchResult:
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                plan.metric: t.value if t.state == optuna.trial.TrialState.COMPLETE else None,
                "epochs": len(t.intermediate_values),
                **{f"search.{k}": v for k, v in t.params.items()},
                "run": t.user_attrs.get("run"),
            }
        )
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    best = None
    if complete:
        b = study.best_trial
        best = {"trial": b.number, plan.metric: b.value, "params": b.params, "run": b.user_attrs.get("run")}
    return SearchResult(plan.study_name, rows, best)


# --- confirmation ---------------------------------------------------------------------


def confirm_specs(plan: SearchPlan, best_params: dict, n_seeds: int) -> tuple[Spec, Spec, list[int]]:
    """The spec's own configuration and the best one, as ordinary runs (test split on),
    over `n_seeds` fresh seeds: the search's own seed is left out, so its luck does not
    carry into the comparison."""
    if n_seeds < 2:
        raise UsageError(f"--confirm {n_seeds}: compare over at least 2 seeds (5 or more to see seed noise)")
    seeds = [s for s in range(n_seeds + 1) if s != plan.seed][:n_seeds]
    own = dataclasses.replace(resolve_base(plan.base, plan.name), seeds=seeds)
    body = copy.deepcopy(plan.base)
    for path, value in best_params.items():
        spec_mod.set_path(body, path, value, f"search.{path}")
    body["name"] = f"{plan.name}-best"
    best = dataclasses.replace(resolve_base(body, plan.name), seeds=seeds)
    return own, best, seeds
