"""The closed table of dataset sources, without I/O: what `data.dataset` may name, what
each holds (images or text), the module of masklab/data that reads it, and its docs (the
README's Data table is this table: `python -m masklab.datasets` prints it).

The spec checks names against it; the data stage (masklab/data/registry.py) reads a
source through its module's `load(name, lookup)` and `inputs(name, lookup)`. Adding a
dataset source is its module in masklab/data/ and one line here."""

from __future__ import annotations

from dataclasses import dataclass

_PUBLIC = (
    "IDX files in `data.root`, `$MASKLAB_DATA/{0}`, `./data/{0}`, `/usr/share/datasets/{0}`, or the download cache"
)


@dataclass(frozen=True)
class Source:
    name: str  # the name itself, or a prefix such as `idx:` followed by a path
    kind: str  # images | text
    reader: str  # the module of masklab/data that reads it: load(name, lookup), inputs(name, lookup)
    rows: tuple[tuple[str, str], ...]  # (a form of the name, what it is), for the docs

    @property
    def prefix(self) -> bool:
        return self.name.endswith(":")

    @property
    def forms(self) -> tuple[str, ...]:
        return tuple(form for form, _ in self.rows)

    def matches(self, dataset: str) -> bool:
        return dataset.startswith(self.name) and len(dataset) > len(self.name) if self.prefix else dataset == self.name


SOURCES = (
    Source("mnist-mini", "images", "mnist_mini", (("mnist-mini", "5,000 real MNIST digits shipped in `data/` (4,000 train / 1,000 test); provenance and licence (CC BY-SA 3.0) in [data/README.md](data/README.md)"),)),
    Source("mnist", "images", "idx_folders", (("mnist", _PUBLIC.format("mnist") + "; with `data.download: true` the files are fetched and checked against pinned SHA-256 sums (`$MASKLAB_MIRROR` names your own mirror first)"),)),
    Source("fashion-mnist", "images", "idx_folders", (("fashion-mnist", _PUBLIC.format("fashion-mnist") + ". On Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist`; `data.download: true` fetches it as it does mnist"),)),
    Source("digits", "images", "digits", (("digits", "scikit-learn's 8x8 digits (1,797 images, split 80/20)"),)),
    Source("kjv-mini", "text", "kjv_mini", (("kjv-mini", "2,000 King James Bible verses shipped in `data/` (1,600 train / 400 test), labelled law, wisdom, prophets, gospels or epistles; public domain, see [data/README.md](data/README.md)"),)),
    Source("fortunes", "text", "fortunes", (("fortunes", "Debian's `fortunes` (`sudo apt-get install fortunes`): the 6,740 distinct entries of the 8 topical categories with at least 500 entries (computers, definitions, men-women, people, politics, science, songs-poems, work), split 80/20 stratified with seed 0 (5,392 / 1,348); the grab-bags (cookie, miscellaneous, fortunes, platitudes, wisdom), single-voice collections (zippy, knghtbrd), smaller files and offensive ones are left out, and so are the 12 texts found in two categories"),)),
    Source("idx:", "images", "idx_folders", (("idx:DIR", "any folder with the four MNIST-style IDX files"),)),
    Source("npz:", "images", "npz", (("npz:FILE", "`train_images/train_labels/test_images/test_labels` arrays, or a file written by `masklab mask/noise` (it supplies its split; the source dataset supplies the other)"),)),
    Source("text:", "text", "text", (
        ("text:DIR", "one sub-folder of `.txt` files per class, or `train/` and `test/` holding such sub-folders"),
        ("text:FILE.jsonl", '`{"text": ..., "label": ...}` per line, `"split": "train"\\|"test"` optional'),
    )),
)  # fmt: skip
NAMES = tuple(s.name for s in SOURCES if not s.prefix)


def source(dataset: str) -> Source | None:
    """The table entry a dataset name falls under, or None."""
    return next((s for s in SOURCES if s.matches(dataset)), None)


def is_text(dataset: str) -> bool:
    found = source(dataset)
    return found is not None and found.kind == "text"


def forms(kind: str | None = None) -> list[str]:
    """Every form of a name, in table order (`mnist-mini`, ..., `idx:DIR`), of one kind or all."""
    return [form for s in SOURCES if kind in (None, s.kind) for form in s.forms]


def allowed() -> list[str]:
    """What an error lists: the plain names, then the prefixed forms (`idx:DIR`, ...)."""
    return [*NAMES, *(form for s in SOURCES if s.prefix for form in s.forms)]


def markdown_table() -> str:
    """The README's Data table."""
    lines = ["| name | source |", "|---|---|"]
    lines += [f"| `{form}` | {doc} |" for s in SOURCES for form, doc in s.rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
