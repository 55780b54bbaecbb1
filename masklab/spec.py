"""The experiment spec: schema, YAML loading, `--set` overrides and validation.

A spec is validated completely before any work starts. Each section is a dataclass whose
fields carry a one-line doc and a check; unknown keys are rejected with a suggestion.
`resolve()` fills every default, so the spec written into a run folder is complete.
Nothing here imports torch.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from masklab import datasets, safeyaml, schema as sc
from masklab.errors import SpecError, UsageError
from masklab.models.registry import MODEL_SPECS, BertSpec, CNNSpec, MLPSpec, ViTSpec  # noqa: F401  (spec sections)
from masklab.ops import adaptive_spec, registry as op_registry
from masklab.ops.suites import SUITES

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
# a run's name: a spec name, then its variant and grid labels (`rate=0.25`), see study/plan.py
RUN_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._=-]{0,199}"
DATASET_NAMES = datasets.NAMES
MAX_SPEC_BYTES = 1 << 20
STUDY_SECTIONS = ("search", "sequential")  # what `masklab search` tunes; how `--until decided` decides


def _dataset_name(value: Any, path: str) -> str:
    value = sc.as_str(value, path)
    if datasets.source(value) is not None:
        return value
    allowed = ", ".join(datasets.allowed())
    hint = sc.suggest(value, DATASET_NAMES)
    raise SpecError(f"{path}: unknown dataset {sc.show(value)}{hint} (allowed: {allowed})")


def _seeds(value: Any, path: str) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    items = sc.as_list(value, path, min_len=1)
    seeds = [sc.as_int(s, sc.join(path, i), 0, 2**31 - 1) for i, s in enumerate(items)]
    if len(set(seeds)) != len(seeds):
        raise SpecError(f"{path}: seeds must be distinct, got {seeds}")
    return seeds


def _device(value: Any, path: str) -> str:
    value = sc.as_str(value, path)
    if value in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", value):
        return value
    raise SpecError(f"{path}: must be auto, cpu, cuda, cuda:N or mps, got {sc.show(value)}")


def _compile(value: Any, path: str) -> bool | str:
    if value == "auto" or isinstance(value, bool):
        return value
    raise SpecError(f"{path}: must be auto, true or false, got {sc.show(value)}")


def _seed_batch(value: Any, path: str) -> int | str:
    if value == "auto":
        return value
    if isinstance(value, (str, bool)) or not isinstance(value, (int, float)):
        raise SpecError(f"{path}: must be auto or a number of seeds (1 trains them one by one), got {sc.show(value)}")
    return sc.as_int(value, path, 1, 1024)


def _ops(grid: bool) -> Callable[[Any, str], list[dict]]:
    def check(value: Any, path: str) -> list[dict]:
        items = sc.as_list(value, path)
        return [op_registry.validate(item, sc.join(path, i), grid=grid) for i, item in enumerate(items)]

    return check


@dataclass
class DataSpec:
    """Where the images come from and how the training split is divided."""

    dataset: str = sc.opt(
        "mnist-mini",
        " | ".join(datasets.forms("images")) + "; text: " + " | ".join(datasets.forms("text")),
        _dataset_name,
    )
    root: str | None = sc.opt(
        None,
        "folder holding the IDX files (searched first; a folder that does not exist is an error)",
        sc.optional(sc.as_str),
    )
    download: bool = sc.opt(False, "download mnist/fashion-mnist (SHA-256 checked) when not found", sc.as_bool)
    val_fraction: float = sc.opt(
        0.1, "stratified share of the training split held out for validation", lambda v, p: sc.as_float(v, p, 0.0, 0.5)
    )
    train_limit: int | None = sc.opt(
        None, "use a stratified subset of this many training images", sc.optional(lambda v, p: sc.as_int(v, p, 20))
    )
    test_limit: int | None = sc.opt(
        None, "use a stratified subset of this many test images", sc.optional(lambda v, p: sc.as_int(v, p, 10))
    )


@dataclass
class TrainSpec:
    """The optimisation recipe."""

    epochs: int = sc.opt(5, "passes over the training split", lambda v, p: sc.as_int(v, p, 1, 100000))
    batch_size: int = sc.opt(256, "images per optimisation step", lambda v, p: sc.as_int(v, p, 1, 1 << 20))
    optimizer: str = sc.opt(
        "adamw", "adamw | sgd (Nesterov momentum)", lambda v, p: sc.as_choice(v, p, ("adamw", "sgd"))
    )
    lr: float = sc.opt(3e-3, "peak learning rate", lambda v, p: sc.as_float(v, p, 0.0, lo_open=True))
    weight_decay: float = sc.opt(
        5e-4, "decoupled (adamw) or L2 (sgd) weight decay", lambda v, p: sc.as_float(v, p, 0.0, 10.0)
    )
    momentum: float = sc.opt(0.9, "SGD momentum (sgd only)", lambda v, p: sc.as_float(v, p, 0.0, 0.9999))
    schedule: str = sc.opt(
        "onecycle", "onecycle | cosine | constant", lambda v, p: sc.as_choice(v, p, ("onecycle", "cosine", "constant"))
    )
    warmup: float = sc.opt(
        0.2, "share of the steps spent warming up (onecycle, cosine)", lambda v, p: sc.as_float(v, p, 0.0, 0.9)
    )
    label_smoothing: float = sc.opt(
        0.0, "label smoothing of the cross-entropy", lambda v, p: sc.as_float(v, p, 0.0, 0.99)
    )
    device: str = sc.opt("auto", "auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps", _device)
    precision: str = sc.opt(
        "auto",
        "auto (bf16 autocast on CUDA, fp32 on CPU) | bf16 (autocast on CUDA or CPU) | fp32",
        lambda v, p: sc.as_choice(v, p, ("auto", "bf16", "fp32")),
    )
    compile: bool | str = sc.opt(
        "auto",
        "torch.compile the ops and model: auto (off: it did not pay on our recipes) | true (CUDA) | false",
        _compile,
    )
    eval_batch_size: int = sc.opt(1024, "images per evaluation batch", lambda v, p: sc.as_int(v, p, 1, 1 << 20))
    objective: str = sc.opt(
        "classify",
        "classify | masked-modeling (vit, bert)",
        lambda v, p: sc.as_choice(v, p, ("classify", "masked-modeling")),
    )
    init_from: str | None = sc.opt(
        None, "a run (id, prefix or path) whose encoder initialises this model", sc.optional(sc.as_str)
    )
    freeze: str = sc.opt(
        "none",
        "none | encoder (train only the head: a linear probe)",
        lambda v, p: sc.as_choice(v, p, ("none", "encoder")),
    )
    seed_batch: int | str = sc.opt(
        1,
        "seeds trained together as one batched model (cnn, mlp): 1 (one after another) | N | auto; not part of the run id",
        _seed_batch,
    )


@dataclass
class EvalSpec:
    """What is measured after training, on the test split."""

    ops: list[dict] = sc.opt([], "test-time corruption grid: ops whose list values are grid axes", _ops(grid=True))
    suite: str | None = sc.opt(
        None, "a named corruption suite (mnist-c)", sc.optional(lambda v, p: sc.as_choice(v, p, tuple(SUITES)))
    )
    seed: int = sc.opt(
        0,
        "seed of the corruptions: every model sees the same corrupted test set",
        lambda v, p: sc.as_int(v, p, 0, 2**31 - 1),
    )
    test: bool = sc.opt(
        True,
        "evaluate on the test split after training; false: validation only (search trials: the test split is never read)",
        sc.as_bool,
    )


@dataclass
class Spec:
    """One experiment: data, train-time ops, model, training, evaluation, seeds."""

    name: str = sc.opt(
        "experiment",
        "names the runs (letters, digits, . _ -)",
        lambda v, p: sc.as_str(v, p, RUN_NAME_PATTERN, "letters, digits, '.', '_', '-' or '=' (at most 200)"),
    )
    seeds: list[int] = sc.opt([0], "one run per seed; seeds replicate, they do not tune", _seeds)
    data: DataSpec = field(default_factory=DataSpec)
    train_ops: list[dict] = sc.opt([], "ops applied in order to every training batch", _ops(grid=False))
    model: CNNSpec | MLPSpec | ViTSpec | BertSpec = field(default_factory=CNNSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)
    study: str | None = field(default=None, repr=False, compare=False)  # the spec file's name when it has variants
    variant: int | None = field(default=None, repr=False, compare=False)  # this variant's place in the file
    label: str | None = field(default=None, repr=False, compare=False)  # the name's variant and grid part
    trial: dict | None = field(
        default=None, repr=False, compare=False
    )  # the search trial a run answers (study/search.py)

    def __post_init__(self) -> None:
        if self.train.objective == "masked-modeling" and not self.model.transformer:
            raise SpecError(f"train.objective: masked-modeling needs model.arch vit or bert, got {self.model.arch}")
        if self.train.freeze == "encoder" and not self.train.init_from:
            raise SpecError("train.freeze: encoder needs train.init_from (a pretrained run)")
        for name in op_registry.TOKEN_OPS:
            where = [i for i, o in enumerate(self.train_ops) if o["op"] == name]
            if len(where) > 1:
                raise SpecError(f"train_ops[{where[1]}].op: only one {name} op per spec, got {len(where)}")
        if self.train.objective == "masked-modeling" and not any(o["op"] == "tokens" for o in self.train_ops):
            raise SpecError(
                "train.objective: masked-modeling needs a tokens op in train_ops, e.g. {op: tokens, rate: 0.75, action: drop}"
            )
        if isinstance(self.train.seed_batch, int) and self.train.seed_batch > 1:
            why = seed_batch_unsupported(self)
            if why:
                raise SpecError(f"train.seed_batch: seeds can be batched {why}; use 1 or auto")
        uses_tokens = [i for i, o in enumerate(self.train_ops) if o["op"] in op_registry.TOKEN_OPS]
        if uses_tokens and not self.model.transformer:
            i = uses_tokens[0]
            raise SpecError(
                f"train_ops[{i}].op: {self.train_ops[i]['op']} needs model.arch vit or bert, got {self.model.arch}"
            )
        _check_text_or_images(self)
        adaptive_spec.check_spec(self.train_ops, objective=self.train.objective, val_fraction=self.data.val_fraction)

    def to_dict(self) -> dict:
        body = dataclasses.asdict(self)
        for key in ("study", "variant", "label", "trial"):
            body.pop(key)
        body["train"].pop("seed_batch")  # how seeds are executed, not what a run is: not in its spec or id
        if body["eval"]["test"]:
            body["eval"].pop("test")  # the default: specs written before it existed keep their ids
        return body

    def group_hash(self) -> str:
        """8 hex digits naming everything but the seeds: runs sharing it form a group."""
        body = self.to_dict()
        body.pop("seeds")
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:8]


def _check_text_or_images(spec: Spec) -> None:
    """A text dataset needs the text model and text ops; an image dataset the image ones."""
    name = spec.data.dataset
    text = datasets.is_text(name)
    bert = spec.model.reads == "text"
    if text and not bert:
        raise SpecError(f"model.arch: {name} is a text dataset; use model.arch bert, got {spec.model.arch}")
    if bert and not text:
        raise SpecError(
            f"model.arch: bert reads text; {name} is an image dataset (text: kjv-mini, fortunes, text:DIR, text:FILE.jsonl)"
        )
    kind = "a text" if text else "an image"
    for i, op in enumerate(spec.train_ops):
        if not text:
            for key, default in op_registry.TEXT_ONLY.items():
                if op["op"] == "tokens" and op[key] != default:
                    raise SpecError(f"train_ops[{i}].{key}: needs a text dataset; {name} is an image dataset")
        elif op["op"] not in op_registry.TOKEN_OPS:
            raise SpecError(f"train_ops[{i}].op: {op['op']} works on images; {name} is a text dataset (use tokens)")
    for i, op in enumerate(spec.eval.ops):
        if (op["op"] == "tokens") != text:
            fix = "use tokens" if text else "tokens at test time needs a text dataset"
            raise SpecError(f"eval.ops[{i}].op: {op['op']} does not apply to {kind} dataset ({name}); {fix}")
    if text and spec.eval.suite:
        raise SpecError(f"eval.suite: {spec.eval.suite} corrupts images; {name} is a text dataset")
    if text and spec.train.objective == "masked-modeling":
        action = next(o["action"] for o in spec.train_ops if o["op"] == "tokens")
        if action == "drop":
            raise SpecError(
                "train_ops: masked-modeling on text predicts the chosen pieces; use action mlm or mask, not drop"
            )


def seed_batch_unsupported(spec: Spec) -> str | None:
    """Why this spec's seeds cannot be trained as one batched model, or None if they can."""
    t = spec.train
    if not spec.model.seed_batch:
        stackable = " or ".join(sorted(arch for arch, cls in MODEL_SPECS.items() if cls.seed_batch))
        return f"for model.arch {stackable} only, got {spec.model.arch}"
    if t.objective != "classify" or t.init_from or t.freeze != "none" or t.compile is True:
        return "only for plain classification (no masked-modeling, init_from, freeze or compile: true)"
    adaptive = adaptive_spec.uses_model(spec.train_ops)
    if adaptive:
        return f"without ops that follow the model, as {adaptive[0]} does (it keeps state per run)"
    return None


