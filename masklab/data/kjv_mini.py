"""`kjv-mini`: 2,000 King James Bible verses in 5 groups of books, shipped in
data/kjv-mini.jsonl."""

from __future__ import annotations

from pathlib import Path

from masklab.data.dataset import Lookup
from masklab.data.text import TextCorpus, read_jsonl
from masklab.errors import DataError

EMBEDDED = Path(__file__).resolve().parents[2] / "data"


def load(name: str, lookup: Lookup) -> TextCorpus:
    path = EMBEDDED / "kjv-mini.jsonl"
    if not path.is_file():
        raise DataError(f"{path}: the embedded dataset is missing; reinstall masklab from its source tree")
    return read_jsonl(path, name)


def inputs(name: str, lookup: Lookup) -> list[Path]:
    return [EMBEDDED / "kjv-mini.jsonl"]
