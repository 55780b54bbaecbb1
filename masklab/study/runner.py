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
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

import masklab
from masklab.data import registry as data_registry
from masklab.data.checks import check_against_data, data_key, load_data
from masklab.data.splits import TrainData, build_data
from masklab.devices import resolve_device, use_compile
from masklab.errors import Interrupted, Pruned, RunError, SpecError
from masklab.evaluation import grid as eval_grid, predictions as stored_predictions
from masklab.models import build_model, count_parameters, freeze_all_but_head, load_matching
from masklab.ops.pipeline import OpPipeline
from masklab.spec import Spec
from masklab.store import weights
from masklab.store.runs import Run, RunStore, now, run_id
from masklab.study import lifecycle, memory
from masklab.study.lifecycle import StopFlag
from masklab.study.run_figures import write_figures
from masklab.study.text import check_same_tokenizer, text_info, text_pipeline
from masklab.train import Reporter, fit, test_metrics, train_pipeline


@dataclass
class Outcome:
    run: Run
    reused: bool = False  # a finished run with this id existed; nothing was trained
    summary: dict = field(default_factory=dict)


@functools.lru_cache(maxsize=1)  # one `git` process per masklab process, not one per run
def git_commit() -> str | None:
    source = Path(masklab.__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_info(spec: Spec, seed: int, dataset: data_registry.Dataset, device: torch.device) -> dict:
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
            **text_info(dataset),
        },
        "ops_fingerprint": op_fingerprint(spec.train_ops),
        "epochs_done": 0,
        **({"trial": spec.trial} if spec.trial else {}),
    }


def op_fingerprint(ops: list[dict]) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(ops, sort_keys=True).encode()).hexdigest()[:12]


def train_one(
    spec: Spec,
    seed: int,
    dataset,
    store: RunStore,
    device: torch.device,
    reporter: Reporter,
    force=False,
    resume=False,
    init: Run | None = None,
) -> Outcome:
    """Train one run (or reuse the finished one); `lifecycle` claims its folder and
    records how it ended. A run a search's pruner stopped is recorded `pruned` and
    returned, not raised: it ended as asked."""
    try:
        run, reused, summary = lifecycle.run_claimed(
            store,
            spec,
            seed,
            device,
            info=lambda: run_info(spec, seed, dataset, device),
            train=lambda run, stop, resuming: _train_and_test(
                spec, seed, dataset, run, device, reporter, stop, resuming, init
            ),
            force=force,
            resume=resume,
        )
    except Pruned as exc:
        return Outcome(store.get(run_id(spec.name, spec.group_hash(), seed)), summary={"pruned": str(exc)})
    return Outcome(run, reused=reused, summary=summary)


def _train_and_test(
    spec, seed, dataset, run: Run, device, reporter, stop: StopFlag, resuming, init: Run | None = None
) -> dict:
    torch.manual_seed(seed)  # model init and dropout; recorded as the run's seed
    data = build_data(dataset, spec.data.val_fraction, seed, device)
    model = build_model(spec.model, data.shape, len(data.classes), data.mean, data.std, spec.train.objective).to(device)
    if init is not None:
        loaded = load_matching(model, weights.load_state(init.path / "model.pt", device))
        run.update_info(init_from={"run": init.id, "tensors_loaded": len(loaded)})
    if spec.train.freeze == "encoder":
        freeze_all_but_head(model)
    compiled = use_compile(spec.train.compile, device)
    if compiled:
        model.compile()  # in place: forward is compiled, state_dict keys stay unchanged
    steps = data.train.num_batches(spec.train.batch_size, drop_last=True)
    pipeline = train_pipeline(spec, seed, data, model, compiled)
    if data.vocab is not None:  # token ids: the text ops
        pipeline = text_pipeline(spec, seed, data, model, steps, compiled)
    run.update_info(**model_info(model, data, compiled))
    if spec.trial:  # a search trial: per-epoch validation reports to the search's pruner
        from masklab.study.trial import TrialReporter

        reporter = TrialReporter(spec, reporter)
    with stop.graceful():
        fit(spec, seed, data, model, pipeline, run, device, reporter, lambda: stop.requested, resume=resuming)
    if stop.requested:  # asked during the last step: the checkpoint is complete, the test is not run
        raise Interrupted(f"interrupted after epoch {spec.train.epochs}")
    save_model(run, model)
    summary = finish_summary(spec, run, model, data, pipeline)
    write_figures(run, spec, data, pipeline)
    return summary


def model_info(model: torch.nn.Module, data: TrainData, compiled: bool) -> dict:
    """What run.json records about a run's model and data split."""
    return {
        "parameters": count_parameters(model),
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "normalization": {"mean": data.mean, "std": data.std},
        "n_val": len(data.val) if data.val else 0,
        "compile": compiled,
    }


ENCODER_KEYS = {
    "vit": ("patch", "dim", "depth", "heads", "mlp_ratio", "pool"),
    "cnn": ("width", "depth", "norm"),
    "mlp": ("hidden",),
    "bert": ("dim", "depth", "heads", "mlp_ratio", "pool", "vocab_size", "max_len", "tokenizer", "lowercase"),
}