SECTIONS = {"data": DataSpec, "train": TrainSpec, "eval": EvalSpec}


def build_section(cls: type, raw: Any, path: str) -> Any:
    """Check a mapping against a section dataclass and build it, defaults filled in."""
    raw = sc.need_mapping(raw, path)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    sc.reject_unknown(raw, list(fields), path)
    values = {key: fields[key].metadata["check"](value, sc.join(path, key)) for key, value in raw.items()}
    return cls(**values)


def _build_model(raw: Any) -> Any:
    raw = sc.need_mapping(raw, "model")
    arch = sc.as_choice(raw.get("arch", "cnn"), "model.arch", tuple(MODEL_SPECS))
    return build_section(MODEL_SPECS[arch], raw, "model")


def _point_to_the_section(raw: dict, allowed: list[str]) -> None:
    """A section key written at the top level (`epochs: 5`) gets pointed to its section."""
    sections = [*SECTIONS.items(), *(("model", cls) for cls in MODEL_SPECS.values())]
    for key in raw:
        if key in allowed or sc.suggest(key, allowed):
            continue
        owner = next((name for name, cls in sections if key in {f.name for f in dataclasses.fields(cls)}), None)
        if owner:
            raise SpecError(f"{key}: unknown key at the top level; did you mean '{owner}.{key}'?")


