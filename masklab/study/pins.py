"""A run is reused or continued only on the inputs it recorded.

Besides its spec (the run id), run.json pins what decides a run's result: its data
(`data.fingerprint`, the hash of the arrays it trained on, and `data.inputs`, the
SHA-256 of each file they were read from) and, for a fine-tune, its source
(`init_from.run` and `init_from.model_sha256`). Before a study reuses a finished run,
resumes or restarts one, or adds a seed to a group that has runs, the pins are checked
against the inputs as they are now: the files by content (cheap, `data.fingerprint`
caches digests by file identity), the arrays when they are loaded anyway, the source
by run id and the SHA-256 of its model.pt. A difference is a one-line refusal naming
the run, the input and what changed (exit 1, nothing written): `--force` trains again
on the inputs as they are now, or the input is restored. Run ids of specs without
`init_from` stay as they were: the pins live in run.json, not in the id.
"""

from __future__ import annotations

from masklab.data import fingerprint, registry
from masklab.errors import MasklabError, RunError
from masklab.spec import Spec
from masklab.store.runs import Run, RunStore, names_of
from masklab.study import sources
from masklab.study.plan import PlannedRun
from masklab.study.states import TRAINING_ACTIONS, RunState

CONTINUED = ("skip", "resume", "restart")  # actions that take an existing run as it is
NEEDS_SOURCE = "needs its init_from source"


def difference(recorded: dict, now: dict) -> str | None:
    """How the inputs pinned in `now` differ from those `recorded` (two run.json bodies),
    in words with the fix; only what both record is compared."""
    data = _data_difference(recorded.get("data"), now.get("data"))
    if data:
        return f"{data}; pass --force to train it again on the data as it is now, or restore the file"
    init = _init_difference(recorded.get("init_from"), now.get("init_from"))
    return f"{init}; pass --force to fine-tune it again from the source as it is now" if init else None


def _data_difference(then: object, now: object) -> str | None:
    if not isinstance(then, dict) or not isinstance(now, dict):
        return None
    name = then.get("dataset") or now.get("dataset")
    if isinstance(then.get("inputs"), list) and isinstance(now.get("inputs"), list):
        change = fingerprint.pin_difference(then["inputs"], now["inputs"])
        if change:
            return f"was trained on {name} as it was: {change}"
    was, is_ = then.get("fingerprint"), now.get("fingerprint")
    if was and is_ and was != is_:
        return f"was trained on {name} with data fingerprint {was}; the data now gives {is_}"
    return None


def _init_difference(then: object, now: object) -> str | None:
    if not isinstance(then, dict) or not isinstance(now, dict):
        return None
    if then.get("run") != now.get("run"):
        return f"was fine-tuned from run {then.get('run')}; train.init_from now names run {now.get('run')}"
    was, is_ = then.get("model_sha256"), now.get("model_sha256")
    if was and is_ and was != is_:
        return (
            f"was fine-tuned from run {then.get('run')}, whose model.pt has changed since "
            f"(sha256 {was[:12]} then, {is_[:12]} now: it was trained again)"
        )
    return None


def refusal(run: Run, what: str) -> RunError:
    return RunError(f"run {run.id} {what}")


def refuse_changed(run: Run, now: dict) -> None:
    """RunError when `run` was trained on other inputs than `now` (a new run.json) pins."""
    what = difference(run.info, now)
    if what:
        raise refusal(run, what)