def init_source(store: RunStore, spec: Spec, seed: int) -> Run | None:
    """The finished run whose weights initialise this one: train.init_from names a run,
    or a group, spec name or study, in which case its run with this run's seed."""
    ref = spec.train.init_from
    if not ref:
        return None
    runs = store.resolve_many(ref)
    if len(runs) > 1:
        same = [r for r in runs if r.info.get("seed") == seed]
        if not same:
            seeds = sorted({r.info.get("seed") for r in runs})
            raise RunError(
                f"train.init_from: {ref} has no run with seed {seed} (its seeds: {seeds}); train it with --seeds {seed}"
            )
        runs = same[-1:]
    (source,) = runs
    if source.status != "done" or not (source.path / "model.pt").is_file():
        raise RunError(f"train.init_from: run {source.id} is not finished (status {source.status}); train it first")
    theirs, mine = source.spec.get("model", {}), dataclasses.asdict(spec.model)
    if theirs.get("arch") != mine["arch"]:
        raise SpecError(
            f"train.init_from: run {source.id} is a {theirs.get('arch')}, this spec's model.arch is {mine['arch']}"
        )
    for key in ENCODER_KEYS[mine["arch"]]:
        if theirs.get(key) != mine[key]:
            raise SpecError(
                f"train.init_from: run {source.id} has model.{key} {theirs.get(key)}, this spec has {mine[key]}; they must match"
            )
    weights.load_state(source.path / "model.pt")  # a file that is not plain weights is refused before any folder exists
    return source


def save_model(run: Run, model: torch.nn.Module) -> None:
    run.write_bytes("model.pt", weights.to_bytes(model.state_dict()))


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
        from masklab.evaluation.suites import suite_ops

        grid += suite_ops(spec.eval.suite, data.shape)
    if grid:
        cells = eval_grid.robustness_grid(
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
        summary["robust_grid"] = eval_grid.grid_name(list(spec.eval.ops), spec.eval.suite, spec.eval.seed)
        summary.update(eval_grid.grid_summary(cells, spec.eval.seed))
    stored_predictions.save(
        run.path / stored_predictions.FILE, metrics["predictions"], correct, summary.get("robustness")
    )
    run.write_summary(summary)
    return summary


@dataclass
class Prepared:
    """A spec checked against its data, with what training it needs."""

    spec: Spec
    dataset: data_registry.Dataset
    device: torch.device
    inits: dict[int, Run | None]


def prepare(
    specs: list[Spec], seeds: list[int] | None, store: RunStore, datasets: dict | None = None
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
                print(copies_note(datasets[key]), file=sys.stderr)
        check_against_data(spec, datasets[key])
        device = resolve_device(spec.train.device)
        use_compile(spec.train.compile, device)  # refuse an impossible setting before any folder exists
        memory.check_fits(spec, datasets[key], device)  # and a model that cannot fit
        inits = {seed: init_source(store, spec, seed) for seed in seeds or spec.seeds}
        check_same_tokenizer(inits.values(), datasets[key])
        prepared.append(Prepared(spec, datasets[key], device, inits))
    return prepared


def train_specs(
    specs: list[Spec],
    seeds: list[int] | None,
    store: RunStore,
    reporter: Reporter,
    force=False,
    resume=False,
    on_done=None,
) -> list[Outcome]:
    """Train one run per seed of every spec (a spec file's variants), reusing finished
    runs. Every spec is checked before the first run starts."""
    outcomes = []
    for p in prepare(specs, seeds, store):
        if p.spec.train.seed_batch != 1:  # seeds trained together as one batched model
            from masklab.study.seed_groups import train_batched

            group = seeds or p.spec.seeds
            outcomes += train_batched(
                p.spec, group, p.dataset, store, p.device, reporter, force, resume, p.inits, on_done
            )
            continue
        for seed in seeds or p.spec.seeds:
            outcome = train_one(p.spec, seed, p.dataset, store, p.device, reporter, force, resume, p.inits[seed])
            outcomes.append(outcome)
            if on_done:
                on_done(outcome)
    return outcomes


def copies_note(dataset: data_registry.Dataset) -> str:
    k, n = dataset.copies, len(dataset.train_y)
    return (
        f"note: {dataset.name} holds {k} masked copies of each training image ({n // k} images, {n} samples): "
        f"every epoch passes over all {n}, {k}x the steps per epoch of one copy. To cycle the copies over "
        f"epochs instead (one per epoch, as BERT's dupe factor), train on the source data with mode: static, copies: {k}"
    )


def train_spec(
    spec: Spec, seeds: list[int], store: RunStore, reporter: Reporter, force=False, resume=False, on_done=None
) -> list[Outcome]:
    """Train one run per seed of one spec (finished runs are reused)."""
    return train_specs([spec], seeds, store, reporter, force, resume, on_done)