def resolve(raw: Any, default_name: str = "experiment") -> Spec:
    """Validate a plain mapping (as loaded from YAML) into a complete Spec."""
    raw = sc.need_mapping(raw, "spec")
    top = {f.name: f for f in dataclasses.fields(Spec) if f.name not in ("study", "variant", "label", "trial")}
    _point_to_the_section(raw, [*top, "variants"])
    sc.reject_unknown(raw, [*top, "variants"], "")
    if "variants" in raw:
        raise SpecError("variants: only allowed at the top of a spec file (masklab train expands them)")
    values: dict[str, Any] = {"name": default_name}
    for key, value in raw.items():
        if key in SECTIONS:
            values[key] = build_section(SECTIONS[key], value if value is not None else {}, key)
        elif key == "model":
            values[key] = _build_model(value if value is not None else {})
        else:
            values[key] = top[key].metadata["check"]([] if value is None and key == "train_ops" else value, key)
    return Spec(**values)


# --- YAML -----------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses duplicate keys instead of keeping the last one silently."""


def _no_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            line = key_node.start_mark.line + 1
            raise SpecError(f"line {line}: key {sc.show(key)} appears twice; keep one")
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def parse_yaml_text(text: str, source: str) -> Any:
    try:
        return safeyaml.load(text, _StrictLoader)  # safe_load with limits on aliases and nesting
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        if "\\t" in str(exc.problem) or "tab" in str(exc.problem):
            raise SpecError(f"{where}: tab character; YAML indents with spaces, replace the tabs") from None
        raise SpecError(f"{where}: not valid YAML ({exc.problem}); check the indentation and colons") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: not valid YAML ({exc}); check the file") from None


