"""From validated specs to finished runs (the in-process executor): data checks, run folders, statuses, signals.

Everything that can fail because of the input (data, op shapes, model shapes) is
checked before a run folder exists, so bad input never leaves a folder behind. Once a
folder exists its status tells what happened: done, failed (with the error) or
interrupted (resumable from the last checkpoint).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

import masklab
from masklab import signals, spec as spec_mod
from masklab.data import registry as data_registry
from masklab.data.checks import check_against_data, data_key, load_data
from masklab.data.splits import TrainData, build_data
from masklab.devices import resolve_device, use_compile
from masklab.errors import Interrupted, MasklabError, RunError, SpecError, UsageError
from masklab.evaluation import grid as eval_grid, predictions as stored_predictions
from masklab.models import build_model, count_parameters, freeze_all_but_head, load_matching
from masklab.ops.pipeline import OpPipeline
from masklab.spec import Spec
from masklab.store import files, weights
from masklab.store.files import DamagedFile, StoreWriteError
from masklab.store.runs import Run, RunLock, RunStore, now, run_id
from masklab.study import memory
from masklab.study.run_figures import write_figures
from masklab.study.text import check_same_tokenizer, text_info, text_pipeline
from masklab.train import Reporter, fit, test_metrics, train_pipeline


@dataclass
class Outcome:
    run: Run
    reused: bool = False  # a finished run with this id existed; nothing was trained
    summary: dict = field(default_factory=dict)


class StopFlag:
    """SIGINT/SIGTERM while training steps run (`graceful()`): stop after the current
    step, checkpointed. Anywhere else, or a second signal: stop at once."""

    def __init__(self) -> None:
        self.requested = False
        self.soft = False
        self._scope = signals.handled_by(self._handle)

    def _handle(self, signum: int) -> None:
        if self.requested or not self.soft:
            raise KeyboardInterrupt
        self.requested = True
        with contextlib.suppress(OSError):  # os.write: safe even while stderr is mid-print
            os.write(2, b"\nstopping after this step (interrupt again to stop at once)...\n")

    @contextlib.contextmanager
    def graceful(self):
        self.soft = True
        try:
            yield
        finally:
            self.soft = False

    def __enter__(self) -> StopFlag:
        self._scope.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._scope.__exit__(*exc)


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
    }


def op_fingerprint(ops: list[dict]) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(ops, sort_keys=True).encode()).hexdigest()[:12]


def changed_keys(store: RunStore, spec: Spec, seed: int) -> tuple[Run, list[str]] | None:
    """An unfinished run of the same name and seed whose spec differs, and the keys that differ."""
    for run in reversed(store.all()):
        info = run.info
        if info.get("name") == spec.name and info.get("seed") == seed and run.status not in ("done", "damaged"):
            return run, spec_mod.diff_keys(run.spec, spec.to_dict() | {"seeds": run.spec.get("seeds")})
    return None


@dataclass
class Claim:
    """The folder a training writes, held locked: a new run, a run to resume, or a staged
    replacement for `old` (committed over it only once complete)."""

    run: Run
    mode: str  # "reuse" | "new" | "resume" | "replace"
    lock: RunLock | None = None
    old: Run | None = None
    old_lock: RunLock | None = None
    finished: bool = False  # the outcome is recorded: nothing may change the run any more
    previous: dict = field(default_factory=dict)  # run.json before this process touched it (resume)

    def release(self) -> None:
        for lock in (self.lock, self.old_lock):
            if lock is not None:
                lock.release()


def find_or_create(store: RunStore, spec: Spec, seed: int, dataset, device, force: bool, resume: bool) -> Claim:
    """The existing finished run (reused), a run to resume, or a new one, locked. A run
    that exists and is started over (--force, or --resume without a checkpoint) is
    replaced only when its replacement is complete."""
    rid = run_id(spec.name, spec.group_hash(), seed)
    existing = store.get(rid)
    if existing is None:
        if resume:
            other = changed_keys(store, spec, seed)
            if other:
                run, keys = other
                raise UsageError(
                    f"cannot resume: the spec changed since run {run.id} ({', '.join(keys[:6])}); drop --resume to start a new run"
                )
        run, lock = store.create(rid, _spec_yaml(spec, seed), run_info(spec, seed, dataset, device))
        return Claim(run, "new", lock)
    if existing.path.is_symlink():
        raise RunError(f"{existing.path} is a symbolic link, not a run folder; remove it")
    if existing.status == "done" and not force:
        return Claim(existing, "reuse")
    old_lock = existing.lock()  # RunBusy while another process trains or replaces it
    try:
        status = existing.status
        status = "stale" if status == "running" else status  # running, yet the lock was free
        if not force:
            if status == "done":
                old_lock.release()
                return Claim(existing, "reuse")
            if status == "damaged":
                raise RunError(f"run {rid} is damaged ({existing.damage()}); pass --force to train it again")
            if not resume:
                raise RunError(
                    f"run {rid} exists with status {status}; pass --resume to continue it or --force to start over"
                )
            if (existing.path / "checkpoint.pt").is_file():
                return Claim(existing, "resume", old_lock, previous=existing.info)
        run, lock = store.stage(rid, _spec_yaml(spec, seed), run_info(spec, seed, dataset, device))
        return Claim(run, "replace", lock, old=existing, old_lock=old_lock)
    except BaseException:
        old_lock.release()
        raise


def _spec_yaml(spec: Spec, seed: int) -> str:
    return spec_mod.dump_yaml(dataclasses.replace(spec, seeds=[seed]))


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
    """Train one run and record how it ended. Every way out leaves the run in a true
    state: done (committed), failed (with the error), interrupted (resumable), or,
    for a replacement or a run that never started, as it was before."""
    claim: Claim | None = None
    with StopFlag() as stop:
        try:
            with signals.deferred():  # a signal waits until the claim is held, so it is recorded
                claim = find_or_create(store, spec, seed, dataset, device, force, resume)
            if claim.mode == "reuse":
                return Outcome(claim.run, reused=True, summary=claim.run.summary)
            began = time.perf_counter()
            claim.run.update_info(
                drop=("error", "finished", "duration_s"),
                status="running",
                pid=os.getpid(),
                started=now(),
                device=str(device),
            )
            summary = _train_and_test(
                spec, seed, dataset, claim.run, device, reporter, stop, claim.mode == "resume", init
            )
            with signals.deferred():
                claim.run.update_info(status="done", finished=now(), duration_s=round(time.perf_counter() - began, 3))
                run = (
                    store.commit(claim.run.path, claim.run.id, replace=claim.old)
                    if claim.mode == "replace"
                    else claim.run
                )
                claim.finished = True
            if stop.requested:
                raise Interrupted(f"interrupted after run {run.id} finished; the next runs were not started")
            return Outcome(run, summary=summary)
        except BaseException as exc:
            if claim is None or claim.mode == "reuse" or claim.finished:
                if isinstance(exc, KeyboardInterrupt):
                    raise Interrupted("interrupted; every finished run is kept") from None
                raise
            with signals.deferred():
                raise _ended(store, claim, exc, spec, device) from None
        finally:
            if claim is not None:
                claim.release()


def _ended(store: RunStore, claim: Claim, exc: BaseException, spec: Spec, device) -> BaseException:
    """Record how an unfinished claim ended; returns the exception to raise."""
    run = claim.run
    if claim.mode == "replace":
        files.remove_tree(run.path)  # the run being replaced was never touched
        kept = f"run {run.id} is unchanged ({claim.old.info.get('status', 'damaged')})"
        if isinstance(exc, (Interrupted, KeyboardInterrupt)):
            return Interrupted(f"interrupted before the new run was complete; {kept}")
        if memory.is_out_of_memory(exc):
            return memory.out_of_memory(spec, device, f"while training run {run.id}; {kept}")
        return type(exc)(f"{exc}; {kept}") if isinstance(exc, MasklabError) else exc
    if isinstance(exc, (Interrupted, KeyboardInterrupt)):
        done = run.info.get("epochs_done", 0)
        run.record_status(status="interrupted", finished=now(), error=str(exc) or "interrupted")
        return Interrupted(
            f"run {run.id} interrupted after {done} epoch(s); `masklab train SPEC --resume` continues it"
        )
    if isinstance(exc, DamagedFile) and claim.mode == "resume":
        run.record_status(**claim.previous)
        return exc  # a file of the run is unreadable: its status tells what it was
    oom = memory.is_out_of_memory(exc)
    if oom and claim.mode == "new" and not run.info.get("epochs_done"):
        with contextlib.suppress(StoreWriteError):  # it never started: no folder (or, failing that, a failed one)
            store.discard(run, held=claim.lock)
            return memory.out_of_memory(spec, device, f"while starting run {run.id}")
    if oom:
        exc = memory.out_of_memory(spec, device, f"while training run {run.id}")
    error = str(exc) if isinstance(exc, MasklabError) else f"{type(exc).__name__}: {exc}"
    run.record_status(status="failed", finished=now(), error=error)
    return exc


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
    metrics = test_metrics(model, data, spec, pipeline)
    rows = run.metrics()
    summary = {
        "schema_version": 1,
        "run_id": run.id,
        "epochs": len(rows),
        "train_seconds": round(sum(r["train_seconds"] for r in rows), 3),
    }
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
        test_confusion={"classes": data.classes, "matrix": metrics["confusion"]},
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
    runs. Every spec is checked before the first run starts, and each distinct data
    section is loaded once."""
    datasets: dict[str, data_registry.Dataset] = {}
    plans = []
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
        plans.append((spec, datasets[key], device, inits))
    outcomes = []
    for spec, dataset, device, inits in plans:
        if spec.train.seed_batch != 1:  # seeds trained together as one batched model
            from masklab.study.seed_groups import train_batched

            group = seeds or spec.seeds
            outcomes += train_batched(spec, group, dataset, store, device, reporter, force, resume, inits, on_done)
            continue
        for seed in seeds or spec.seeds:
            outcome = train_one(spec, seed, dataset, store, device, reporter, force, resume, inits[seed])
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
