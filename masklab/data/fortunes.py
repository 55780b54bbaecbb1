"""`fortunes`: Debian's fortunes package (`/usr/share/games/fortunes`), 8 topical
categories, one entry per text."""

from __future__ import annotations

import os
from pathlib import Path

from masklab.data.dataset import Lookup
from masklab.data.text import MAX_TEXT_CHARS, TextCorpus, decode, read_regular, split_corpus
from masklab.errors import DataError

FORTUNES_DIR = Path("/usr/share/games/fortunes")
# The topical categories with at least 500 entries. Left out: the grab-bags (cookie,
# miscellaneous, fortunes, platitudes, wisdom), whose names say nothing about their
# content, and the single-voice collections (zippy, knghtbrd), which a classifier
# would tell apart by style; the smaller files give too few texts per class.
FORTUNE_CATEGORIES = ("computers", "definitions", "men-women", "people", "politics", "science", "songs-poems", "work")


def fortune_entries(text: str) -> list[str]:
    """The entries of one fortune file: blocks separated by lines holding only `%`."""
    entries, current = [], []
    for line in text.splitlines():
        if line.strip() == "%":
            entries.append("\n".join(current).strip())
            current = []
        else:
            current.append(line)
    entries.append("\n".join(current).strip())
    return [e for e in entries if e]


def _fortunes_folder(root: str | None) -> Path:
    """data.root when given (it must hold every category), else the usual places."""
    if root:
        if not Path(root).is_dir():
            raise DataError(
                f"data.root {root}: no such folder; fix the path, or remove data.root to search the usual places"
            )
        missing = [c for c in FORTUNE_CATEGORIES if not (Path(root) / c).is_file()]
        if missing:
            raise DataError(
                f"data.root {root}: no fortune file {missing[0]!r}; it needs {', '.join(FORTUNE_CATEGORIES)}"
            )
        return Path(root)
    folders = []
    if os.environ.get("MASKLAB_DATA"):
        folders.append(Path(os.environ["MASKLAB_DATA"]) / "fortunes")
    folders.append(FORTUNES_DIR)
    for folder in folders:
        if all((folder / c).is_file() for c in FORTUNE_CATEGORIES):
            return folder
    raise DataError(
        f"fortunes: not found in {', '.join(map(str, folders))}; apt-get install fortunes, or set data.root to a folder of fortune files"
    )


def load(name: str, lookup: Lookup) -> TextCorpus:
    """The 8 categories of FORTUNE_CATEGORIES, one text per entry. An entry found in two
    categories is left out (its label is ambiguous); a repeat within one is kept once."""
    folder = _fortunes_folder(lookup.root)
    by_text: dict[str, set[str]] = {}
    for category in FORTUNE_CATEGORIES:
        path = folder / category
        for entry in fortune_entries(decode(read_regular(path)[0], str(path))):
            by_text.setdefault(entry[:MAX_TEXT_CHARS], set()).add(category)
    texts = [t for t, cats in by_text.items() if len(cats) == 1]
    labels = [next(iter(by_text[t])) for t in texts]
    return split_corpus("fortunes", texts, labels, [None] * len(texts), str(folder), f"fortunes ({folder})")


def inputs(name: str, lookup: Lookup) -> list[Path]:
    folder = _fortunes_folder(lookup.root)
    return [folder / c for c in FORTUNE_CATEGORIES]
