"""Text datasets: labelled texts read from files, checked, and split into train and test
(the readers `kjv-mini` and `fortunes` use too), and the `text:` source itself.

| name | where it comes from |
|------|---------------------|
| text:DIR | one sub-folder per class holding `.txt` files (scikit-learn's `load_files` layout), or `train/` and `test/` folders that each hold such sub-folders |
| text:FILE.jsonl | one JSON object per line: `{"text": ..., "label": ...}`, optionally `"split": "train" \\| "test"` |

Without a given split, texts are split 80/20, stratified by class, with a fixed seed
(0): the same test set for every run. Every problem with the input is a one-line
`DataError` naming the file (and line) and the fix.

Limits, so that no input costs more than its size: only regular files are read (a FIFO,
device or socket named `*.txt` or `*.jsonl` is refused, never waited on); a text longer
than MAX_TEXT_CHARS characters is cut to its first MAX_TEXT_CHARS (a `.txt` file is read
no further); the labels of one file are all strings or all integers (`1` and `"1"`
would be two classes with one name).
"""

from __future__ import annotations

import codecs
import json
import os
import re
import stat
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from masklab.data.dataset import Lookup
from masklab.data.stratified import stratified_subset
from masklab.errors import DataError

TEST_FRACTION = 0.2
# Characters kept of one text: 24 per token at the largest model.max_len (4,096 tokens),
# so a cut text still fills any sequence masklab encodes, while one huge line (a book on
# one line, a 50 MB field) costs what 100,000 characters cost and no more.
MAX_TEXT_CHARS = 100_000
_SURROGATE = re.compile("[\ud800-\udfff]")  # a lone \udXXX escape: JSON allows it, UTF-8 cannot hold it


@dataclass
class TextCorpus:
    """Labelled texts, split: labels are indices into `classes`."""

    name: str
    train_texts: list[str]
    train_y: np.ndarray
    test_texts: list[str]
    test_y: np.ndarray
    classes: list[str]
    source: str

    def limit(self, train_limit: int | None, test_limit: int | None) -> TextCorpus:
        """The same corpus cut to stratified subsets (fixed, independent of the run seed)."""
        out = self
        if train_limit:
            keep = stratified_subset(out.train_y, train_limit)
            out = replace(out, train_texts=[out.train_texts[i] for i in keep], train_y=out.train_y[keep])
        if test_limit:
            keep = stratified_subset(out.test_y, test_limit)
            out = replace(out, test_texts=[out.test_texts[i] for i in keep], test_y=out.test_y[keep])
        return out


# --- reading ------------------------------------------------------------------------------


def decode(data: bytes, where: str, final: bool = True) -> str:
    """UTF-8 text; with `final=False` a character cut in half at the end is dropped."""
    try:
        return codecs.getincrementaldecoder("utf-8")().decode(data, final=final)
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text (bad byte at offset {exc.start}); convert it to UTF-8") from None


def _kind(mode: int) -> str:
    kinds = {
        stat.S_ISDIR: "a folder",
        stat.S_ISFIFO: "a FIFO (named pipe)",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    return next((name for test, name in kinds.items() if test(mode)), "a special file")


def read_regular(path: Path, limit: int | None = None) -> tuple[bytes, bool]:
    """(the first `limit` bytes of a regular file (all without a limit), whether it holds
    more). Never blocks: a FIFO, device or socket in the file's place is a DataError
    saying what it is."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a link to a file is fine
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise DataError(
                f"{path}: {_kind(mode)}, not a regular file; text datasets read regular files only "
                "(put a file in its place or move it out)"
            )
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read() if limit is None else fh.read(limit + 1)
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror})") from None
    finally:
        os.close(fd)
    if limit is not None and len(data) > limit:
        return data[:limit], True
    return data, False


def _text_file(path: Path) -> str:
    """A .txt file's text, read no further than MAX_TEXT_CHARS characters."""
    data, more = read_regular(path, 4 * MAX_TEXT_CHARS)  # UTF-8 takes at most 4 bytes a character
    return decode(data, str(path), final=not more)[:MAX_TEXT_CHARS]


def _lone_surrogate(value: str, field: str, where: str) -> None:
    found = _SURROGATE.search(value)
    if found:
        raise DataError(
            f'{where}: "{field}" holds a lone surrogate \\u{ord(found.group()):04x} at character {found.start()}, '
            "which is no character; write the character itself or a valid surrogate pair"
        )


def _label_names(labels: list) -> list[str]:
    """Class names in a stable order: numbers numerically, text alphabetically."""
    unique = set(labels)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in unique):
        return [str(v) for v in sorted(unique)]
    return sorted(str(v) for v in unique)


