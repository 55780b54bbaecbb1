"""From validated specs to finished runs (the in-process executor): data checks, then each
run trained through `lifecycle` (its folder, statuses and signals).

Everything that can fail because of the input (data, op shapes, model shapes) is
checked before a run folder exists, so bad input never leaves a folder behind. Once a
folder exists its status tells what happened: done, failed (with the error) or
interrupted (resumable from the last checkpoint).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

import masklab
from masklab import threads as threads_mod
from masklab.data import fingerprint, registry as data_registry
from masklab.data.checks import check_against_data, data_key, load_data
from masklab.data.dataset import Dataset
from masklab.data.splits import TrainData, build_data
from masklab.devices import resolve_device, use_compile
from masklab.errors import Interrupted, Pruned, RunError, SpecError
from masklab.evaluation import predictions as stored_predictions, robustness
from masklab.events import Events
from masklab.models.build import build_model, count_parameters, freeze_all_but_head, load_matching
from masklab.models.stacked import can_stack
from masklab.ops.pipeline import OpPipeline
from masklab.spec import Spec
from masklab.store import checkpoints, weights
from masklab.store.runs import Run, RunStore, now, run_id
from masklab.study import lifecycle, model_memory, pins, sources
from masklab.study.lifecycle import StopFlag
from masklab.study.plan import seeds_per_batch
from masklab.study.result import Result
from masklab.study.run_figures import write_figures
from masklab.study.tokenizer_info import check_same_tokenizer, text_info
from masklab.train import Seed, SeedGroup, fit, test_metrics, train_pipeline


@functools.lru_cache(maxsize=1)  # one `git` process per masklab process, not one per run
def git_commit() -> str | None:
    source = Path(masklab.__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_info(spec: Spec, seed: int, dataset: Dataset, device: torch.device, init: Run | None = None) -> dict:
    """A new run's run.json: what it is, where it runs, and the inputs it is pinned to
    (data fingerprint and input files, the init source by id and content: `study.pins`)."""
    return {
        "id": run_id(spec.name, spec.group_hash(), seed),
        "name": spec.name,
        "study": spec.study,
        "variant": spec.variant,
        "label": spec.label,
        "group": f"{spec.name}-{spec.group_hash()}",
        "spec_hash": spec.group_hash(),
        "seed": seed,
        "status": "running",
        "created": now(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "thread_wait": threads_mod.PLAN.get("wait"),
        "pid": os.getpid(),
        "host": platform.node(),
        "command": " ".join(sys.argv),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "masklab": masklab.__version__},
        "git_commit": git_commit(),
        "data": {
            "dataset": dataset.name,
            "source": dataset.source,
            "fingerprint": dataset.fingerprint(),
            "shape": list(dataset.shape),
            "classes": dataset.classes,
            "n_train": int(len(dataset.train_y)),
            "n_test": int(len(dataset.test_y)),
            "inputs": fingerprint.pin(data_registry.input_paths(spec.data.dataset, spec.data.root)),
            **text_info(dataset),
        },
        **({"init_from": sources.content_pin(init)} if init is not None else {}),
        "ops_fingerprint": op_fingerprint(spec.train_ops),
        "epochs_done": 0,
        **({"trial": spec.trial} if spec.trial else {}),
    }


def op_fingerprint(ops: list[dict]) -> str:
    import json

    return hashlib.sha256(json.dumps(ops, sort_keys=True).encode()).hexdigest()[:12]


def train_runs(
    spec: Spec,
    seeds: list[int],
    dataset,
    store: RunStore,
    device: torch.device,
    events: Events,
    force: bool = False,
    resume: bool = False,
    inits: dict | None = None,
    on_done=None,
) -> list[Result]:
    """One outcome per seed, in seed order: finished runs reused, the rest trained in
    groups of `train.seed_batch` seeds (1: each alone)."""
    done: dict[int, Result] = {}
    pending = []
    for seed in seeds:
        existing = store.get(run_id(spec.name, spec.group_hash(), seed))
        if existing is not None and not force and existing.status == "done":
            pins.refuse_changed(existing, run_info(spec, seed, dataset, device, (inits or {}).get(seed)))
            done[seed] = Result.of(existing, "reused", existing.summary)
            if on_done:
                on_done(done[seed])
        else:
            pending.append(seed)
    size = seeds_per_batch(spec, len(pending))
    for first in range(0, len(pending), size):
        chunk = pending[first : first + size]
        for seed, outcome in zip(chunk, train_group(spec, chunk, dataset, store, device, events, force, resume, inits)):
            done[seed] = outcome
            if on_done:
                on_done(outcome)
    return [done[seed] for seed in seeds]


def train_group(spec, seeds, dataset, store, device, events, force, resume, inits=None) -> list[Result]:
    """Seeds whose runs are not finished, claimed together (`lifecycle`, all or none) and
    trained together, grouped by the epoch their checkpoints stopped at. Every run ends
    in a true state: done, failed, interrupted (resumable), pruned, or as it was before
    (a replacement, a run that never started, a group that never ran because an earlier
    one stopped)."""
    inits = inits or {}
    claims = lifecycle.claim_all(
        store, spec, seeds, lambda seed: run_info(spec, seed, dataset, device, inits.get(seed)), force, resume
    )
    outcomes: dict[int, Result] = {}
    try:
        for seed, claim in zip(seeds, claims):
            if claim.mode == "reuse":  # finished by another process since we looked
                outcomes[seed] = Result.of(claim.run, "reused", claim.run.summary)
                claim.finished = True
                claim.release()
        for members, resuming in _by_start(claims):
            group = [seeds[i] for i in members]
            extra = {"seed_batch": {"seeds": group, "size": len(group)}} if len(group) > 1 else {}
            try:
                runs, summaries = lifecycle.run_group(
                    store,
                    spec,
                    [claims[i] for i in members],
                    device,
                    lambda runs, stop, group=group, resuming=resuming: train_and_test(
                        spec, group, runs, dataset, device, events, stop, resuming, inits
                    ),
                    **extra,
                )
            except Pruned as exc:  # a search's pruner stopped it: recorded `pruned`, returned, not raised
                (seed,) = group
                runs, summaries = [store.get(run_id(spec.name, spec.group_hash(), seed))], [{"pruned": str(exc)}]
            outcomes.update({seed: Result.of(run, "done", s) for seed, run, s in zip(group, runs, summaries)})
    finally:
        lifecycle.give_up(store, [c for c in claims if not c.finished])  # groups that never ran
    return [outcomes[seed] for seed in seeds]


def _by_start(claims: list[lifecycle.Claim]) -> list[tuple[list[int], bool]]:
    """The claims to train, as groups that start at one epoch: (claim indices, resuming)."""
    active = [i for i, claim in enumerate(claims) if not claim.finished]
    if len(active) <= 1:
        return [(active, claims[i].mode == "resume") for i in active]
    starts = {i: checkpoints.epochs_done(claims[i].run) if claims[i].mode == "resume" else 0 for i in active}
    return [([i for i in active if starts[i] == start], start > 0) for start in sorted(set(starts.values()))]


def setup_seed(spec: Spec, seed: int, run: Run, dataset, device, init: Run | None, batched: bool) -> Seed:
    """One seed as its run trains it: its initialisation, data split, network (with a
    pretrained encoder, frozen, compiled as the spec says) and op pipeline."""
    torch.manual_seed(seed)  # model init and dropout; recorded as the run's seed
    data = build_data(dataset, spec.data.val_fraction, seed, device)
    model = build_model(spec.model, data.shape, len(data.classes), data.mean, data.std, spec.train.objective).to(device)
    if init is not None:
        loaded = load_matching(model, weights.load_state(init.path / "model.pt", device))
        run.update_info(init_from={**run.info.get("init_from", {}), "tensors_loaded": len(loaded)})
    if spec.train.freeze == "encoder":
        freeze_all_but_head(model)
    compiled = not batched and use_compile(spec.train.compile, device)
    if compiled:
        model.compile()  # in place: forward is compiled, state_dict keys stay unchanged
    pipeline = train_pipeline(spec, seed, data, model, compiled)
    run.update_info(**model_info(model, data, compiled))
    return Seed(seed, run, data, pipeline, model)


def train_and_test(
    spec, seeds, runs, dataset, device, events: Events, stop: StopFlag, resuming: bool, inits: dict
) -> list[dict]:
    """Each seed set up as its run, trained together (a signal stops them after the
    current step), then each saved, tested and drawn."""
    batched = len(seeds) > 1
    members = [setup_seed(spec, s, r, dataset, device, inits.get(s), batched) for s, r in zip(seeds, runs)]
    if batched and not can_stack(members[0].model):
        raise SpecError(f"train.seed_batch: cannot batch seeds of model.arch {spec.model.arch}; use 1")
    group = SeedGroup(spec, members, device)
    if spec.trial:  # a search trial: per-epoch validation reports to the search's pruner
        from masklab.study.trial import TrialEvents

        events = TrialEvents(spec, events)
    with stop.graceful():
        fit(group, events, lambda: stop.requested, resume=resuming)
    if stop.requested:  # asked during the last step: the checkpoints are complete, the tests are not run
        raise Interrupted(f"interrupted after epoch {spec.train.epochs}")
    summaries = []
    for member, model in zip(members, group.trained_models()):
        save_model(member.run, model)
        summaries.append(finish_summary(spec, member.run, model, member.data, member.pipeline))
        write_figures(member.run, spec, member.data, member.pipeline, events.note)
    return summaries


def model_info(model: torch.nn.Module, data: TrainData, compiled: bool) -> dict:
    """What run.json records about a run's model and data split."""
    return {
        "parameters": count_parameters(model),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "normalization": {"mean": data.mean, "std": data.std},
        "n_val": len(data.val) if data.val else 0,
        "compile": compiled,
    }


