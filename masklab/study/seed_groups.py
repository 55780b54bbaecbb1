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

import contextlib
import os
import time

import torch

from masklab.data.splits import build_data
from masklab.errors import Interrupted, MasklabError, SpecError
from masklab.models import build_model
from masklab.models.stacked import Stacked, can_stack
from masklab.spec import Spec
from masklab.store.runs import Run, RunStore, now, run_id
from masklab.study import runner
from masklab.study.plan import seeds_per_batch
from masklab.study.run_figures import write_figures
from masklab.train import Reporter, train_pipeline
from masklab.train_batched import SeedFailed, fit_group


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


def open_runs(store: RunStore, spec: Spec, seeds: list[int], dataset, device, force, resume) -> list[tuple[Run, bool]]:
    """(run, resuming) per seed; if one cannot be opened, the folders made so far are removed."""
    opened: list[tuple[Run, bool]] = []
    try:
        for seed in seeds:
            run, reused, resuming = runner.find_or_create(store, spec, seed, dataset, device, force, resume)
            opened.append((run, resuming))
    except BaseException:
        for run, resuming in opened:
            if not resuming:
                store.discard(run)
        raise
    return opened


def train_chunk(spec, seeds, dataset, store, device, reporter, force, resume) -> list[runner.Outcome]:
    """Seeds whose runs are not finished: grouped by the epoch they start from, each group batched."""
    opened = open_runs(store, spec, seeds, dataset, device, force, resume)
    starts = [checkpoint_epochs(run) if resuming else 0 for run, resuming in opened]
    outcomes: dict[int, runner.Outcome] = {}
    for start in sorted(set(starts)):
        members = [i for i, s in enumerate(starts) if s == start]
        group = [seeds[i] for i in members]
        runs = [opened[i][0] for i in members]
        summaries = run_group(spec, group, runs, dataset, device, reporter, resuming=start > 0)
        outcomes.update({seed: runner.Outcome(run, summary=s) for seed, run, s in zip(group, runs, summaries)})
    return [outcomes[seed] for seed in seeds]


def checkpoint_epochs(run: Run) -> int:
    """Epochs completed in a run's checkpoint (the truth a resume starts from)."""
    return int(torch.load(run.path / "checkpoint.pt", map_location="cpu", weights_only=True)["epochs_done"])


def run_group(spec, seeds, runs: list[Run], dataset, device, reporter, resuming: bool) -> list[dict]:
    """Train one batch under every run's lock, keeping each run's status true."""
    with contextlib.ExitStack() as held:
        for run in runs:
            held.enter_context(run.lock())
        stop = held.enter_context(runner.StopFlag())
        batch = {"seeds": seeds, "size": len(seeds)}
        for run in runs:
            run.update_info(status="running", pid=os.getpid(), started=now(), device=str(device), seed_batch=batch)
        began = time.perf_counter()
        try:
            summaries = train_and_test(spec, seeds, runs, dataset, device, reporter, lambda: stop.requested, resuming)
        except (Interrupted, KeyboardInterrupt) as exc:
            for run in runs:
                run.update_info(status="interrupted", finished=now(), error=str(exc) or "interrupted")
            raise Interrupted(
                f"runs {', '.join(r.id for r in runs)} interrupted after {runs[0].info.get('epochs_done', 0)} epoch(s); "
                "`masklab train SPEC --resume` continues them"
            ) from None
        except SeedFailed as exc:
            for seed, run in zip(seeds, runs):
                if seed == exc.seed:
                    run.update_info(status="failed", finished=now(), error=str(exc))
                else:
                    note = f"stopped: seed {exc.seed} of its batch failed ({exc}); --resume continues this run"
                    run.update_info(status="interrupted", finished=now(), error=note)
            raise SeedFailed(f"seed {exc.seed}: {exc}", exc.seed) from None
        except Exception as exc:
            error = str(exc) if isinstance(exc, MasklabError) else f"{type(exc).__name__}: {exc}"
            for run in runs:
                run.update_info(status="failed", finished=now(), error=error)
            raise
        duration = round((time.perf_counter() - began) / len(runs), 3)  # each run's share
        for run in runs:
            run.update_info(status="done", finished=now(), duration_s=duration)
    return summaries


def train_and_test(spec, seeds, runs, dataset, device, reporter, stop, resuming) -> list[dict]:
    """Each seed set up as its separate run would be, trained batched, tested separately."""
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
    fit_group(spec, seeds, datas, stacked, pipelines, runs, device, reporter, stop, resume=resuming)
    summaries = []
    for s, (run, model, data, pipeline) in enumerate(zip(runs, models, datas, pipelines)):
        model.load_state_dict(stacked.state_dict(s))
        runner.save_model(run, model)
        summaries.append(runner.finish_summary(spec, run, model, data, pipeline))
        write_figures(run, spec, data, pipeline)
    return summaries
