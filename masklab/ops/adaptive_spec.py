"""The adaptive form of a varying op parameter, as a spec writes it. No torch here.

Any parameter that may be a range or a schedule in `train_ops` (rate, area, sigma,
amount, strength, ...) may instead be set by the training run itself:

    rate: {adapt: class, signal: val_recall, target: 0.9, step: 0.05, init: 0.25, lo: 0.0, hi: 0.75}

- `adapt: class` keeps one value per class. At the end of every epoch each class's
  value moves by `step` towards more masking when its signal is above `target` (the
  model already gets that class right) and by `step` towards less when below; a
  negative step reverses that. Signals: `val_recall` (the class's recall on the
  validation split), `train_recall` (its recall on the epoch's masked training
  batches), or `label` with `up: [classes]`: the listed classes move up by `step`
  every epoch and the others down, the label-driven rule of "dynamic mask adjustment"
  (per-class values nudged by +-alpha by label).
- `adapt: sample` keeps one value per training example, from an exponential moving
  average of its loss (`decay`, updated whenever the example is trained on): at the
  end of every epoch the examples are ranked by that average and spread evenly over
  [lo, hi], the hardest at `hard: lo` (default: hard examples are masked least) or at
  `hard: hi`. Examples not yet seen keep `init`.

Values are clipped to [lo, hi]; `init` is the value of the first epoch. The state lives
in the run's checkpoint and every epoch's values are logged in metrics.jsonl. The
value sets how much is masked; the keyed hash still decides where.
"""

from __future__ import annotations

from typing import Any

from masklab import schema as sc
from masklab.errors import SpecError

KINDS = ("class", "sample")
CLASS_SIGNALS = ("val_recall", "train_recall", "label")
SAMPLE_SIGNALS = ("train_loss",)
CLASS_KEYS = ("adapt", "signal", "target", "step", "init", "lo", "hi", "up")
SAMPLE_KEYS = ("adapt", "signal", "decay", "hard", "init", "lo", "hi")
EXAMPLE = "{adapt: class, signal: val_recall, target: 0.9, step: 0.05, init: 0.25, lo: 0.0, hi: 0.75}"


def is_adaptive(value: Any) -> bool:
    return isinstance(value, dict) and "adapt" in value


def adaptive_params(ops: list[dict]) -> list[tuple[int, str]]:
    """(op index, parameter) of every adaptive parameter, in a fixed order."""
    return [(i, k) for i, op in enumerate(ops) for k, v in op.items() if is_adaptive(v)]


def check(value: dict, where: str, lo_bound: float | None, hi_bound: float | None) -> dict:
    """Validate an `{adapt: ...}` mapping for a parameter whose values lie in [lo_bound, hi_bound]."""
    kind = sc.as_choice(value["adapt"], f"{where}.adapt", KINDS)
    sc.reject_unknown(value, CLASS_KEYS if kind == "class" else SAMPLE_KEYS, where)
    lo = sc.as_float(value.get("lo", lo_bound if lo_bound is not None else 0.0), f"{where}.lo", lo_bound, hi_bound)
    if "hi" not in value and hi_bound is None:
        raise SpecError(f"{where}.hi: required for this parameter (it has no upper bound), e.g. hi: 0.5")
    hi = sc.as_float(value.get("hi", hi_bound), f"{where}.hi", lo_bound, hi_bound)
    if lo >= hi:
        raise SpecError(f"{where}: lo must be below hi, got lo {lo:g} and hi {hi:g}")
    if "init" not in value:
        raise SpecError(f"{where}.init: required (the value of the first epoch), e.g. {EXAMPLE}")
    init = sc.as_float(value["init"], f"{where}.init", lo, hi)
    out: dict[str, Any] = {"adapt": kind}
    if kind == "class":
        signal = sc.as_choice(value.get("signal", "val_recall"), f"{where}.signal", CLASS_SIGNALS)
        out.update(signal=signal, step=sc.as_float(value.get("step", 0.05), f"{where}.step", -(hi - lo), hi - lo))
        if signal == "label":
            if "target" in value:
                raise SpecError(f"{where}.target: signal label moves by label, not towards a target; drop target")
            if "up" not in value:
                raise SpecError(f"{where}.up: signal label needs the classes whose value goes up, e.g. up: [0, 1]")
            up = sc.as_list(value["up"], f"{where}.up")
            out["up"] = sorted({sc.as_int(c, sc.join(f"{where}.up", i), 0) for i, c in enumerate(up)})
        else:
            if "up" in value:
                raise SpecError(f"{where}.up: only with signal label; signal {signal} moves towards target")
            out["target"] = sc.as_float(value.get("target", 0.9), f"{where}.target", 0.0, 1.0)
    else:
        out.update(
            signal=sc.as_choice(value.get("signal", "train_loss"), f"{where}.signal", SAMPLE_SIGNALS),
            decay=sc.as_float(value.get("decay", 0.9), f"{where}.decay", 0.0, 0.999),
            hard=sc.as_choice(value.get("hard", "lo"), f"{where}.hard", ("lo", "hi")),
        )
    out.update(init=init, lo=lo, hi=hi)
    return out


def uses_model(ops: list[dict]) -> list[str]:
    """Key paths of the ops' parameters that follow the model as it trains (adaptive
    values, placement by saliency)."""
    paths = [f"train_ops[{i}].{k}" for i, k in adaptive_params(ops)]
    return paths + [
        f"train_ops[{i}].placement" for i, op in enumerate(ops) if op.get("placement", "random") != "random"
    ]


def check_spec(ops: list[dict], *, objective: str, val_fraction: float, path: str = "train_ops") -> None:
    """Checks that need the rest of the spec: adaptive values and placement by saliency
    follow a classifier's training."""
    for where in uses_model(ops):
        if objective != "classify":
            raise SpecError(f"{where}: follows a classifier's training; train.objective is {objective}")
    for i, key in adaptive_params(ops):
        where = f"{path}[{i}].{key}"
        if ops[i][key].get("signal") == "val_recall" and val_fraction <= 0:
            raise SpecError(f"{where}.signal: val_recall needs a validation split; set data.val_fraction > 0")


def check_classes(ops: list[dict], classes: int, path: str = "train_ops") -> None:
    """`up:` names classes the dataset has."""
    for i, key in adaptive_params(ops):
        for c in ops[i][key].get("up", []):
            if c >= classes:
                raise SpecError(
                    f"{path}[{i}].{key}.up: class {c} does not exist; the dataset has classes 0..{classes - 1}"
                )


def short(value: dict) -> str:
    """`adapt:class(val_recall,0.25)` for labels and tables."""
    return f"adapt:{value['adapt']}({value['signal']},{value['init']:g})"
