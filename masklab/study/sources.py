"""The run whose weights a fine-tune starts from (`train.init_from`), named exactly and
pinned by content.

`train.init_from` names a run (id, unique prefix, `<name>-s<seed>`, a path in the store)
or a group, spec name or study, whose run with the fine-tune's seed is the source. A
name that matches runs of several groups (a pretraining trained again with another
spec, a study of several variants) is an error listing them: masklab never picks one.

Before a study is planned, `pin_study` replaces each `init_from` by the group (or run)
it names now, so the fine-tune's spec, and with it its run id, covers its source: a
pretraining trained again as a new group gives a new fine-tune run beside the old one.
The source's content is pinned in the fine-tune's run.json (`init_from.model_sha256`,
the SHA-256 of the model.pt it loaded, which must match the one the source recorded
when it finished), and `study.pins` refuses to reuse or resume a fine-tune whose source
has other weights now (a source trained again in place with --force).
"""

from __future__ import annotations

import dataclasses

from masklab.data import fingerprint
from masklab.errors import RunError, SpecError
from masklab.spec import Spec
from masklab.store.names import Ambiguous, group_of, names_of
from masklab.store.runs import Run, RunStore
from masklab.study.plan import PlannedRun, Study


def named_runs(store: RunStore, ref: str) -> tuple[list[Run], str]:
    """The runs `ref` names and what it pins to: a group id, or a run id when it names
    one run. SpecError when they belong to several groups; RunError when there are none."""
    try:
        runs = store.resolve_many(ref)
    except Ambiguous as exc:
        raise SpecError(f"train.init_from: {exc}") from None
    groups = sorted({group_of(r) for r in runs})
    if len(groups) > 1:
        shown = ", ".join(groups[:6]) + (", ..." if len(groups) > 6 else "")
        raise SpecError(
            f"train.init_from: {ref} names runs of {len(groups)} groups ({shown}); set it to the group to start from"
        )
    single = len(runs) == 1 and ref not in names_of(runs[0])
    return runs, runs[0].id if single else groups[0]


def pin_spec(store: RunStore, spec: Spec) -> Spec:
    """The spec with `train.init_from` set to the group or run it names now; as written
    when it names nothing yet (the study then waits for its source)."""
    ref = spec.train.init_from
    if not ref:
        return spec
    try:
        _, pinned = named_runs(store, ref)  # SpecError when ambiguous: an error, never a guess
    except RunError:  # nothing by that name yet
        return spec
    return spec if pinned == ref else dataclasses.replace(spec, train=dataclasses.replace(spec.train, init_from=pinned))


def pin_study(study: Study, store: RunStore) -> Study:
    """The study with every run's `init_from` pinned (`pin_spec`), each spec once."""
    pinned: dict[int, Spec] = {}
    runs = []
    for p in study.runs:
        if id(p.spec) not in pinned:
            pinned[id(p.spec)] = pin_spec(store, p.spec)
        runs.append(PlannedRun(pinned[id(p.spec)], p.seed, p.cell))
    return dataclasses.replace(study, runs=runs)


def source_run(store: RunStore, spec: Spec, seed: int) -> Run:
    """The run whose weights initialise this spec's run with `seed`. RunError when there
    is none (the message says to train it first)."""
    ref = spec.train.init_from
    runs, pinned = named_runs(store, ref)
    if pinned == runs[0].id:  # one run, named as such: every seed starts from it
        return runs[0]
    same = [r for r in runs if r.info.get("seed") == seed]
    if not same:
        seeds = sorted({r.info.get("seed") for r in runs if isinstance(r.info.get("seed"), int)})
        raise RunError(
            f"train.init_from: {ref} has no run with seed {seed} (its seeds: {seeds}); train it with --seeds {seed}"
        )
    return same[0]


def content_pin(source: Run) -> dict:
    """{run, model_sha256} of a finished source run, its model.pt checked against the
    SHA-256 it recorded when it finished. RunError when they differ."""
    try:
        digest = fingerprint.file_digest(source.path / "model.pt")
    except OSError as err:
        raise RunError(
            f"train.init_from: run {source.id} has no readable model.pt ({err.strerror}); train it again"
        ) from None
    recorded = source.info.get("model_sha256")
    if recorded and recorded != digest:
        raise RunError(
            f"train.init_from: run {source.id}: model.pt is not the one it finished with (sha256 {recorded[:12]} "
            f"recorded, {digest[:12]} now); restore it or train the run again with --force"
        )
    return {"run": source.id, "model_sha256": digest}
