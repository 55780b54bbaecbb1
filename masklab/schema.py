"""Typed checking of plain YAML values, shared by the spec and the op registry.

Every check names the key path, the value it got and what is allowed, so that a user
reads one line and knows what to fix: `train.lr: must be a number > 0, got -1`.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import field
from typing import Any

from masklab.errors import SpecError

_FLOAT_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def show(value: Any) -> str:
    """A value as the user wrote it, short enough for a one-line error."""
    text = repr(value) if isinstance(value, str) else str(value)
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    return text if len(text) <= 60 else text[:57] + "..."


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def suggest(key: str, allowed: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def reject_unknown(raw: dict, allowed: Sequence[str], path: str) -> None:
    for key in raw:
        if key not in allowed:
            hint = suggest(key, allowed) or f" (allowed: {', '.join(allowed)})"
            raise SpecError(f"{join(path, str(key))}: unknown key{hint}")


def need_mapping(value: Any, path: str) -> dict:
    if not isinstance(value, dict):
        raise SpecError(f"{path}: must be a mapping, got {kind_of(value)} {show(value)}")
    return value


def as_float(
    value: Any,
    path: str,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
) -> float:
    """A finite float in [lo, hi] (or (lo, hi] when lo_open). Numeric strings such as
    `3e-3` are accepted: PyYAML reads them as strings, which surprises everyone."""
    if isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{path}: must be a number, got {kind_of(value)} {show(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise SpecError(f"{path}: must be a finite number, got {show(value)}")
    below = value <= lo if (lo is not None and lo_open) else (lo is not None and value < lo)
    if below or (hi is not None and value > hi):
        raise SpecError(f"{path}: must be {_range_text(lo, hi, lo_open)}, got {show(value)}")
    return value


def as_int(value: Any, path: str, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{path}: must be an integer, got {kind_of(value)} {show(value)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise SpecError(f"{path}: must be an integer {_range_text(lo, hi)}, got {value}")
    return value


def as_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{path}: must be true or false, got {show(value)}")
    return value


def as_str(value: Any, path: str, pattern: str | None = None, what: str = "") -> str:
    if not isinstance(value, str) or not value:
        raise SpecError(f"{path}: must be a non-empty string, got {show(value)}")
    if pattern and not re.fullmatch(pattern, value):
        raise SpecError(f"{path}: must be {what}, got {show(value)}")
    return value


def as_choice(value: Any, path: str, choices: Sequence[str]) -> str:
    if value not in choices or not isinstance(value, str):
        hint = suggest(str(value), choices) if isinstance(value, str) else ""
        raise SpecError(f"{path}: must be one of {', '.join(choices)}, got {show(value)}{hint}")
    return value


def as_list(value: Any, path: str, min_len: int = 0) -> list:
    if not isinstance(value, list):
        raise SpecError(f"{path}: must be a list, got {kind_of(value)} {show(value)}")
    if len(value) < min_len:
        raise SpecError(f"{path}: must hold at least {min_len} item(s), got {len(value)}")
    return value


def _range_text(lo: float | None, hi: float | None, lo_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f"<= {hi:g}"
    return "a number"


def opt(default: Any, doc: str, check: Callable[[Any, str], Any]) -> Any:
    """A spec field: its default, a one-line doc and the check applied to user values."""
    meta = {"doc": doc, "check": check}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


def optional(check: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    return lambda v, p: None if v is None else check(v, p)
