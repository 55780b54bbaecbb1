"""KEY=VALUE arguments, read by one rule wherever masklab takes them: the tags of
`masklab tag RUN KEY=VALUE...`, the filters of `masklab runs --tag KEY=VALUE` and of
`masklab compare --by ... --where KEY=VALUE`.

The rule:

- the text splits at its first `=`: `a=b=c` is the key `a` with the value `b=c`;
- spaces around the key and around the value are dropped: `' a = b '` is `a=b`;
- the key is one or more letters, digits, `.`, `_` or `-` (a key path such as
  `train_ops[0].rate` may hold `[` and `]` too); `=b`, `a b=c` and a text without `=`
  are errors;
- the value is the rest, as written (quotes are the shell's business; `--where` then
  reads it as YAML); `a=` is the empty value;
- a key given twice keeps its last value (`a=1 a=2` is `a=2`), as a later `--set`
  overrides an earlier one;
- no texts at all is no pairs.

Errors are one line that names the text and shows the form that works (UsageError,
exit 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from masklab.errors import UsageError


@dataclass(frozen=True)
class KeyKind:
    pattern: re.Pattern
    words: str  # what a key may hold, for the error line


NAME = KeyKind(re.compile(r"[A-Za-z0-9_.-]+"), "a key of letters, digits, '.', '_' or '-'")
PATH = KeyKind(re.compile(r"[A-Za-z0-9_.\[\]-]+"), "a key path such as train.epochs or train_ops[0].rate")


def split_key_value(text: str, option: str, example: str, kind: KeyKind = NAME) -> tuple[str, str]:
    """`text` as (key, value) by the rule above; `option` names where it came from
    ('--tag', or '' for a positional argument) and `example` a text that works."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not kind.pattern.fullmatch(key):
        shown = f"{option} {text}" if option else text
        raise UsageError(f"{shown}: expected KEY=VALUE with {kind.words}, e.g. {example}")
    return key, value.strip()


def parse_key_values(texts: list[str], option: str, example: str, kind: KeyKind = NAME) -> dict[str, str]:
    """Many KEY=VALUE texts as one mapping, in the order given."""
    pairs: dict[str, str] = {}
    for text in texts:
        key, value = split_key_value(text, option, example, kind)
        pairs[key] = value
    return pairs
