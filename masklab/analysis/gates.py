"""`compare --fail-if`: CI gates that never pass by accident.

A gate is `METRIC[.FIELD] OP NUMBER`, e.g. `test_acc < -0.005` (the difference against
the reference), `test_acc.ci_high < 0`, `val_acc.p_adj < 0.05` (Holm-adjusted),
`acc@gaussian(sigma=0.2).mean < 0.9`. Metric
names are written as `compare` shows them, brackets and `=` included.

A gate fails (exit 3) when it trips, and also when it cannot be evaluated: a compared
run failed, was interrupted or is damaged; the gated metric is missing or not finite
in a run; the statistic does not exist (a p-value or CI with one seed per group); or
there is no group to compare with. The user may opt out of the second kind explicitly
(`--allow-missing`), and each case is still named.

A statistic within floating-point noise of the threshold equals it: accuracies are
multiples of 1/n, and a mean of 0.6, 0.605 and 0.895 is 0.7 exactly but 0.7000000000000001
in floats, so `test_acc.mean <= 0.7` trips and `test_acc.mean < 0.7` does not.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

from masklab.analysis.compare import Comparison, canonical, run_metrics
from masklab.errors import UsageError
from masklab.store.runs import Run

FIELDS = ("diff", "ci_low", "ci_high", "p_adj", "p", "mean")
OPS = {"<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne, "<": operator.lt, ">": operator.gt}
_EXAMPLE = "e.g. 'test_acc < -0.005' or 'acc@gaussian(sigma=0.2).mean < 0.9'"
EQUAL_REL, EQUAL_ABS = 1e-9, 1e-12  # closer than this to the threshold is equal to it (float noise)


@dataclass(frozen=True)
class Gate:
    text: str
    metric: str
    field: str
    op: str
    threshold: float


def _operator_at(text: str) -> tuple[int, str]:
    """Where the comparison operator starts (outside brackets) and which it is."""
    depth = 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif depth == 0 and ch in "<>=!":
            op = text[i : i + 2] if text[i : i + 2] in OPS else ch
            if op not in OPS:
                break
            return i, op
    raise UsageError(f"--fail-if {text!r}: expected METRIC[.{'|.'.join(FIELDS)}] OP NUMBER, {_EXAMPLE}")


def parse_gate(text: str) -> Gate:
    """`test_acc < -0.005`, `test_acc.ci_high < 0`, `acc@gaussian(sigma=0.2).p < 0.05`."""
    at, op = _operator_at(text)
    left, right = text[:at].strip(), text[at + len(op) :].strip()
    try:
        threshold = float(right)
    except ValueError:
        raise UsageError(f"--fail-if {text!r}: {right!r} is not a number; {_EXAMPLE}") from None
    if not math.isfinite(threshold):
        raise UsageError(f"--fail-if {text!r}: the threshold must be a finite number, got {right!r}")
    metric, _, field = left.rpartition(".")
    if field not in FIELDS or not metric or metric.count("(") != metric.count(")"):
        metric, field = left, "diff"
    if not metric or any(c.isspace() for c in metric) or metric.count("(") != metric.count(")"):
        raise UsageError(f"--fail-if {text!r}: {left!r} is not a metric name; {_EXAMPLE}")
    return Gate(text, canonical(metric), field, op, threshold)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def gate_runs(runs: list[Run], gates: list[Gate]) -> tuple[list[Run], list[str]]:
    """The runs a gate can use, and why the others cannot be: not finished, or the gated
    metric missing or not finite. A metric that no run has is left to `compare`, which
    names it as unknown (a typo, exit 2)."""
    usable, problems = [], []
    for run in runs:
        status = run.status
        if status == "done":
            usable.append(run)
            continue
        why = run.damage() if status == "damaged" else run.info.get("error")
        problems.append(f"run {run.id} is {status}" + (f" ({why})" if why else ""))
    flat = {run.id: run_metrics(run) for run in usable}
    missing = set()
    for metric in dict.fromkeys(g.metric for g in gates):
        if not any(metric in values for values in flat.values()):
            continue
        for run in usable:
            value = flat[run.id].get(metric)
            if not _finite(value):
                state = "missing" if metric not in flat[run.id] else "null (NaN or infinite when written)"
                if value is not None and metric in flat[run.id]:
                    state = f"not a finite number ({value})"
                problems.append(f"run {run.id}: {metric} is {state}")
                missing.add(run.id)
    return [r for r in usable if r.id not in missing], problems


def holds(value: float, op: str, threshold: float) -> bool:
    """`value OP threshold`, a value within floating-point noise of the threshold taken as equal to it."""
    if math.isclose(value, threshold, rel_tol=EQUAL_REL, abs_tol=EQUAL_ABS):
        value = threshold
    return OPS[op](value, threshold)


def _statistic(c: Comparison, key: str, gate: Gate) -> float | None:
    if gate.field == "mean":
        return c.described[key][gate.metric].mean
    d = c.differences[key][gate.metric]
    return {
        "diff": d.diff,
        "ci_low": d.ci[0] if d.ci else None,
        "ci_high": d.ci[1] if d.ci else None,
        "p": d.p,
        "p_adj": d.p_adj,  # Holm-adjusted over every comparison of the call
    }[gate.field]


def _why_undefined(c: Comparison, key: str, gate: Gate, value: object) -> str:
    if value is not None:
        return f"{gate.field} is {value}, not a finite number"
    n = min(c.described[k][gate.metric].n for k in (key, c.reference.key))
    if n < 2:
        return f"{gate.field} does not exist with n={n} run per group; train more seeds"
    return f"{gate.field} does not exist for these values (e.g. no variation between seeds)"


def check_gates(c: Comparison, gates: list[Gate]) -> tuple[list[str], list[str]]:
    """(tripped, cannot be evaluated): a message for every gate and compared group."""
    tripped, unknown = [], []
    for gate in gates:
        if gate.field == "mean":
            keys = list(c.differences) or [c.reference.key]  # one group alone: gate its mean
        else:
            keys = list(c.differences)
            if not keys:
                unknown.append(
                    f"{gate.text!r} cannot be evaluated: {gate.field} needs a second group to compare with {c.reference.key}"
                )
        for key in keys:
            value = _statistic(c, key, gate)
            where = key if gate.field == "mean" else f"{key} vs {c.reference.key}"
            if not _finite(value):
                unknown.append(f"{gate.text!r} cannot be evaluated: {where}: {_why_undefined(c, key, gate, value)}")
            elif holds(value, gate.op, gate.threshold):
                tripped.append(f"{gate.text!r} tripped: {where}: {gate.metric} {gate.field} = {value:+.6g}")
    return tripped, unknown