def split_corpus(
    name: str, texts: list[str], labels: list, splits: list[str | None], source: str, where: str
) -> TextCorpus:
    """A corpus from labelled texts: the given split, or a fixed stratified 80/20 one."""
    classes = _label_names(labels)
    if len(classes) < 2:
        raise DataError(f"{where}: one class only ({classes[0]!r}); a classification dataset needs at least 2")
    index = {name: i for i, name in enumerate(classes)}  # a dict: 100,000 classes index in linear time
    y = np.array([index[str(v)] for v in labels], dtype=np.int64)
    if any(s is not None for s in splits):
        if any(s is None for s in splits):
            raise DataError(f"{where}: some texts name a split and some do not; give every text a split or none")
        train = np.array([s == "train" for s in splits])
        if train.all() or not train.any():
            raise DataError(f"{where}: every text is in the {splits[0]} split; the other split is empty")
        tr, te = np.flatnonzero(train), np.flatnonzero(~train)
    else:
        counts = np.bincount(y, minlength=len(classes))
        if counts.min() < 2:
            small = classes[int(counts.argmin())]
            raise DataError(
                f"{where}: class {small!r} has {counts.min()} text; each class needs at least 2 (train and test)"
            )
        from masklab.data.stratified import stratified_split  # scikit-learn's draws, without its import

        n_test = int(np.ceil(TEST_FRACTION * len(y)))
        tr, te = stratified_split(y, len(y) - n_test, n_test, 0)
    return TextCorpus(name, [texts[i] for i in tr], y[tr], [texts[i] for i in te], y[te], classes, source)


def read_jsonl(path: Path, name: str) -> TextCorpus:
    """`{"text", "label"[, "split"]}` per line; blank lines are skipped."""
    if not path.exists():
        raise DataError(f'{path}: no such file; text:FILE.jsonl names a file of {{"text": ..., "label": ...}} lines')
    texts, labels, splits = [], [], []
    first: tuple[int, object] | None = None  # (line, label) of the first label: every label has its type
    for number, line in enumerate(decode(read_regular(path)[0], str(path)).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        text, label, split = _jsonl_row(line, where)
        first = first or (number, label)
        if isinstance(label, str) != isinstance(first[1], str):
            raise DataError(
                f'{where}: "label" is {json.dumps(label)} but line {first[0]} has {json.dumps(first[1])}; '
                'give every label as a string or every label as a number (1 and "1" would be two classes)'
            )
        texts.append(text[:MAX_TEXT_CHARS])
        labels.append(label)
        splits.append(split)
    if not texts:
        raise DataError(f"{path}: no texts (the file is empty); write one JSON object per line")
    return split_corpus(name, texts, labels, splits, str(path), str(path))


def _jsonl_row(line: str, where: str) -> tuple[str, str | int, str | None]:
    """(text, label, split) of one JSONL line, checked."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc.msg}); write one JSON object per line") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply; write one flat JSON object per line") from None
    if not isinstance(row, dict):
        raise DataError(f'{where}: expected a JSON object {{"text": ..., "label": ...}}, got {type(row).__name__}')
    for key in ("text", "label"):
        if key not in row:
            raise DataError(f'{where}: missing field {key!r}; every line needs "text" and "label"')
    text, label, split = row["text"], row["label"], row.get("split")
    if not isinstance(text, str) or not text.strip():
        raise DataError(f'{where}: "text" must be a non-empty string')
    if isinstance(label, bool) or not isinstance(label, (str, int)) or label == "":
        raise DataError(f'{where}: "label" must be a non-empty string or an integer, got {json.dumps(label)[:80]}')
    if split not in (None, "train", "test"):
        raise DataError(f'{where}: "split" must be "train" or "test", got {json.dumps(split)[:80]}')
    _lone_surrogate(text, "text", where)
    if isinstance(label, str):
        _lone_surrogate(label, "label", where)
    return text, label, split


def _read_class_folders(folder: Path) -> tuple[list[str], list[str]]:
    """(texts, labels) from folder/<class>/*.txt."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    texts, labels = [], []
    for class_dir in classes:
        _lone_surrogate(class_dir.name, "class folder name", str(class_dir))  # bytes that are not UTF-8
        files = sorted(class_dir.glob("*.txt"))
        if not files:
            raise DataError(f"{class_dir}: no .txt files; each class folder holds one text per .txt file")
        for file in files:
            text = _text_file(file)
            if not text.strip():
                raise DataError(f"{file}: empty text; remove the file or write the text into it")
            texts.append(text)
            labels.append(class_dir.name)
    return texts, labels


def read_folder(folder: Path, name: str) -> TextCorpus:
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder; text:DIR names a folder with one sub-folder of .txt files per class")
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        tr_texts, tr_labels = _read_class_folders(folder / "train")
        te_texts, te_labels = _read_class_folders(folder / "test")
        unknown = sorted(set(te_labels) - set(tr_labels))
        if unknown:
            raise DataError(f"{folder}/test: class {unknown[0]!r} has no training texts in {folder}/train")
        splits = ["train"] * len(tr_texts) + ["test"] * len(te_texts)
        return split_corpus(name, tr_texts + te_texts, tr_labels + te_labels, splits, str(folder), str(folder))
    texts, labels = _read_class_folders(folder)
    if not texts:
        raise DataError(f"{folder}: no class sub-folders; put each class's .txt files in a folder named after it")
    return split_corpus(name, texts, labels, [None] * len(texts), str(folder), str(folder))


def load(name: str, lookup: Lookup) -> TextCorpus:
    """`text:FILE.jsonl` (or any file) or `text:DIR`."""
    target = Path(name[len("text:") :])
    if target.suffix == ".jsonl" or (target.exists() and not target.is_dir()):
        return read_jsonl(target, name)
    return read_folder(target, name)


def inputs(name: str, lookup: Lookup) -> list[Path]:
    """The file or folder `load` reads, without reading it."""
    return [Path(name[len("text:") :])]