def init_source(store: RunStore, spec: Spec, seed: int) -> Run | None:
    """The finished run whose weights initialise this one (`study.sources`), checked:
    finished, the same encoder, plain weights that match the SHA-256 it recorded."""
    if not spec.train.init_from:
        return None
    source = sources.source_run(store, spec, seed)
    if source.status != "done" or not (source.path / "model.pt").is_file():
        raise RunError(f"train.init_from: run {source.id} is not finished (status {source.status}); train it first")
    theirs, mine = source.spec.get("model", {}), dataclasses.asdict(spec.model)
    if theirs.get("arch") != mine["arch"]:
        raise SpecError(
            f"train.init_from: run {source.id} is a {theirs.get('arch')}, this spec's model.arch is {mine['arch']}"
        )
    for key in spec.model.encoder_keys:
        if theirs.get(key) != mine[key]:
            raise SpecError(
                f"train.init_from: run {source.id} has model.{key} {theirs.get(key)}, this spec has {mine[key]}; they must match"
            )
    weights.load_state(source.path / "model.pt")  # a file that is not plain weights is refused before any folder exists
    sources.content_pin(source)  # and one that is not the weights the run finished with
    return source


def save_model(run: Run, model: torch.nn.Module) -> None:
    """model.pt, and its SHA-256 in run.json: what a fine-tune from this run pins."""
    body = weights.to_bytes(model.state_dict())
    run.write_bytes("model.pt", body)
    run.update_info(model_sha256=hashlib.sha256(body).hexdigest())


