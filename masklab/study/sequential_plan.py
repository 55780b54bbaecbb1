"""The plan of a sequential study: the `sequential:` section, the design, the comparisons.

    sequential:
      max_seeds: 20            # at most this many seeds per group: looks at 3, 5, 8, 12, 20
      metric: test_acc         # or a list; every variant x metric is one comparison
      min_effect: 0.002        # the band of practically equal differences (0: no `equivalent`)
      # alpha: 0.05, boundary: obrien-fleming | pocock | confidence-sequence, futility: 0.2,
      # multiplicity: holm | bonferroni, looks: [3, 6, 10] (instead of the rule from max_seeds)

Like `grid:` and `variants:`, it is a setting of the study, not part of any run's spec or
id. `masklab train SPEC --until decided` (`--max-seeds`, `--min-effect`, `--metric` or
`--set sequential.KEY=VALUE` override the section) trains the study look by look
(study/sequential.py). Its comparisons are each group (a variant, or a grid cell)
against the first, as compare's default, over seeds 0, 1, ..., max_seeds - 1 in that
order; they are declared here, before the first seed, and recorded with the study.

Nothing here imports torch or touches the disk.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

from masklab import schema as sc, spec as spec_mod
from masklab.analysis import boundaries, sequential
from masklab.analysis.compare import canonical
from masklab.errors import SpecError, UsageError
from masklab.study.plan import PlannedRun, Study

SECTION = "sequential"
MAX_SEEDS_LIMIT = 1000


def _metrics(value: Any, path: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    names = [
        canonical(sc.as_str(m, sc.join(path, i) if isinstance(value, list) else path)) for i, m in enumerate(items)
    ]
    if not names:
        raise SpecError(f"{path}: must name at least one metric, e.g. test_acc")
    if len(set(names)) != len(names):
        raise SpecError(f"{path}: a metric appears twice; list each once")
    return names


def _looks(value: Any, path: str) -> list[int]:
    items = sc.as_list(value, path, min_len=1)
    looks = [sc.as_int(n, sc.join(path, i), 2, MAX_SEEDS_LIMIT) for i, n in enumerate(items)]
    if any(b <= a for a, b in zip(looks, looks[1:])):
        raise SpecError(f"{path}: seed counts must increase, e.g. [3, 5, 8, 12, 20]; got {looks}")
    return looks


@dataclass
class SequentialSpec:
    """How a sequential study decides: the section's keys, each with its check."""

    max_seeds: int = sc.opt(
        20,
        "at most this many seeds per group; looks at 3 seeds, then x1.5 (20: 3, 5, 8, 12, 20)",
        lambda v, p: sc.as_int(v, p, sequential.FIRST_LOOK, MAX_SEEDS_LIMIT),
    )
    looks: list[int] | None = sc.opt(None, "seeds per group at each look, instead of the rule", sc.optional(_looks))
    metric: list[str] = sc.opt(["test_acc"], "the metric(s) compared: each group x metric is one comparison", _metrics)
    min_effect: float = sc.opt(
        0.0,
        "half-width of the band of practically equal differences (0: no equivalence)",
        lambda v, p: sc.as_float(v, p, 0.0),
    )
    alpha: float = sc.opt(
        0.05,
        "family-wise error of better/worse over all looks and comparisons",
        lambda v, p: sc.as_float(v, p, 0.0, 0.5, lo_open=True),
    )
    boundary: str = sc.opt(
        boundaries.OBRIEN_FLEMING,
        "obrien-fleming | pocock | confidence-sequence",
        lambda v, p: sc.as_choice(v, p, boundaries.FAMILIES),
    )
    futility: float = sc.opt(
        0.2,
        "stop a comparison whose predictive power of a verdict is below this (0: never)",
        lambda v, p: sc.as_float(v, p, 0.0, 0.99),
    )
    multiplicity: str = sc.opt(
        sequential.HOLM,
        "holm (a decision passes its alpha on) | bonferroni",
        lambda v, p: sc.as_choice(v, p, sequential.MULTIPLICITY),
    )

    def design(self, comparisons: int) -> sequential.Design:
        looks = tuple(self.looks) if self.looks else sequential.looks_for(self.max_seeds)
        return sequential.Design(
            looks, self.alpha, self.boundary, self.min_effect, comparisons, self.multiplicity, self.futility
        )