def read_spec_file(path: str | Path) -> Any:
    """The YAML mapping in a spec file, or a SpecError saying why there is none."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path}: a folder, not a spec file; pass the path of a YAML spec (see experiments/)")
    if not path.is_file():
        raise UsageError(f"{path}: no such spec file; pass the path of a YAML spec (see experiments/)")
    if path.stat().st_size > MAX_SPEC_BYTES:
        raise SpecError(f"{path}: {path.stat().st_size:,} bytes; a spec is a small text file (at most 1 MB)")
    data = path.read_bytes()
    if b"\x00" in data:
        raise SpecError(f"{path}: binary data (NUL bytes), not a YAML spec; pass a text .yaml file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (bad byte at offset {exc.start}); pass a text .yaml file") from None
    raw = parse_yaml_text(text, str(path))
    if raw is None:
        raise SpecError(
            f"{path}: the spec is empty; write a mapping with at least `name:` (see experiments/quickstart.yaml)"
        )
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: the top level must be a mapping (name:, data:, model:, ...), got {sc.kind_of(raw)}")
    return raw


# --- --set overrides ------------------------------------------------------------------

_PATH_TOKEN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _split_path(path: str, where: str | None = None) -> list[str | int]:
    where = where or f"--set {path}"
    tokens: list[str | int] = []
    for part in path.split("."):
        pos = 0
        while pos < len(part):
            m = _PATH_TOKEN.match(part, pos)
            if not m or (pos > 0 and m.group(1)):
                raise UsageError(f"{where}: bad key path; write it as section.key or train_ops[0].rate")
            tokens.append(m.group(1) if m.group(1) else int(m.group(2)))
            pos = m.end()
        if not part:
            raise UsageError(f"{where}: bad key path; write it as section.key or train_ops[0].rate")
    return tokens


def key_path_tokens(path: str, where: str) -> tuple[str | int, ...]:
    """`train_ops[0].rate` as ("train_ops", 0, "rate"); a UsageError naming `where` if malformed."""
    return tuple(_split_path(path.strip(), where))


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one `key.path=value` to a raw spec mapping; the value is read as YAML."""
    if "=" not in assignment:
        raise UsageError(f"--set {assignment}: expected key.path=value, e.g. --set train.lr=0.01")
    path, text = assignment.split("=", 1)
    value = parse_yaml_text(text, f"--set {path}") if text.strip() else None
    set_path(raw, path.strip(), value, f"--set {path}")


