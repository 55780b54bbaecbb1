"""The closed table of dataset sources, without I/O: what `data.dataset` may name, what
each holds (images or text) and its doc. The spec checks names against it; the data
stage (masklab/data/registry.py) reads them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    name: str  # the name itself, or a prefix such as `idx:` followed by a path
    kind: str  # images | text
    doc: str

    @property
    def prefix(self) -> bool:
        return self.name.endswith(":")

    def matches(self, dataset: str) -> bool:
        return dataset.startswith(self.name) and len(dataset) > len(self.name) if self.prefix else dataset == self.name


SOURCES = (
    Source("mnist-mini", "images", "5,000 real MNIST digits shipped in data/ (the default; works offline)"),
    Source("mnist", "images", "MNIST from local IDX files or a checked download"),
    Source(
        "fashion-mnist", "images", "Fashion-MNIST from local IDX files (Debian: dataset-fashion-mnist) or a download"
    ),
    Source("digits", "images", "scikit-learn's 8x8 digits (1,797 images)"),
    Source("kjv-mini", "text", "five groups of Bible books, embedded"),
    Source("fortunes", "text", "Debian's fortunes: 8 categories of short texts"),
    Source("idx:", "images", "idx:DIR, a folder of the four IDX files"),
    Source("npz:", "images", "npz:FILE, what masklab mask/noise --out writes"),
    Source("text:", "text", "text:DIR (a folder per class of .txt files) or text:FILE.jsonl"),
)
NAMES = tuple(s.name for s in SOURCES if not s.prefix)


def source(dataset: str) -> Source | None:
    """The table entry a dataset name falls under, or None."""
    return next((s for s in SOURCES if s.matches(dataset)), None)


def is_text(dataset: str) -> bool:
    found = source(dataset)
    return found is not None and found.kind == "text"
