"""Seeds of one spec trained together as one batched model (`train.seed_batch: N | auto`).

The runs are the same as separate runs: same ids, same folders and files, found,
reused, resumed and forced the same way; run.json adds `seed_batch` (the seeds trained
together). Finished runs are reused first; the seeds left are trained in batches of N.
A batch whose seeds stopped at different epochs (resumed from different checkpoints)
trains as one batch per starting epoch.

Statuses stay true for every seed: an interruption marks each run interrupted at its
last checkpoint; a seed whose loss diverges is marked failed and the others
interrupted, resumable with `--resume`.
"""

from __future__ import annotations

import torch

from masklab.data.splits import build_data
from masklab.errors import Interrupted, SpecError
from masklab.models import build_model
from masklab.models.stacked import Stacked, can_stack
from masklab.spec import Spec
from masklab.store import weights
from masklab.store.runs import Run, RunStore, run_id
from masklab.study import lifecycle, pins, runner
from masklab.study.lifecycle import StopFlag
from masklab.study.plan import seeds_per_batch
from masklab.study.run_figures import write_figures
from masklab.train import Reporter, train_pipeline
from masklab.train_batched import fit_group


def train_batched(
    spec: Spec,
    seeds: list[int],
    dataset,
    store: RunStore,
    device: torch.device,
    reporter: Reporter,
    force: bool = False,
    resume: bool = False,
    inits: dict | None = None,
    on_done=None,
) -> list[runner.Outcome]:
    """One outcome per seed, in seed order: finished runs reused, the rest trained in batches."""
    done: dict[int, runner.Outcome] = {}
    pending = []
    for seed in seeds:
        existing = store.get(run_id(spec.name, spec.group_hash(), seed))
        if existing is not None and not force and existing.status == "done":
            pins.refuse_changed(existing, runner.run_info(spec, seed, dataset, device))
            done[seed] = runner.Outcome(existing, reused=True, summary=existing.summary)
            if on_done:
                on_done(done[seed])
        else:
            pending.append(seed)
    size = seeds_per_batch(spec, len(pending))
    for first in range(0, len(pending), size):
        chunk = pending[first : first + size]
        if len(chunk) == 1:
            init = (inits or {}).get(chunk[0])
            outcomes = [runner.train_one(spec, chunk[0], dataset, store, device, reporter, force, resume, init)]
        else:
            outcomes = train_chunk(spec, chunk, dataset, store, device, reporter, force, resume)
        for seed, outcome in zip(chunk, outcomes):
            done[seed] = outcome
            if on_done:
                on_done(outcome)
    return [done[seed] for seed in seeds]


def train_chunk(spec, seeds, dataset, store, device, reporter, force, resume) -> list[runner.Outcome]:
    """Seeds whose runs are not finished: claimed together (`lifecycle`), grouped by the
    epoch they start from, each group batched. Every run ends in a true state: done,
    failed, interrupted (resumable), or as it was before (a replacement, a run that
    never started, a group that never ran because an earlier one stopped)."""
    claims = lifecycle.claim_all(
        store, spec, seeds, lambda seed: runner.run_info(spec, seed, dataset, device), force, resume
    )
    outcomes: dict[int, runner.Outcome] = {}
    try:
        for seed, claim in zip(seeds, claims):
            if claim.mode == "reuse":  # finished by another process since we looked
                outcomes[seed] = runner.Outcome(claim.run, reused=True, summary=claim.run.summary)
                claim.finished = True
                claim.release()
        active = [i for i, claim in enumerate(claims) if not claim.finished]
        starts = {i: checkpoint_epochs(claims[i].run) if claims[i].mode == "resume" else 0 for i in active}
        for start in sorted(set(starts.values())):
            members = [i for i in active if starts[i] == start]
            group = [seeds[i] for i in members]
            runs, summaries = lifecycle.run_group(
                store,
                spec,
                [claims[i] for i in members],
                device,
                lambda runs, stop, group=group, start=start: train_and_test(
                    spec, group, runs, dataset, device, reporter, stop, resuming=start > 0
                ),
                seed_batch={"seeds": group, "size": len(group)},
            )
            outcomes.update({seed: runner.Outcome(run, summary=s) for seed, run, s in zip(group, runs, summaries)})
    finally:
        lifecycle.give_up(store, [c for c in claims if not c.finished])  # groups that never ran
    return [outcomes[seed] for seed in seeds]


def checkpoint_epochs(run: Run) -> int:
    """Epochs completed in a run's checkpoint (the truth a resume starts from)."""
    return int(weights.load_checkpoint_state(run.path / "checkpoint.pt")["epochs_done"])


def train_and_test(spec, seeds, runs, dataset, device, reporter, stop: StopFlag, resuming) -> list[dict]:
    """Each seed set up as its separate run would be, trained batched (a signal stops it
    after the current step), tested separately."""
    datas, models, pipelines = [], [], []
    for seed, run in zip(seeds, runs):
        torch.manual_seed(seed)  # the same initialisation as the seed's separate run
        data = build_data(dataset, spec.data.val_fraction, seed, device)
        model = build_model(spec.model, data.shape, len(data.classes), data.mean, data.std).to(device)
        datas.append(data)
        models.append(model)
        pipelines.append(train_pipeline(spec, seed, data, model, compiled=False))
        run.update_info(**runner.model_info(model, data, compiled=False))
    if not can_stack(models[0]):
        raise SpecError(f"train.seed_batch: cannot batch seeds of model.arch {spec.model.arch}; use 1")
    stacked = Stacked(models)
    with stop.graceful():
        fit_group(
            spec, seeds, datas, stacked, pipelines, runs, device, reporter, lambda: stop.requested, resume=resuming
        )
    if stop.requested:  # asked during the last step: the checkpoints are complete, the tests are not run
        raise Interrupted(f"interrupted after epoch {spec.train.epochs}")
    summaries = []
    for s, (run, model, data, pipeline) in enumerate(zip(runs, models, datas, pipelines)):
        model.load_state_dict(stacked.state_dict(s))
        runner.save_model(run, model)
        summaries.append(runner.finish_summary(spec, run, model, data, pipeline))
        write_figures(run, spec, data, pipeline)
    return summaries