def finish_summary(spec: Spec, run: Run, model: torch.nn.Module, data: TrainData, pipeline: OpPipeline) -> dict:
    rows = run.metrics()
    summary = {
        "schema_version": 1,
        "run_id": run.id,
        "epochs": len(rows),
        "train_seconds": round(sum(r["train_seconds"] for r in rows), 3),
    }
    if not spec.eval.test:  # validation only: nothing here touches the test split
        summary.update({k: v for k, v in (rows[-1] if rows else {}).items() if k.startswith("val_")}, test="skipped")
        run.write_summary(summary)
        return summary
    metrics = test_metrics(model, data, spec, pipeline)
    if spec.train.objective == "masked-modeling":
        summary.update(
            test_recon_loss=metrics["recon_loss"],
            test_loss=metrics["recon_loss"],
            **({"test_mlm_acc": metrics["mlm_acc"]} if "mlm_acc" in metrics else {}),
            val_loss=rows[-1].get("val_loss") if rows else None,
            **({"val_mlm_acc": rows[-1]["val_mlm_acc"]} if rows and "val_mlm_acc" in rows[-1] else {}),
        )
        run.write_summary(summary)
        return summary
    summary.update(
        test_acc=metrics["acc"],
        test_macro_f1=metrics["macro_f1"],
        test_loss=metrics["loss"],
        per_class_recall=metrics["per_class_recall"],
        test_confusion={"classes": data.classes, **metrics["confusion"]},
        val_acc=rows[-1].get("val_acc") if rows else None,
    )
    grid, correct = list(spec.eval.ops), {}
    if spec.eval.suite:
        from masklab.ops.suites import suite_ops

        grid += suite_ops(spec.eval.suite, data.shape)
    if grid:
        cells = robustness.robustness_grid(
            model,
            data.test,
            grid,
            spec.eval.seed,
            data.classes,
            spec.train.eval_batch_size,
            spec.train.precision,
            (data.mean, data.std),
            data.vocab,
            keep=correct,
        )
        summary["robustness"] = cells
        summary["robust_grid"] = robustness.grid_name(list(spec.eval.ops), spec.eval.suite, spec.eval.seed)
        summary.update(robustness.grid_summary(cells, spec.eval.seed))
    stored_predictions.save(
        run.path / stored_predictions.FILE, metrics["predictions"], correct, summary.get("robustness")
    )
    run.write_summary(summary)
    return summary