def read_settings(raw_section: Any, sets: list[str], options: dict[str, Any]) -> SequentialSpec:
    """The section as the command line leaves it: `--set sequential.KEY=VALUE` first, then
    the options that were given (`max_seeds`, `min_effect`, `metric`). Every value is
    checked; an error names its key path (`sequential.max_seeds: ...`) or option."""
    body = copy.deepcopy(sc.need_mapping(raw_section, SECTION)) if raw_section is not None else {}
    for assignment in sets:
        path, _, value = assignment.partition("=")
        spec_mod.set_path(
            body, path.strip()[len(SECTION) + 1 :], spec_mod.parse_yaml_text(value, f"--set {path}"), f"--set {path}"
        )
    settings = spec_mod.build_section(SequentialSpec, body, SECTION)
    if (
        "looks" in body
        and body.get("max_seeds") is not None
        and settings.looks
        and settings.looks[-1] != settings.max_seeds
    ):
        raise SpecError(
            f"sequential.looks: ends at {settings.looks[-1]}, but max_seeds is {settings.max_seeds}; give one of them"
        )
    for option, value in options.items():
        if value is None:
            continue
        if option == "max_seeds" and settings.looks and settings.looks[-1] != value:
            raise UsageError(
                f"--max-seeds {value}: the spec's sequential.looks end at {settings.looks[-1]}; drop one of them"
            )
        check = {f.name: f.metadata["check"] for f in dataclasses.fields(SequentialSpec)}[option]
        try:
            setattr(settings, option, check(value, f"--{option.replace('_', '-')}"))
        except SpecError as exc:
            raise UsageError(str(exc)) from None
    if settings.looks:
        settings.max_seeds = settings.looks[-1]
    return settings


def section_sets(sets: list[str]) -> tuple[list[str], list[str]]:
    """`--set` assignments split into those of the `sequential:` section and the others."""
    mine = [s for s in sets if s.partition("=")[0].strip().startswith(f"{SECTION}.")]
    for s in sets:
        if s.partition("=")[0].strip() == SECTION:
            raise UsageError(f"--set {SECTION}=...: set one key at a time, e.g. --set {SECTION}.max_seeds=10")
    return mine, [s for s in sets if s not in mine]


@dataclass(frozen=True)
class Comparison:
    group: str  # the group compared with the reference: `<name>-<spec hash>`
    metric: str

    @property
    def name(self) -> str:
        return f"{self.group} {self.metric}"


@dataclass
class SequentialPlan:
    """Every run the design may train (each group x seeds 0..max_seeds-1) and what it decides."""

    study: Study
    design: sequential.Design
    metrics: list[str]
    groups: list[str]  # group keys in plan order; the first is the reference
    labels: dict[str, str]  # group key -> its variant / grid label (or its name)
    settings: SequentialSpec

    @property
    def reference(self) -> str:
        return self.groups[0]

    @property
    def seeds(self) -> list[int]:
        return list(range(self.design.max_seeds))

    @property
    def comparisons(self) -> list[Comparison]:
        return [Comparison(g, m) for g in self.groups[1:] for m in self.metrics]

    def runs(self, groups: list[str], seeds: int) -> list[PlannedRun]:
        """The planned runs of these groups with the first `seeds` seeds, in plan order."""
        wanted = set(self.seeds[:seeds])
        return [p for p in self.study.runs if group_of(p) in groups and p.seed in wanted]

    def identity(self) -> dict:
        """What a record of this study must match for a rerun to continue its sequence."""
        return {
            "study": self.study.name,
            "design": self.design.as_dict(),
            "metrics": list(self.metrics),
            "groups": list(self.groups),
            "seeds": self.seeds,
        }


def group_of(run: PlannedRun) -> str:
    return f"{run.spec.name}-{run.spec.group_hash()}"


def plan_sequential(study: Study, settings: SequentialSpec) -> SequentialPlan:
    """The sequential plan of a study planned with seeds 0..max_seeds-1. A study with one
    group has nothing to compare (exit 2)."""
    groups: dict[str, str] = {}
    for p in study.runs:
        groups.setdefault(group_of(p), p.label or p.spec.name)
    if len(groups) < 2:
        raise UsageError(
            f"--until decided: study {study.name} has one group, nothing to compare; "
            "give the spec variants: or a grid (--grid 'train_ops[0].rate=0,0.25') to compare against the first"
        )
    for p in study.runs[:1]:
        _check_metrics(p.spec, settings.metric)
    comparisons = (len(groups) - 1) * len(settings.metric)
    design = settings.design(comparisons)
    return SequentialPlan(study, design, list(settings.metric), list(groups), groups, settings)


def _check_metrics(spec, metrics: list[str]) -> None:
    """Refuse, before any training, the metrics that this study's runs cannot have."""
    for m in metrics:
        if not spec.eval.test and not m.startswith(("val_", "best_val", "train_")):
            raise UsageError(
                f"--metric {m}: the runs skip the test split (eval.test: false); compare val_acc or val_loss"
            )
        masked = spec.train.objective == "masked-modeling"
        if masked and (m in ("test_acc", "test_macro_f1", "robust_acc") or m.startswith(("acc@", "recall["))):
            raise UsageError(
                f"metric {m}: masked-modeling runs are scored by reconstruction; compare test_recon_loss (or val_loss)"
            )