def set_path(raw: dict, path: str, value: Any, where: str) -> None:
    """Set `train_ops[0].rate`-style key paths in a raw mapping, creating sections as needed."""
    tokens = _split_path(path)
    node: Any = raw
    for i, token in enumerate(tokens[:-1]):
        here = ".".join(map(str, tokens[: i + 1]))
        if isinstance(token, int):
            if not isinstance(node, list) or token >= len(node):
                parent = ".".join(map(str, tokens[:i]))
                size = f"{len(node)} item{'s' * (len(node) != 1)}" if isinstance(node, list) else "no list"
                raise UsageError(
                    f"{where}: {parent} has {size}, so no item [{token}]; set the whole list: --set '{parent}=[...]'"
                )
            node = node[token]
        else:
            if not isinstance(node, dict):
                raise UsageError(f"{where}: {here} is not a mapping")
            if node.get(token) is None:
                node[token] = {}
            node = node[token]
    last = tokens[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last > len(node):
            raise UsageError(f"{where}: no list item {last} to set")
        if last == len(node):
            node.append(value)
        else:
            node[last] = value
    else:
        if not isinstance(node, dict):
            raise UsageError(f"{where}: the parent of {last} is not a mapping")
        node[last] = value


def load_study(
    path: str | Path, overrides: list[str] | tuple[str, ...] = (), only: list[str] | None = None
) -> list[Spec]:
    """A spec file as the specs it describes. With `variants: {label: {key.path: value}}`
    there is one spec per variant, named `<name>-<label>`: the base, then the variant's
    settings, then the command line's `--set`s. `only` keeps the named variants."""
    raw = read_spec_file(path)
    return expand_variants(raw, name_of(raw, path), overrides, only, str(path))


def expand_variants(
    raw: dict, name: str, overrides: list[str] | tuple[str, ...] = (), only: list[str] | None = None, source: str = ""
) -> list[Spec]:
    """The specs of a raw spec mapping: one per variant (or the spec itself), with the
    command line's `--set`s applied last."""
    raw = copy.deepcopy(raw)
    for section in STUDY_SECTIONS:  # settings of the study, not of its runs (study/search.py, study/sequential_plan.py)
        raw.pop(section, None)
    variants = raw.pop("variants", None)
    if variants is None:
        if only:
            raise UsageError(f"--variant: {source or 'the spec'} has no variants")
        for assignment in overrides:
            apply_override(raw, assignment)
        return [resolve(raw, default_name=name)]
    variants = sc.need_mapping(variants, "variants")
    if not variants:
        raise SpecError(
            "variants: must name at least one variant, e.g. variants: {dynamic: {train_ops[0].mode: dynamic}}"
        )
    for label in only or []:
        if label not in variants:
            raise UsageError(
                f"--variant {label}: no such variant{sc.suggest(label, list(variants))} (variants: {', '.join(map(str, variants))})"
            )
    specs = []
    for label, settings in variants.items():
        if only and label not in only:
            continue
        sc.as_str(str(label), "variants", NAME_PATTERN, "a name of letters, digits, '.', '_' or '-'")
        body = copy.deepcopy(raw)
        for key, value in sc.need_mapping(settings if settings is not None else {}, f"variants.{label}").items():
            set_path(body, str(key), value, f"variants.{label}.{key}")
        for assignment in overrides:
            apply_override(body, assignment)
        body["name"] = f"{name}-{label}"
        try:
            spec = resolve(body, default_name=name)
        except SpecError as exc:
            raise SpecError(f"variants.{label}: {exc}") from None
        specs.append(dataclasses.replace(spec, study=name, variant=list(variants).index(label), label=str(label)))
    return specs


def load_spec(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Spec:
    """Read, override and validate a spec file (its first variant, if it has variants)."""
    return load_study(path, overrides)[0]


def name_of(raw: dict, path: str | Path) -> str:
    """A spec file's name: its `name:`, else its file name."""
    return raw.get("name") or _default_name(Path(path))


def _default_name(path: Path) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", path.stem).strip("-._") or "experiment"
    return stem[:64]


def spec_from_dict(body: dict) -> Spec:
    """Rebuild a Spec from a resolved dict (a run folder's spec.yaml)."""
    return resolve(copy.deepcopy(body))


def dump_yaml(spec: Spec) -> str:
    return yaml.safe_dump(spec.to_dict(), sort_keys=False, default_flow_style=None, width=100)


def diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Key paths whose values differ between two resolved spec dicts."""
    keys: list[str] = []
    for key in sorted(set(a) | set(b), key=str):
        path = sc.join(prefix, key)
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys.extend(diff_keys(va, vb, path))
        elif (
            isinstance(va, list)
            and isinstance(vb, list)
            and len(va) == len(vb)
            and all(isinstance(x, dict) for x in va + vb)
        ):
            for i, (xa, xb) in enumerate(zip(va, vb)):
                keys.extend(diff_keys(xa, xb, f"{path}[{i}]"))
        elif va != vb:
            keys.append(path)
    return keys


def flatten(body: Any, prefix: str = "") -> dict[str, Any]:
    """A resolved spec dict as {key path: leaf value}, for compare's columns."""
    if isinstance(body, dict):
        out: dict[str, Any] = {}
        for key, value in body.items():
            out.update(flatten(value, sc.join(prefix, key)))
        return out
    if isinstance(body, list) and body and all(isinstance(x, dict) for x in body):
        out = {}
        for i, value in enumerate(body):
            out.update(flatten(value, f"{prefix}[{i}]"))
        return out
    return {prefix: body}