class Inputs:
    """The inputs of planned runs as they are now, each looked up once: data by content
    (`data.inputs`; by loading it for runs that recorded only a fingerprint) and init
    sources by id and content."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self._data: dict[tuple, dict] = {}
        self._fingerprints: dict[str, str] = {}

    def data(self, spec: Spec, loaded: bool) -> dict:
        d = spec.data
        key = (d.dataset, d.root)
        if key not in self._data:
            self._data[key] = {"dataset": d.dataset, "inputs": fingerprint.pin(registry.input_paths(d.dataset, d.root))}
        if not loaded:
            return self._data[key]
        from masklab.data.checks import data_key, load_data

        if data_key(spec) not in self._fingerprints:
            self._fingerprints[data_key(spec)] = load_data(spec).fingerprint()
        return {**self._data[key], "fingerprint": self._fingerprints[data_key(spec)]}

    def now(self, spec: Spec, seed: int, recorded: dict) -> dict:
        """A run.json-like body of the inputs as they are now, as much as `recorded` pins."""
        data = recorded.get("data") if isinstance(recorded.get("data"), dict) else {}
        body = {"data": self.data(spec, loaded="inputs" not in data)}
        if spec.train.init_from and isinstance(recorded.get("init_from"), dict):
            try:
                source = sources.source_run(self.store, spec, seed)
            except RunError:  # gone: nothing to compare (a run to train says it needs its source)
                return body
            body["init_from"] = sources.content_pin(source)
        return body


def check_states(states: list[RunState], store: RunStore, force: bool) -> dict[str, tuple[str, str]]:
    """Planned run id -> (action, why) for each run that cannot go ahead: `refuse` a run
    the study would take as it is (reuse, resume, restart) whose pinned inputs changed,
    or a run to train whose group has runs outside the study trained on other data;
    `needs source` a run to train whose `init_from` source is missing or unfinished."""
    inputs, problems = Inputs(store), {}
    planned, by_group = {s.id for s in states}, _runs_by_group(store)
    for s in states:
        try:
            problem = _problem(s, inputs, force) or _to_train_problem(s, inputs, by_group, planned)
        except MasklabError as exc:
            problem = f"run {s.id}: {exc}"
        if problem:
            problems[s.id] = ("needs source" if NEEDS_SOURCE in problem else "refuse", problem)
    return problems


def _problem(s: RunState, inputs: Inputs, force: bool) -> str | None:
    if s.run is None or s.action not in CONTINUED or force:
        return None
    what = difference(s.run.info, inputs.now(s.planned.spec, s.planned.seed, s.run.info))
    return str(refusal(s.run, what)) if what else None


def _to_train_problem(s: RunState, inputs: Inputs, by_group: dict, planned: set[str]) -> str | None:
    if s.action not in TRAINING_ACTIONS:
        return None
    return _source_problem(inputs.store, s.planned.spec, s.planned.seed) or _group_problem(s, by_group, planned, inputs)


def _source_problem(store: RunStore, spec: Spec, seed: int) -> str | None:
    """Why a run to train cannot start from its `init_from` source yet, if it cannot."""
    if not spec.train.init_from:
        return None
    try:
        source = sources.source_run(store, spec, seed)
    except RunError as exc:
        return f"run {_planned_id(spec, seed)} {NEEDS_SOURCE}: {exc}"
    if source.status != "done":
        return f"run {_planned_id(spec, seed)} {NEEDS_SOURCE}: train.init_from: run {source.id} is {source.status}; train it first"
    return None


def _group_problem(s: RunState, by_group: dict[str, list[Run]], planned: set[str], inputs: Inputs) -> str | None:
    """A run to train whose group already has a run, outside this study, trained on other data."""
    group = s.id.rsplit("-s", 1)[0]
    for other in by_group.get(group, []):
        if other.id in planned or other.status == "damaged":
            continue
        what = _data_difference(other.info.get("data"), inputs.now(s.planned.spec, s.planned.seed, other.info)["data"])
        if what:
            return (
                f"run {s.id} would join group {group}, whose run {other.id} {what}: a group's runs share their "
                f"data; train the group's seeds again with --force, remove them (masklab rm {group}), or restore the data"
            )
    return None


def _planned_id(spec: Spec, seed: int) -> str:
    return PlannedRun(spec, seed).id


def _runs_by_group(store: RunStore) -> dict[str, list[Run]]:
    out: dict[str, list[Run]] = {}
    for run in store.all():
        names = names_of(run)
        if len(names) > 1 and names[1]:
            out.setdefault(str(names[1]), []).append(run)
    return out
