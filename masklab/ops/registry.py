"""The closed registry of ops: names, parameters, defaults and checks. No torch here.

A spec lists ops as mappings (`{op: patch, rate: 0.25, size: 4, mode: dynamic}`);
`validate` turns one into a complete, checked mapping. Each entry names the function
that carries the op out (`apply="masks.patch"`: `patch` in ops/masks.py, given an
`OpCall`, ops/call.py); `pipeline.py` resolves every name when it is imported, so an
op without its code cannot be registered, and the CLI's `mask`/`noise` options and help
are generated from this table.

Conventions, fixed for all ops: `p` is the probability of applying an op to a sample;
`rate` is a fraction of units (pixels, patches, rows, tokens) and `area` a fraction of
pixels; images are floats in [0, 1] and noise strengths are in those units.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from masklab import schema as sc
from masklab.errors import SpecError
from masklab.ops import adaptive_spec

REQUIRED = object()
MODES = ("dynamic", "static", "scheduled")
PLACEMENTS = ("random", "salient", "background")
PLACED = ("patch", "rect")  # the ops that take `placement`
FILLS = ("zero", "mean", "uniform", "gaussian")
SCHEDULES = ("constant", "linear", "cosine", "step")
TOKEN_OPS = ("tokens", "attention")
NUMERIC = ("fraction", "nonneg", "positive", "real", "int")
FAMILIES = ("mask", "soft", "noise", "transform", "token", "attention")  # what the pipeline does around an op
TEXT_UNITS = ("token", "word", "span")
TEXT_ONLY = {
    "unit": "token",
    "span_p": 0.2,
    "max_span": 10,
    "rarity": 0.0,
}  # tokens params that need text, at their defaults


@dataclass(frozen=True)
class Param:
    """One op parameter. `varies`: may be a per-sample range `[lo, hi]` or a schedule in
    train_ops, and a list of grid values in eval.ops."""

    kind: str  # fraction | nonneg | positive | real | int | choice | bool | pair | box | fill
    default: Any = REQUIRED
    doc: str = ""
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    varies: bool = False


@dataclass(frozen=True)
class OpDef:
    """One row of the op table: the name, its parameters and docs, and the code that applies it."""

    name: str
    family: str  # one of FAMILIES
    doc: str
    params: dict[str, Param]
    strength: str | None = None  # the parameter that `severity` sets
    severities: tuple[float, ...] = ()
    example: str = ""
    extra: dict = field(default_factory=dict)
    # the code: `module.function` in masklab/ops/ (resolved once by ops/pipeline.py; see ops/call.py)
    apply: str = ""  # carries the op out on a batch of images
    text_apply: str | None = None  # ... on token ids (ops that apply to text)
    measure: str | None = None  # the quantity its setting names, for masklab noise's requested-vs-realized table


def _rate(doc: str = "fraction of units masked") -> Param:
    return Param("fraction", REQUIRED, doc, 0.0, 1.0, varies=True)


def _placement(what: str) -> dict[str, Param]:
    return {
        "placement": Param(
            "choice",
            "random",
            f"random (keyed) | salient ({what} on what the model relies on most, AttMask) | background (on what it relies on least, KeepAugment)",
            choices=PLACEMENTS,
        ),
        "refresh": Param(
            "choice",
            "epoch",
            "salient/background: saliency from each example's last training step (epoch, nearly free) or a fresh pass every step (batch)",
            choices=("epoch", "batch"),
        ),
    }


OPS: dict[str, OpDef] = {
    op.name: op
    for op in [
        OpDef(
            "pixel",
            "mask",
            "element-wise dropout of pixels (x * m)",
            {
                "rate": _rate("fraction of pixels masked"),
                "count": Param(
                    "choice",
                    "exact",
                    "exact: round(rate*n) pixels per sample; bernoulli: each pixel with probability rate",
                    choices=("exact", "bernoulli"),
                ),
            },
            example="{op: pixel, rate: 0.3}",
            apply="masks.pixel",
        ),
        OpDef(
            "patch",
            "mask",
            "an exact count of whole size x size patches per sample (MAE-style)",
            {
                "rate": _rate("fraction of patches masked (round(rate * patches))"),
                "size": Param("int", 4, "patch side in pixels; must divide the image side", 1, 256),
                **_placement("patches"),
            },
            example="{op: patch, rate: 0.5, size: 4}",
            apply="masks.patch",
        ),
        OpDef(
            "block",
            "mask",
            "BEiT-style blockwise masking of patches up to an exact count",
            {
                "rate": _rate("fraction of patches masked"),
                "size": Param("int", 4, "patch side in pixels; must divide the image side", 1, 256),
                "min_patches": Param("int", 4, "smallest block, in patches", 1, 4096),
                "aspect": Param("pair", [0.3, 3.3], "block aspect ratio range (log-uniform)", 0.01, 100.0),
            },
            example="{op: block, rate: 0.4, size: 4}",
            apply="masks.block",
        ),
        OpDef(
            "rect",
            "mask",
            "random erasing / cutout boxes; a box that does not fit is clamped, never skipped",
            {
                "area": Param(
                    "pair", [0.02, 0.33], "box area as a fraction of the image, sampled per box", 0.0, 1.0, varies=True
                ),
                "aspect": Param("pair", [0.3, 3.3], "box aspect ratio range (log-uniform)", 0.01, 100.0),
                "n": Param("int", 1, "boxes per sample", 1, 64),
                **_placement("boxes"),
            },
            example="{op: rect, area: [0.1, 0.3]}",
            apply="masks.rect",
        ),
        OpDef(
            "stripes",
            "mask",
            "SpecAugment-style bands of rows and/or columns, an exact count of lines",
            {
                "rate": _rate("fraction of rows (or columns) masked"),
                "axis": Param("choice", "rows", "rows | cols | both", choices=("rows", "cols", "both")),
                "max_width": Param("int", 4, "widest band, in lines", 1, 1024),
            },
            example="{op: stripes, rate: 0.25, axis: rows, max_width: 4}",
            apply="masks.stripes",
        ),
        OpDef(
            "region",
            "mask",
            "a fixed, known region: the same box in every sample",
            {
                "box": Param("box", REQUIRED, "[top, left, height, width] in pixels"),
            },
            example="{op: region, box: [0, 0, 14, 28]}",
            apply="masks.region",
        ),
        OpDef(
            "soft",
            "soft",
            "a soft mask: x * m with m in [0, 1] per pixel or per size x size patch, m = 1 - strength * u (u keyed uniform) or 1 - strength",
            {
                "strength": Param(
                    "fraction", REQUIRED, "how much of a unit is taken away: 1 - m", 0.0, 1.0, varies=True
                ),
                "size": Param("int", 1, "unit side in pixels (1: per pixel); must divide the image side", 1, 256),
                "dist": Param(
                    "choice",
                    "uniform",
                    "uniform: m = 1 - strength * u, u keyed per unit | constant: m = 1 - strength everywhere",
                    choices=("uniform", "constant"),
                ),
            },
            example="{op: soft, strength: 0.5, size: 4}",
            apply="masks.soft",
        ),
        OpDef(
            "gaussian",
            "noise",
            "additive Gaussian noise N(mean, sigma)",
            {
                "sigma": Param("nonneg", REQUIRED, "standard deviation, in [0, 1] pixel units", 0.0, 10.0, varies=True),
                "mean": Param("real", 0.0, "mean of the noise", -10.0, 10.0),
            },
            strength="sigma",
            severities=(0.08, 0.12, 0.18, 0.26, 0.38),
            example="{op: gaussian, sigma: 0.2}",
            apply="noise.gaussian",
            measure="noise.measure_std",
        ),
        OpDef(
            "salt_pepper",
            "noise",
            "impulse noise: pixels set to 1 (salt) or 0 (pepper)",
            {
                "amount": Param("fraction", REQUIRED, "fraction of pixels hit", 0.0, 1.0, varies=True),
                "salt_ratio": Param("fraction", 0.5, "share of the hit pixels set to 1", 0.0, 1.0),
                "count": Param(
                    "choice",
                    "exact",
                    "exact: round(amount*n) pixels, an exact salt share; bernoulli: per-pixel draws (scikit-image's s&p)",
                    choices=("exact", "bernoulli"),
                ),
            },
            strength="amount",
            severities=(0.03, 0.06, 0.09, 0.17, 0.27),
            example="{op: salt_pepper, amount: 0.1}",
            apply="noise.salt_pepper",
            measure="noise.measure_hits",
        ),
        OpDef(
            "shot",
            "noise",
            "Poisson (shot) noise: Poisson(c * x) / c; smaller c is noisier",
            {
                "c": Param("positive", REQUIRED, "photons per unit intensity", 0.0, 1e6, varies=True),
            },
            strength="c",
            severities=(60.0, 25.0, 12.0, 5.0, 3.0),
            example="{op: shot, c: 12}",
            apply="noise.shot",
            measure="noise.measure_photons",
        ),
        OpDef(
            "speckle",
            "noise",
            "multiplicative noise: x + x * N(0, sigma)",
            {
                "sigma": Param("nonneg", REQUIRED, "standard deviation of the multiplier", 0.0, 10.0, varies=True),
            },
            strength="sigma",
            severities=(0.15, 0.2, 0.35, 0.45, 0.6),
            example="{op: speckle, sigma: 0.2}",
            apply="noise.speckle",
            measure="noise.measure_relative_std",
        ),
        OpDef(
            "uniform",
            "noise",
            "additive uniform noise on [-width/2, width/2]",
            {
                "width": Param("nonneg", REQUIRED, "width of the interval", 0.0, 10.0, varies=True),
            },
            example="{op: uniform, width: 0.2}",
            apply="noise.uniform",
            measure="noise.measure_width",
        ),
        OpDef(
            "rotate",
            "transform",
            "rotation about the centre, direction chosen per image (MNIST-C rotate)",
            {"degrees": Param("nonneg", REQUIRED, "rotation angle in degrees", 0.0, 180.0)},
            strength="degrees",
            severities=(11.46, 22.92, 34.38, 45.84, 57.3),
            example="{op: rotate, degrees: 22.9}",
            apply="transforms.rotate",
        ),
        OpDef(
            "shear",
            "transform",
            "horizontal shear about the centre, direction chosen per image (MNIST-C shear)",
            {"degrees": Param("nonneg", REQUIRED, "shear angle in degrees", 0.0, 80.0)},
            strength="degrees",
            severities=(11.46, 22.92, 34.38, 45.84, 57.3),
            example="{op: shear, degrees: 22.9}",
            apply="transforms.shear",
        ),
        OpDef(
            "scale",
            "transform",
            "content scaled about the centre (MNIST-C scale)",
            {"factor": Param("positive", REQUIRED, "scale of the content (0.7: 70%)", 0.0, 10.0)},
            strength="factor",
            severities=(0.9, 0.8, 0.7, 0.6, 0.5),
            example="{op: scale, factor: 0.7}",
            apply="transforms.scale",
        ),
        OpDef(
            "translate",
            "transform",
            "a shift along both axes, directions chosen per image (MNIST-C translate)",
            {"pixels": Param("nonneg", REQUIRED, "shift in pixels along each axis", 0.0, 1024.0)},
            strength="pixels",
            severities=(1.0, 2.0, 3.0, 4.0, 5.0),
            example="{op: translate, pixels: 3}",
            apply="transforms.translate",
        ),
        OpDef(
            "brightness",
            "transform",
            "x + delta (MNIST-C brightness on grey images)",
            {"delta": Param("real", REQUIRED, "added intensity", -1.0, 1.0)},
            strength="delta",
            severities=(0.1, 0.2, 0.3, 0.4, 0.5),
            example="{op: brightness, delta: 0.5}",
            apply="transforms.brightness",
        ),
        OpDef(
            "inverse_stripe",
            "transform",
            "the outer column bands inverted (MNIST-C stripe)",
            {"fraction": Param("fraction", 0.25, "share of the width inverted on each side", 0.0, 0.5)},
            example="{op: inverse_stripe}",
            apply="transforms.inverse_stripe",
        ),
        OpDef(
            "motion_blur",
            "transform",
            "one-sided motion blur along a direction drawn per image (MNIST-C motion_blur, ImageMagick's kernel)",
            {
                "radius": Param("int", 10, "blur length: 2 * radius + 1 taps, one per pixel of offset", 1, 64),
                "sigma": Param("positive", 3.0, "Gaussian fall-off along the blur", 0.0, 64.0),
                "angle": Param("pair", [-45.0, 45.0], "direction range in degrees", -180.0, 180.0),
            },
            example="{op: motion_blur, radius: 10, sigma: 3}",
            apply="transforms.motion_blur",
        ),
        OpDef(
            "dotted_line",
            "transform",
            "a dashed line across the image (MNIST-C dotted_line)",
            {},
            example="{op: dotted_line}",
            apply="transforms.dotted_line",
        ),
        OpDef(
            "zigzag",
            "transform",
            "a zigzag line across the image (MNIST-C zigzag)",
            {},
            example="{op: zigzag}",
            apply="transforms.zigzag",
        ),
        OpDef(
            "tokens",
            "token",
            "masks tokens (ViT patches or word pieces): mask ([MASK]), drop (removed) or mlm (BERT 80/10/10)",
            {
                "rate": _rate("fraction of tokens chosen"),
                "action": Param("choice", "mask", "mask | drop | mlm", choices=("mask", "drop", "mlm")),
                "count": Param("choice", "exact", "exact | bernoulli", choices=("exact", "bernoulli")),
                "unit": Param(
                    "choice",
                    "token",
                    "text: token | word (whole words) | span (SpanBERT spans of words)",
                    choices=TEXT_UNITS,
                ),
                "span_p": Param(
                    "fraction", 0.2, "text, unit span: p of the geometric span length in words", 0.01, 0.99
                ),
                "max_span": Param("int", 10, "text, unit span: longest span, in words", 1, 64),
                "rarity": Param(
                    "nonneg", 0.0, "text: choose a piece with weight (count + 1) ** -rarity (0: uniform)", 0.0, 4.0
                ),
            },
            example="{op: tokens, rate: 0.75, action: drop}",
            apply="tokens.tokens",
            text_apply="word_pieces.tokens",
        ),
        OpDef(
            "attention",
            "attention",
            "random attention masks: a fraction of query-key links removed in every block",
            {
                "rate": _rate("fraction of query-key links removed"),
                "per_head": Param("bool", True, "draw a separate mask for every head"),
            },
            example="{op: attention, rate: 0.1}",
            apply="tokens.attention",
            text_apply="word_pieces.attention",
        ),
    ]
}

_COMMON = {
    "p": Param("fraction", 1.0, "probability of applying the op to a sample", 0.0, 1.0),
    "mode": Param(
        "choice", "dynamic", "dynamic (fresh draw every epoch) | static (fixed per sample) | scheduled", choices=MODES
    ),
    "copies": Param("int", 1, "static mode: K fixed draws per sample, cycled over epochs", 1, 100000),
    "share_views": Param(
        "bool", False, "static mode: copy k is the draw dynamic mode makes in epoch k + 1 (off: a key space of its own)"
    ),
}
_MASK_EXTRA = {"fill": Param("fill", "zero", "zero | mean | uniform | gaussian | a number")}
_NOISE_EXTRA = {"clip": Param("bool", True, "clip the result to [0, 1]")}
_SEVERITY = Param("int", None, "1..5: the ImageNet-C strength for this noise", 1, 5)


def op_names() -> tuple[str, ...]:
    return tuple(OPS)


def allowed_params(op: OpDef, grid: bool) -> dict[str, Param]:
    params = dict(op.params)
    if op.family in ("mask", "soft"):
        params.update(_MASK_EXTRA)
    if op.family in ("noise", "transform"):
        params.update(_NOISE_EXTRA)
    if op.severities:
        params["severity"] = _SEVERITY
    params["p"] = _COMMON["p"]
    if not grid:
        params["mode"] = _COMMON["mode"]
        params["copies"] = _COMMON["copies"]
        params["share_views"] = _COMMON["share_views"]
    else:
        params.pop("placement", None)  # saliency comes from the model being trained
        params.pop("refresh", None)
    return params


def validate(raw: Any, path: str, grid: bool = False) -> dict:
    """Check one op mapping and return it complete. `grid`: an eval.ops entry, where a
    list of values is a grid axis rather than a per-sample range."""
    raw = sc.need_mapping(raw, path)
    if "op" not in raw:
        raise SpecError(f"{path}.op: required; one of {', '.join(OPS)}")
    name = sc.as_choice(raw["op"], f"{path}.op", tuple(OPS))
    op = OPS[name]
    if grid and op.family == "attention":
        raise SpecError(f"{path}.op: {name} is a training op; eval.ops takes masks, noise and (for text) tokens")
    params = allowed_params(op, grid)
    if grid and ("placement" in raw or "refresh" in raw):
        key = "placement" if "placement" in raw else "refresh"
        raise SpecError(f"{path}.{key}: placement by saliency is a training-time thing; eval.ops place at random")
    if "placement" in raw and "placement" not in params:
        raise SpecError(f"{path}.placement: for {' and '.join(PLACED)} masks only, got op {name}")
    sc.reject_unknown({k: v for k, v in raw.items() if k != "op"}, list(params), path)
    out: dict[str, Any] = {"op": name}
    strength_given = op.strength is not None and op.strength in raw
    for key, param in params.items():
        where = sc.join(path, key)
        if key == "severity" and raw.get(key) is not None and strength_given:
            raise SpecError(f"{where}: give either {op.strength} or severity, not both")
        if key == op.strength and key not in raw and raw.get("severity") is not None:
            out[key] = _strength_from_severity(op, raw["severity"], sc.join(path, "severity"))
            continue
        if key not in raw:
            if param.default is REQUIRED:
                raise SpecError(f"{where}: required for {name}, e.g. {op.example}")
            out[key] = list(param.default) if isinstance(param.default, list) else param.default
            continue
        out[key] = _check_value(raw[key], where, param, grid)
    if not grid:
        _check_mode(out, path)
        _check_placement(out, raw, path)
    if name == "soft" and out["fill"] in ("uniform", "gaussian"):
        raise SpecError(f"{path}.fill: a soft mask blends towards one value: zero, mean or a number, got {out['fill']}")
    if name == "tokens" and out["unit"] == "span" and out["count"] != "exact":
        raise SpecError(f"{path}.count: unit span draws exact counts; drop count: {out['count']}")
    if name == "tokens" and out["unit"] == "span" and out["rarity"]:
        raise SpecError(f"{path}.rarity: works with unit token or word, not span")
    return out


def _strength_from_severity(op: OpDef, severity: Any, where: str) -> Any:
    if isinstance(severity, list):
        return [op.severities[sc.as_int(s, sc.join(where, i), 1, 5) - 1] for i, s in enumerate(severity)]
    return op.severities[sc.as_int(severity, where, 1, 5) - 1]


def _check_mode(out: dict, path: str) -> None:
    shared = out.pop("share_views") if out["mode"] != "static" else False  # resolved specs keep it for static only
    if shared:
        raise SpecError(f"{path}.share_views: only mode static has views to share, got mode {out['mode']}")
    if out["copies"] > 1 and out["mode"] != "static":
        raise SpecError(
            f"{path}.copies: only mode static keeps copies, got mode {out['mode']} with copies {out['copies']}"
        )
    scheduled = any(isinstance(v, dict) and "schedule" in v for v in out.values())
    if out["mode"] == "scheduled" and not scheduled:
        raise SpecError(
            f"{path}.mode: scheduled needs a schedule on a parameter, e.g. rate: {{schedule: linear, start: 0.5, end: 0.1}}"
        )


def _check_placement(out: dict, raw: dict, path: str) -> None:
    """Resolved ops keep `placement` and `refresh` only when not random, so the ids of
    specs written before placement existed do not change."""
    if "placement" not in out:
        return
    if out["placement"] == "random":
        if "refresh" in raw:
            raise SpecError(f"{path}.refresh: only with placement salient or background")
        del out["placement"], out["refresh"]
    elif out["mode"] == "static":
        raise SpecError(
            f"{path}.placement: {out['placement']} follows the model as it trains, so a static mask cannot keep it; use mode dynamic"
        )


def _check_value(value: Any, where: str, param: Param, grid: bool) -> Any:
    if adaptive_spec.is_adaptive(value):
        if grid:
            raise SpecError(
                f"{where}: adaptive values are a training-time thing; eval.ops take numbers (a list is a grid axis)"
            )
        if not param.varies:
            raise SpecError(f"{where}: this parameter cannot adapt; only rates and strengths can")
        hi = param.hi if param.kind in ("fraction", "pair") else None
        return adaptive_spec.check(value, where, param.lo if param.lo is not None else 0.0, hi)
    if param.kind in ("pair", "box"):
        check = _check_pair if param.kind == "pair" else _check_scalar
        if grid and isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            return [check(v, sc.join(where, i), param) for i, v in enumerate(value)]  # a grid axis of ranges or boxes
        return check(value, where, param)
    if grid and isinstance(value, list):  # in eval.ops any list of scalars is a grid axis
        items = sc.as_list(value, where, min_len=1)
        return [_check_scalar(v, sc.join(where, i), param) for i, v in enumerate(items)]
    if not grid and not param.varies and isinstance(value, (list, dict)) and param.kind in NUMERIC:
        raise SpecError(
            f"{where}: takes one number (a range or schedule only where a value may vary per image), got {sc.show(value)}"
        )
    if not grid and param.varies and isinstance(value, list):
        return _check_pair(value, where, param)
    if not grid and param.varies and isinstance(value, dict):
        return _check_schedule(value, where, param)
    if value is None and param.default is None:
        return None
    return _check_scalar(value, where, param)


def _check_scalar(value: Any, where: str, param: Param) -> Any:
    kind = param.kind
    if kind in ("fraction", "nonneg", "real", "pair"):
        return sc.as_float(value, where, param.lo, param.hi)
    if kind == "positive":
        return sc.as_float(value, where, 0.0, param.hi, lo_open=True)
    if kind == "int":
        lo = int(param.lo) if param.lo is not None else None
        hi = int(param.hi) if param.hi is not None else None
        return sc.as_int(value, where, lo, hi)
    if kind == "choice":
        return sc.as_choice(value, where, param.choices)
    if kind == "bool":
        return sc.as_bool(value, where)
    if kind == "box":
        items = sc.as_list(value, where)
        if len(items) != 4:
            raise SpecError(f"{where}: must be [top, left, height, width], got {sc.show(value)}")
        top, left = (sc.as_int(v, sc.join(where, i), 0) for i, v in enumerate(items[:2]))
        height, width = (sc.as_int(v, sc.join(where, i + 2), 1) for i, v in enumerate(items[2:]))
        return [top, left, height, width]
    if kind == "fill":
        if isinstance(value, str):
            return sc.as_choice(value, where, FILLS)
        return sc.as_float(value, where, 0.0, 1.0)
    raise AssertionError(kind)


def _check_pair(value: Any, where: str, param: Param) -> list[float]:
    if not isinstance(value, list) or len(value) != 2:
        raise SpecError(f"{where}: must be a range [lo, hi], got {sc.show(value)}")
    lo, hi = (_check_scalar(v, f"{where}[{i}]", param) for i, v in enumerate(value))
    if lo > hi:
        raise SpecError(f"{where}: lo must not exceed hi, got [{lo:g}, {hi:g}]")
    return [lo, hi]


def _check_schedule(value: dict, where: str, param: Param) -> dict:
    allowed = ("schedule", "start", "end", "warmup", "over", "at")
    sc.reject_unknown(value, allowed, where)
    if "schedule" not in value:
        raise SpecError(f"{where}.schedule: required in a schedule mapping; one of {', '.join(SCHEDULES)}")
    kind = sc.as_choice(value["schedule"], f"{where}.schedule", SCHEDULES)
    if "start" not in value:
        raise SpecError(f"{where}.start: required, e.g. {{schedule: {kind}, start: 0.5, end: 0.1}}")
    start = _check_scalar(value["start"], f"{where}.start", param)
    end = _check_scalar(value.get("end", start), f"{where}.end", param)
    return {
        "schedule": kind,
        "start": start,
        "end": end,
        "warmup": sc.as_float(value.get("warmup", 0), f"{where}.warmup", 0.0),
        "over": sc.as_choice(value.get("over", "epoch"), f"{where}.over", ("epoch", "step")),
        "at": sc.as_float(value.get("at", 0.5), f"{where}.at", 0.0, 1.0),
    }


def check_image_shape(ops: list[dict], height: int, width: int, path: str) -> None:
    """Checks that need the image size: patch sizes divide it, regions lie inside it."""
    for i, op in enumerate(ops):
        where = f"{path}[{i}]"
        size = op.get("size")
        if op["op"] in ("patch", "block", "soft"):
            for s in size if isinstance(size, list) else [size]:
                if height % s or width % s:
                    raise SpecError(f"{where}.size: must divide the image size {height}x{width}, got {s}")
        if op["op"] == "region":
            top, left, h, w = op["box"]
            if top + h > height or left + w > width:
                raise SpecError(f"{where}.box: [{top}, {left}, {h}, {w}] reaches outside the {height}x{width} image")
        if op["op"] == "stripes" and op["max_width"] > max(height, width):
            raise SpecError(
                f"{where}.max_width: must be at most the image side {max(height, width)}, got {op['max_width']}"
            )


def label(op: dict, keys: tuple[str, ...] | None = None) -> str:
    """A short text naming an op and its main parameters: `patch(rate=0.25,size=4)`."""
    params = OPS[op["op"]].params
    shown = [
        k for k in (keys or params) if k in op and (keys or params[k].default is REQUIRED or op[k] != params[k].default)
    ]
    parts = [f"{k}={_short(op[k])}" for k in shown]
    if op.get("severity") is not None:
        parts.append(f"severity={op['severity']}")
    return f"{op['op']}({','.join(parts)})"


def _short(value: Any) -> str:
    if adaptive_spec.is_adaptive(value):
        return adaptive_spec.short(value)
    if isinstance(value, dict):
        return f"{value['schedule']}:{_short(value['start'])}->{_short(value['end'])}"
    if isinstance(value, list):
        return "[" + ",".join(_short(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def parse_op_text(text: str) -> dict:
    """`gaussian:sigma=0.1,0.2,0.4` or `patch:rate=0.25,0.5,size=4` as a raw op mapping.
    A comma-separated run of values after one key is a list."""
    name, _, rest = text.partition(":")
    raw: dict[str, Any] = {"op": name.strip()}
    key = None
    values: dict[str, list] = {}
    for token in filter(None, (t.strip() for t in rest.split(","))):
        if "=" in token:
            key, token = (s.strip() for s in token.split("=", 1))
            values[key] = []
        if key is None:
            raise SpecError(f"--op {text}: expected name:key=value[,value...], e.g. gaussian:sigma=0.1,0.2")
        values[key].append(_scalar_text(token))
    for key, items in values.items():
        raw[key] = items[0] if len(items) == 1 else items
    return raw


def _scalar_text(token: str) -> Any:
    lowered = token.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(token)
        except ValueError:
            pass
    return token
