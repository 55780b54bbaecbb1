"""Adaptive state: small tensors owned by the training loop that set how much the ops mask.

The forms a spec may write are in `adaptive_spec` (no torch). Here is what they do:

| form | state | updated |
|------|-------|---------|
| `adapt: class` | one value per class (C,) | end of epoch: +-step by the class's signal vs target (or by label) |
| `adapt: sample` | one value and one loss average per training example (N,) | loss average per batch; values by rank at the end of the epoch |
| `placement: salient / background` | saliency per example at cell resolution (ops/saliency.py) | per step (refresh epoch) |

A batch takes its values by label (class) or by dataset index (sample), so the keyed
draws still decide where: with `mode: static` a sample keeps its keyed unit order and
the state only moves how far down that order the mask reaches (exact-count masks stay
nested). Everything here is checkpointed with the model (`state_dict`) and each epoch's
values are logged in metrics.jsonl, so a resumed run continues bit-identically.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from masklab.ops.adaptive_spec import adaptive_params
from masklab.ops.saliency import Saliency

DIGITS = 6  # rounding of the logged values


class AdaptiveState:
    """Per-class or per-example values of a pipeline's adaptive parameters."""

    def __init__(self, ops: list[dict], classes: int, examples: int, device: torch.device) -> None:
        self.params = adaptive_params(ops)
        self.rules = [ops[i][k] for i, k in self.params]
        self.classes = classes
        self.values = [
            torch.full((classes if r["adapt"] == "class" else examples,), r["init"], device=device) for r in self.rules
        ]
        sample = [r["adapt"] == "sample" for r in self.rules]
        self.loss_avg = [torch.zeros(examples, device=device) if s else None for s in sample]
        self.seen = [torch.zeros(examples, dtype=torch.bool, device=device) if s else None for s in sample]
        self.hits = torch.zeros(classes, dtype=torch.int64, device=device)  # this epoch's correct training predictions
        self.counts = torch.zeros(classes, dtype=torch.int64, device=device)

    def per_sample(self, index: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Every adaptive value of a batch: by label or by dataset index. (n_params, B)"""
        rows = []
        for rule, table in zip(self.rules, self.values):
            if rule["adapt"] == "class" and labels is None:
                raise ValueError("class-adaptive values need the batch's labels")
            rows.append(table[labels if rule["adapt"] == "class" else index])
        return torch.stack(rows)

    def observe(self, index: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor) -> None:
        """After a training step: the examples' loss averages and the classes' training hits."""
        logits = logits.detach().float()
        self.hits += torch.bincount(labels[logits.argmax(1) == labels], minlength=self.classes)
        self.counts += torch.bincount(labels, minlength=self.classes)
        if not any(s is not None for s in self.seen):
            return
        loss = F.cross_entropy(logits, labels, reduction="none")
        for rule, avg, seen in zip(self.rules, self.loss_avg, self.seen):
            if avg is None:
                continue
            old = avg.index_select(0, index)
            new = torch.where(seen.index_select(0, index), rule["decay"] * old + (1.0 - rule["decay"]) * loss, loss)
            avg.index_copy_(0, index, new)
            seen.index_fill_(0, index, True)

    def end_epoch(self, val_recall: np.ndarray | None) -> dict:
        """Update every value for the next epoch; returns this epoch's log (the values it used)."""
        train_recall = (self.hits.double() / self.counts.clamp(min=1).double()).cpu().numpy()
        train_recall[self.counts.cpu().numpy() == 0] = np.nan
        log = {}
        for (i, key), rule, table, avg, seen in zip(self.params, self.rules, self.values, self.loss_avg, self.seen):
            name = f"op{i}.{key}"
            if rule["adapt"] == "class":
                signal = val_recall if rule["signal"] == "val_recall" else train_recall
                log[name] = {"adapt": "class", "values": _rounded(table)}
                if rule["signal"] != "label":
                    log[name]["signal"] = [None if np.isnan(r) else round(float(r), DIGITS) for r in signal]
                table.copy_(self._class_update(rule, table, signal))
            else:
                log[name] = {"adapt": "sample", **_spread(table), "loss_avg": round(float(avg[seen].mean()), DIGITS)}
                table.copy_(self._sample_update(rule, table, avg, seen))
        self.hits.zero_()
        self.counts.zero_()
        return log

    def _class_update(self, rule: dict, table: torch.Tensor, signal: np.ndarray | None) -> torch.Tensor:
        if rule["signal"] == "label":
            direction = -torch.ones_like(table)
            direction[rule["up"]] = 1.0
        elif signal is None:  # no validation examples: nothing to go by
            return table
        else:
            diff = torch.as_tensor(np.nan_to_num(signal - rule["target"], nan=0.0), dtype=table.dtype)
            direction = torch.sign(diff).to(table.device)  # a class with no examples this epoch stays
        return (table + rule["step"] * direction).clamp(rule["lo"], rule["hi"])

    def _sample_update(self, rule: dict, table: torch.Tensor, avg: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        """The seen examples spread evenly over [lo, hi] by the rank of their loss average."""
        ids = seen.nonzero()[:, 0]
        n = len(ids)
        if n < 2:
            return table
        order = ids[torch.argsort(avg[ids], stable=True)]  # easiest first, ties by index
        frac = torch.arange(n, dtype=table.dtype, device=table.device) / (n - 1)  # 0 easiest .. 1 hardest
        lo, hi = rule["lo"], rule["hi"]
        out = table.clone()
        out[order] = hi - (hi - lo) * frac if rule["hard"] == "lo" else lo + (hi - lo) * frac
        return out

    def state_dict(self) -> dict:
        return {"values": self.values, "loss_avg": self.loss_avg, "seen": self.seen}

    def load_state_dict(self, state: dict) -> None:
        for mine, saved in zip(self.values, state["values"]):
            mine.copy_(saved)
        for mine_list, key in ((self.loss_avg, "loss_avg"), (self.seen, "seen")):
            for mine, saved in zip(mine_list, state[key]):
                if mine is not None:
                    mine.copy_(saved)


def _rounded(t: torch.Tensor) -> list[float]:
    return [round(float(v), DIGITS) for v in t.cpu()]


def _spread(t: torch.Tensor) -> dict:
    return {
        "mean": round(float(t.mean()), DIGITS),
        "min": round(float(t.min()), DIGITS),
        "max": round(float(t.max()), DIGITS),
    }


def per_class_recall(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """Recall of each class (nan for a class with no examples). (C,)"""
    counts = np.bincount(labels, minlength=classes).astype(float)
    hits = np.bincount(labels[predicted == labels], minlength=classes).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, hits / counts, np.nan)


class Adaptation:
    """What the training loop calls at its defined points when ops follow the model:
    before a step (values and saliency for the ops), after it (loss averages, saliency
    cache), at the end of an epoch (per-class updates, the log) and at checkpoints."""

    def __init__(self, pipeline, model: torch.nn.Module, classes: int, examples: int, device) -> None:
        self.state = AdaptiveState(pipeline.ops, classes, examples, device) if pipeline.adapted else None
        pipeline.state = self.state
        self.saliency = Saliency(pipeline.ops, model, pipeline.shape, examples, device)
        if not self.saliency.placed:
            self.saliency = None
        self.classes = classes

    @classmethod
    def of(cls, pipeline, model: torch.nn.Module, classes: int, examples: int, device) -> Adaptation | None:
        """The adaptation a pipeline needs, or None when no op follows the model."""
        placed = any(op.get("placement", "random") != "random" for op in pipeline.ops)
        if not pipeline.adapted and not placed:
            return None
        return cls(pipeline, model, classes, examples, device)

    def before_step(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> dict:
        """Keyword arguments for the pipeline's call on this batch."""
        inputs: dict = {"labels": y}
        if self.saliency is not None:
            inputs["saliency"] = self.saliency.before_step(x, y, index)
        return inputs

    def track(self, images: torch.Tensor) -> torch.Tensor:
        """The images the model trains on, keeping their gradient when the saliency cache needs it."""
        if self.saliency is not None and self.saliency.wants_input_grad:
            return images.detach().requires_grad_(True)
        return images

    def after_step(self, index, y, logits, images: torch.Tensor, out) -> None:
        """After the optimizer step: `images` the step trained on, `out` the ops' OpResult."""
        if self.state is not None:
            self.state.observe(index, y, logits)
        if self.saliency is not None and self.saliency.cache:
            self.saliency.after_step(index, images, out.mask)

    def end_epoch(self, val) -> dict:
        """Updates for the next epoch; this epoch's values for metrics.jsonl."""
        if self.state is None:
            return {}
        recall = per_class_recall(val.labels, val.predicted, self.classes) if val is not None else None
        return self.state.end_epoch(recall)

    def state_dict(self) -> dict:
        return {
            "values": self.state.state_dict() if self.state else None,
            "saliency": self.saliency.state_dict() if self.saliency else None,
        }

    def load_state_dict(self, state: dict) -> None:
        if self.state is not None:
            self.state.load_state_dict(state["values"])
        if self.saliency is not None:
            self.saliency.load_state_dict(state["saliency"])
