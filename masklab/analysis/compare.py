"""Grouping, statistics and gates for `masklab compare`: returns rows, prints nothing.

A group is the set of runs whose resolved specs differ only in the seed (they share
`<name>-<spec hash>`). Every group is compared against the first (the reference) on
each chosen metric; `stats` supplies the numbers and the words, for all comparisons of
the call at once (Holm's adjustment runs over the whole family). Where every run stored
its per-example test predictions, they go with the per-seed values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from masklab import schema, spec as spec_mod
from masklab.analysis import stats
from masklab.data import fingerprint
from masklab.errors import RunError, UsageError
from masklab.evaluation import predictions
from masklab.store.runs import Run

ALIASES = {"acc": "test_acc", "f1": "test_macro_f1", "macro_f1": "test_macro_f1"}


@dataclass
class Group:
    key: str
    runs: list[Run]
    spec: dict = field(default_factory=dict)

    @property
    def seeds(self) -> list[int]:
        return [r.info.get("seed") for r in self.runs]


def group_runs(runs: list[Run], per_run: bool = False) -> list[Group]:
    """Runs -> groups in order of first appearance; duplicates dropped."""
    groups: dict[str, Group] = {}
    seen = set()
    for run in runs:
        if run.path.resolve() in seen:
            continue
        seen.add(run.path.resolve())
        key = run.id if per_run else run.info.get("group", run.id)
        if key not in groups:
            body = dict(run.spec)
            body.pop("seeds", None)
            groups[key] = Group(key, [], body)
        groups[key].runs.append(run)
    return list(groups.values())


def run_metrics(run: Run) -> dict[str, float]:
    """Every scalar metric of a run: its summary, stored evaluations, last epoch.

    A name always means one computation: the summary's metrics are never replaced by an
    evaluation's, and an evaluation's mean over its own grid is `robust_acc@<eval name>`
    (`robust_acc` alone is the mean over the spec's eval grid, from training)."""
    rows = run.metrics()
    flat: dict[str, float] = {}
    if rows:
        flat.update({k: v for k, v in rows[-1].items() if _scalar(v) and k != "epoch"})
        vals = [r["val_acc"] for r in rows if _scalar(r.get("val_acc"))]
        if vals:
            flat["best_val_acc"] = max(vals)
    flat.update({k: v for k, v in run.summary.items() if _scalar(v) or (v is None and k in _nulls(run.summary))})
    recall = run.summary.get("per_class_recall")
    if isinstance(recall, dict):  # as eval names them
        flat.update({f"recall[{c}]": v for c, v in recall.items() if _scalar(v)})
    for body in sorted(run.evals().values(), key=lambda b: str(b.get("created", ""))):
        for key, value in body["metrics"].items():
            if key == "robust_acc":  # written by masklab before metric names carried the grid
                key = f"robust_acc@{body.get('name', 'eval')}"
            flat.setdefault(key, value)
    return flat


def _scalar(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _nulls(body: dict) -> set[str]:
    """Keys whose value was NaN or infinite when written (stored as null, listed)."""
    listed = body.get("non_finite")
    return set(listed) if isinstance(listed, list) else set()


def default_metric(runs: list[Run]) -> str:
    """test_acc; for runs that all trained a masked language model (no classifier, so no
    test_acc), their objective's own metric, the masked-token accuracy test_mlm_acc."""
    summaries = [r.summary for r in runs]
    if summaries and all("test_acc" not in s and "test_mlm_acc" in s for s in summaries):
        return "test_mlm_acc"
    return "test_acc"


def canonical(metric: str) -> str:
    return ALIASES.get(metric, metric)


def higher_is_better(metric: str) -> bool:
    return not any(word in metric for word in ("loss", "error", "_ce", "seconds"))


def differing_keys(groups: list[Group]) -> list[str]:
    flat = [spec_mod.flatten(g.spec) for g in groups]
    keys = sorted(set().union(*flat)) if flat else []
    return [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]


@dataclass
class Comparison:
    groups: list[Group]
    metrics: list[str]
    keys: list[str]  # spec keys shown as columns
    values: dict[str, dict[str, dict[int, float]]]  # group -> metric -> seed -> value
    described: dict[str, dict[str, stats.Describe]]
    differences: dict[str, dict[str, stats.Difference]]  # non-reference group -> metric -> difference
    warnings: list[str]
    notes: list[str] = field(default_factory=list)  # how the statistics were made, for stderr
    min_effect: float = 0.0
    sequential: Any = None  # over a recorded sequential study: its sequence (analysis/sequential_compare.py)

    @property
    def reference(self) -> Group:
        return self.groups[0]


def compare(
    groups: list[Group],
    metrics: list[str],
    all_keys: bool = False,
    min_effect: float = 0.0,
    per_example: bool = True,
) -> Comparison:
    """Describe every group and compare each with the first on every metric. `min_effect`:
    the half-width of the band of practically equal differences; `per_example`: use stored
    per-example predictions where every run has them (the test set as a sample)."""
    if not groups:
        raise UsageError("nothing to compare: no finished runs among those named")
    refuse_mixed_data(groups)
    metrics = [canonical(m) for m in metrics]
    values = group_values(groups, metrics)
    described = describe(values, metrics)
    ref = groups[0]
    examples = (
        {(g.key, m): group_examples(g, m, values[g.key][m]) for g in groups for m in metrics} if per_example else {}
    )
    notes = example_notes(groups, metrics, examples) if per_example else []
    pairs, keys = [], []
    for g in groups[1:]:
        for m in metrics:
            ref_ex, other_ex = examples.get((ref.key, m)), examples.get((g.key, m))
            if ref_ex is not None and other_ex is not None and not same_test_set(ref_ex, other_ex):
                ref_ex = other_ex = None
                notes.append(f"{g.key} and {ref.key} were tested on different test sets: {m} compared on seeds only")
            pairs.append(
                stats.Pair(
                    values[ref.key][m],
                    values[g.key][m],
                    higher_is_better(m),
                    quantum(g.runs + ref.runs, m),
                    {s: sc for s, (_, sc) in ref_ex.items()} if ref_ex and other_ex else None,
                    {s: sc for s, (_, sc) in other_ex.items()} if ref_ex and other_ex else None,
                )
            )
            keys.append((g.key, m))
    differences: dict[str, dict[str, stats.Difference]] = {g.key: {} for g in groups[1:]}
    for (key, m), d in zip(keys, stats.compare_family(pairs, min_effect, per_example)):
        differences[key][m] = d
    shown = sorted(set().union(*(spec_mod.flatten(g.spec) for g in groups))) if all_keys else differing_keys(groups)
    return Comparison(
        groups,
        metrics,
        shown,
        values,
        described,
        differences,
        comparability(groups),
        list(dict.fromkeys(notes)),
        min_effect,
    )


def group_values(groups: list[Group], metrics: list[str]) -> dict[str, dict[str, dict[int, float]]]:
    """group -> metric -> seed -> value; a UsageError naming a metric that a group lacks."""
    values: dict[str, dict[str, dict[int, float]]] = {}
    for g in groups:
        per_run = [(r.info.get("seed"), run_metrics(r)) for r in g.runs]
        values[g.key] = {}
        for m in metrics:
            found = {seed: float(flat[m]) for seed, flat in per_run if m in flat and flat[m] is not None}
            if not found:
                known = sorted(set().union(*(flat for _, flat in per_run)))
                raise UsageError(
                    f"--metric {m}: group {g.key} has no such metric{schema.suggest(m, known)} (known: {', '.join(known[:12])}, ...)"
                )
            values[g.key][m] = found
    return values


def describe(
    values: dict[str, dict[str, dict[int, float]]], metrics: list[str]
) -> dict[str, dict[str, stats.Describe]]:
    return {key: {m: stats.describe(list(per[m].values())) for m in metrics} for key, per in values.items()}


def group_examples(g: Group, metric: str, values: dict[int, float]) -> dict[int, tuple] | None:
    """seed -> (labels, per-example scores) for every run of a group, or None when a run
    has no stored predictions that reproduce its value of the metric."""
    out = {}
    for run in g.runs:
        seed = run.info.get("seed")
        found = predictions.run_scores(run, metric, values[seed]) if seed in values else None
        if found is None:
            return None
        out[seed] = found
    return out


def same_test_set(a: dict[int, tuple], b: dict[int, tuple]) -> bool:
    labels = [lab for lab, _ in [*a.values(), *b.values()]]
    return all(len(x) == len(labels[0]) and np.array_equal(x, labels[0]) for x in labels)


def example_notes(groups: list[Group], metrics: list[str], examples: dict) -> list[str]:
    out = []
    for m in metrics:
        missing = [g.key for g in groups if examples.get((g.key, m)) is None]
        if not missing:
            continue
        why = (
            "some runs have no stored per-example predictions (trained before masklab stored them)"
            if predictions.has_scores(m)
            else "it has no per-example scores"
        )
        out.append(f"{m}: compared on seeds only, the test set taken as fixed: {why} ({', '.join(missing[:3])})")
    return out


def quantum(runs: list[Run], metric: str) -> float:
    """The step of a metric that counts examples (1 / test examples, over the cells it
    averages; 1 / validation examples), 0 otherwise: per-seed differences that vary by
    less than one step carry no seed noise."""
    info = runs[0].info if runs else {}
    n_test = info.get("data", {}).get("n_test") or 0
    cells = runs[0].summary.get("robustness", []) if runs else []
    if metric == "robust_acc":
        averaged = len(cells)
    elif metric.startswith("acc@"):
        averaged = sum(c.get("op", {}).get("suite") == metric[4:] for c in cells) or 1  # a suite's mean, or one cell
    elif metric == "test_acc":
        averaged = 1
    elif metric in ("val_acc", "best_val_acc") and info.get("n_val"):
        return 1.0 / info["n_val"]
    else:
        return 0.0
    return 1.0 / (n_test * max(averaged, 1)) if n_test else 0.0


def refuse_mixed_data(groups: list[Group]) -> None:
    """RunError for the first group whose runs trained on different data (their recorded
    fingerprints differ): its seeds are not replicates of one experiment."""
    for g in groups:
        by_fingerprint: dict[str, list[str]] = {}
        for run in g.runs:
            recorded = run.info.get("data", {}).get("fingerprint")
            if recorded:
                by_fingerprint.setdefault(str(recorded), []).append(run.id)
        if len(by_fingerprint) > 1:
            shown = "; ".join(f"{fp}: {', '.join(ids[:3])}" for fp, ids in by_fingerprint.items())
            raise RunError(
                f"group {g.key} mixes runs trained on different data (data fingerprint {shown}): its seeds are not "
                "replicates of one experiment; train them again on one version of the data (masklab train SPEC "
                "--seeds ... --force), or compare them --per-run"
            )


def changed_data(groups: list[Group]) -> list[str]:
    """Warnings for groups whose input files have changed since their runs read them: the
    numbers hold for the data as it was (a run records its input files by content)."""
    out, seen = [], {}
    for g in groups:
        inputs = next((r.info["data"]["inputs"] for r in g.runs if _inputs(r)), None)
        if inputs is None:
            continue
        key = repr(inputs)
        if key not in seen:
            seen[key] = fingerprint.pin_difference(inputs, fingerprint.pin([p["path"] for p in inputs]))
        if seen[key]:
            out.append(f"{g.key}: {seen[key]}; its numbers are for the data as it was when its runs trained")
    return out


def _inputs(run: Run) -> bool:
    inputs = run.info.get("data", {}).get("inputs")
    return isinstance(inputs, list) and all(isinstance(p, dict) and isinstance(p.get("path"), str) for p in inputs)


def comparability(groups: list[Group]) -> list[str]:
    """Warnings when the compared runs did not see the same data, eval ops or masklab."""
    runs = [r for g in groups for r in g.runs]
    out = changed_data(groups)
    checks = {
        "datasets": lambda r: r.info.get("data", {}).get("dataset"),
        "data fingerprints": lambda r: r.info.get("data", {}).get("fingerprint"),
        "evaluation ops": lambda r: repr(r.spec.get("eval")),
        "masklab versions": lambda r: r.info.get("versions", {}).get("masklab"),
    }
    for what, get in checks.items():
        distinct = {get(r) for r in runs}
        if len(distinct) > 1:
            shown = ", ".join(sorted(str(d) for d in distinct))[:120]
            out.append(f"the runs used different {what} ({shown}); their numbers may not be comparable")
    return out


def rows(c: Comparison) -> list[dict]:
    """One row per (group, metric): spec keys that differ, stats, difference vs reference."""
    out = []
    for g in c.groups:
        flat = spec_mod.flatten(g.spec)
        for m in c.metrics:
            d = c.described[g.key][m]
            row = {
                "group": g.key,
                "n": d.n,
                "seeds": ",".join(str(s) for s in sorted(c.values[g.key][m])),
                **{k: flat.get(k) for k in c.keys},
            }
            row.update({"metric": m, "mean": d.mean, "std": d.std, "min": d.min, "max": d.max})
            row.update(difference_row(c.differences.get(g.key, {}).get(m)))
            out.append(row)
    return out


DIFFERENCE_COLUMNS = ("diff", "ci_low", "ci_high", "interval", "p", "p_adj", "verdict", "why")
OUTPERFORM_COLUMNS = ("p_outperform", "p_outperform_low", "p_outperform_high")


def difference_row(d: stats.Difference | None) -> dict:
    """The difference columns of one row; the reference's row says `reference`."""
    if d is None:
        return {k: None for k in DIFFERENCE_COLUMNS + OUTPERFORM_COLUMNS} | {"verdict": "reference"}
    lo, hi = d.ci if d.ci else (None, None)
    p_lo, p_hi = d.p_outperform_ci if d.p_outperform_ci else (None, None)
    return {
        "diff": d.diff,
        "ci_low": lo,
        "ci_high": hi,
        "interval": d.interval,
        "p": d.p,
        "p_adj": d.p_adj,
        "verdict": d.verdict,
        "why": d.why,
        "p_outperform": d.p_outperform,
        "p_outperform_low": p_lo,
        "p_outperform_high": p_hi,
    }


_HASH = re.compile(r"-[0-9a-f]{8}(?=(-s\d+)?$)")  # a group's spec hash (before a run's seed)


def display_names(groups: list[Group]) -> dict[str, str]:
    """What a figure calls each group: its key without the spec hash (`quickstart-static`),
    unless that leaves two groups with one name; then the key, hash and all."""
    short = {g.key: _HASH.sub("", g.key) for g in groups}
    taken = list(short.values())
    return {key: name if taken.count(name) == 1 else key for key, name in short.items()}


def json_body(c: Comparison) -> dict:
    return {
        "metrics": c.metrics,
        "min_effect": c.min_effect,
        "verdict_rules": stats.VERDICT_RULES,
        "reference": c.reference.key,
        "keys": c.keys,
        "groups": [
            {
                "group": g.key,
                "runs": [r.id for r in g.runs],
                "seeds": g.seeds,
                "spec": {k: spec_mod.flatten(g.spec).get(k) for k in c.keys},
                "stats": {
                    m: {
                        **c.described[g.key][m].as_dict(),
                        "values": {str(s): v for s, v in sorted(c.values[g.key][m].items())},
                    }
                    for m in c.metrics
                },
            }
            for g in c.groups
        ],
        "comparisons": [
            {"group": key, "reference": c.reference.key, "metric": m, **d.as_dict()}
            for key, per_metric in c.differences.items()
            for m, d in per_metric.items()
        ],
        "warnings": c.warnings,
        "notes": c.notes,
    }


def curves(c: Comparison, key: str) -> dict[str, dict[str, list[float]]]:
    """Per group: the per-epoch mean, std, min and max of a metrics.jsonl column."""
    out = {}
    for g in c.groups:
        series = [[row.get(key) for row in r.metrics()] for r in g.runs]
        length = min((len(s) for s in series), default=0)
        if length == 0 or any(v is None for s in series for v in s[:length]):
            raise UsageError(
                f"--curve {key}: runs of {g.key} have no per-epoch {key!r} (try val_acc, train_loss, train_acc, val_loss)"
            )
        a = np.array([s[:length] for s in series], dtype=float)
        out[g.key] = {
            "n": len(a),
            "epoch": list(range(1, length + 1)),
            "mean": a.mean(0).tolist(),
            "std": (a.std(0, ddof=1) if len(a) > 1 else np.zeros(length)).tolist(),
            "min": a.min(0).tolist(),
            "max": a.max(0).tolist(),
        }
    return out
