"""Evaluating stored runs: reload the weights, measure the clean test split and a
corruption grid, compare with a baseline run (mCE-style), store the result in the run
folder (eval/<name>.json) so that `compare` can use every cell as a metric."""

from __future__ import annotations

import numpy as np
import torch

from masklab.errors import UsageError
from masklab.evaluation import metrics as eval_metrics, predictions as stored_predictions, robustness
from masklab.store.reload import load_trained
from masklab.store.runs import Run, now


def eval_name(ops: list[dict], suite: str | None, seed: int) -> str:
    """A stable file name for one evaluation: clean, a suite, or a hash of the grid."""
    if not ops and not suite:
        return "clean"
    return robustness.grid_name(ops, suite, seed)


def corruption_errors(cells: list[dict], clean_acc: float, base_cells: list[dict], base_clean: float) -> dict:
    """Per corruption (op): CE = sum of errors / baseline's sum, and the relative CE
    using errors above the clean error (Hendrycks & Dietterich, 2019). Means in `mean`."""
    by_op: dict[str, dict[str, list[float]]] = {}
    base = {c["name"]: c["acc"] for c in base_cells}
    for c in cells:
        if c["name"] not in base:
            continue
        entry = by_op.setdefault(c["op"]["op"], {"err": [], "base": []})
        entry["err"].append(1.0 - c["acc"])
        entry["base"].append(1.0 - base[c["name"]])
    out: dict = {}
    for op, e in by_op.items():
        err, ref = np.array(e["err"]), np.array(e["base"])
        rel_den = float(np.sum(ref - (1.0 - base_clean)))
        out[op] = {
            "ce": float(err.sum() / ref.sum()) if ref.sum() > 0 else None,
            "relative_ce": float(np.sum(err - (1.0 - clean_acc)) / rel_den) if rel_den > 0 else None,
        }
    ces = [v["ce"] for v in out.values() if v["ce"] is not None]
    rels = [v["relative_ce"] for v in out.values() if v["relative_ce"] is not None]
    return {
        "per_op": out,
        "mce": float(np.mean(ces)) if ces else None,
        "relative_mce": float(np.mean(rels)) if rels else None,
    }


def evaluate_run(
    run: Run, ops: list[dict], suite: str | None, seed: int, device: torch.device, baseline: dict | None = None
) -> tuple[dict, list[str]]:
    """Clean metrics plus the grid for one run; returns (stored body, warnings)."""
    spec, data, model, warnings = load_trained(run, device)
    if spec.train.objective == "masked-modeling":
        raise UsageError(
            f"run {run.id} is a masked-modeling run without a classifier; fine-tune it (train.init_from: {run.id}) and evaluate that"
        )
    precision, batch = spec.train.precision, spec.train.eval_batch_size
    predicted = eval_metrics.predict(model, data.test, batch, precision)
    clean = eval_metrics.classification_metrics(predicted, data.classes)
    grid_ops = list(ops)
    if suite and data.vocab is not None:
        raise UsageError(f"--suite {suite}: corrupts images; run {run.id} is a text run (use --op tokens:rate=...)")
    if suite:
        from masklab.ops.suites import suite_ops

        grid_ops += suite_ops(suite, data.shape)
    correct: dict[str, np.ndarray] = {}
    cells = robustness.robustness_grid(
        model,
        data.test,
        grid_ops,
        seed,
        data.classes,
        batch,
        precision,
        (data.mean, data.std),
        data.vocab,
        keep=correct,
    )
    name = eval_name(ops, suite, seed)
    metrics = {
        "test_acc": clean["acc"],
        "test_macro_f1": clean["macro_f1"],
        "test_loss": clean["loss"],
        **robustness.grid_summary(cells, seed, f"robust_acc@{name}"),
    }
    body = {
        "schema_version": 1,
        "run_id": run.id,
        "name": name,
        "created": now(),
        "device": str(device),
        "seed": seed,
        "ops": ops,
        "suite": suite,
        "clean": clean,
        "cells": cells,
        "metrics": metrics,
    }
    if baseline is not None:
        missing = [c["name"] for c in cells if c["name"] not in {b["name"] for b in baseline["cells"]}]
        if missing:
            raise UsageError(
                f"--baseline {baseline['run_id']} lacks the cells {', '.join(missing[:3])}; evaluate both runs on the same grid"
            )
        body["baseline"] = baseline["run_id"]
        body["corruption_error"] = corruption_errors(cells, clean["acc"], baseline["cells"], baseline["clean"]["acc"])
    run.write_eval(body["name"], body)
    stored_predictions.save(run.path / "eval" / f"{body['name']}.npz", predicted, correct, cells)
    return body, warnings