@dataclass
class Prepared:
    """A spec checked against its data, with what training it needs."""

    spec: Spec
    dataset: Dataset
    device: torch.device
    inits: dict[int, Run | None]


def prepare(
    specs: list[Spec],
    seeds: list[int] | None,
    store: RunStore,
    datasets: dict | None = None,
    note: Callable[[str], None] = lambda message: None,
) -> list[Prepared]:
    """Check every spec before the first run starts (data, shapes, device, init runs);
    each distinct data section is loaded once (`datasets` carries them across calls)."""
    datasets = {} if datasets is None else datasets
    prepared = []
    for spec in specs:
        key = data_key(spec)
        if key not in datasets:
            datasets[key] = load_data(spec)
            if datasets[key].copies > 1:
                note(copies_note(datasets[key]))
        check_against_data(spec, datasets[key])
        device = resolve_device(spec.train.device)
        use_compile(spec.train.compile, device)  # refuse an impossible setting before any folder exists
        model_memory.check_fits(spec, datasets[key], device)  # and a model that cannot fit
        inits = {seed: init_source(store, spec, seed) for seed in seeds or spec.seeds}
        check_same_tokenizer(inits.values(), datasets[key])
        prepared.append(Prepared(spec, datasets[key], device, inits))
    return prepared


def train_specs(
    specs: list[Spec],
    seeds: list[int] | None,
    store: RunStore,
    events: Events,
    force=False,
    resume=False,
    on_done=None,
) -> list[Result]:
    """Train one run per seed of every spec (a spec file's variants), reusing finished
    runs. Every spec is checked before the first run starts."""
    outcomes = []
    for p in prepare(specs, seeds, store, note=events.note):
        outcomes += train_runs(
            p.spec, seeds or p.spec.seeds, p.dataset, store, p.device, events, force, resume, p.inits, on_done
        )
    return outcomes


def copies_note(dataset: Dataset) -> str:
    k, n = dataset.copies, len(dataset.train_y)
    return (
        f"note: {dataset.name} holds {k} masked copies of each training image ({n // k} images, {n} samples): "
        f"every epoch passes over all {n}, {k}x the steps per epoch of one copy. To cycle the copies over "
        f"epochs instead (one per epoch, as BERT's dupe factor), train on the source data with mode: static, copies: {k}"
    )


def train_spec(
    spec: Spec, seeds: list[int], store: RunStore, events: Events, force=False, resume=False, on_done=None
) -> list[Result]:
    """Train one run per seed of one spec (finished runs are reused)."""
    return train_specs([spec], seeds, store, events, force, resume, on_done)
