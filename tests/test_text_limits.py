"""Text inputs with limits (issue 21): only regular files are read, one huge text costs
what MAX_TEXT_CHARS characters cost, labels of one type per file, lone surrogates, many
classes in linear memory, and a memory check that counts a text model's vocabulary."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from masklab import spec as spec_mod
from masklab.data.registry import load_corpus
from masklab.data.text import MAX_TEXT_CHARS
from masklab.errors import DataError
from masklab.evaluation.metrics import DENSE_CONFUSION_CLASSES, Predictions, classification_metrics, confusion_matrix
from masklab.study import model_memory as memory

from conftest import cli, run_dirs

ROWS = [{"text": f"text number {i} about {'cats' if i % 2 else 'dogs'}", "label": "ab"[i % 2]} for i in range(20)]


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def feed_later(fifo: Path, data: str, after: float = 3.0) -> threading.Timer:
    """Write `data` into a FIFO after `after` seconds: a reader that blocks on the FIFO gets
    it (and the test fails on what it read) instead of hanging the suite."""

    def feed() -> None:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return  # nobody is reading: the reader did not block, as it should not
        os.write(fd, data.encode())
        os.close(fd)

    timer = threading.Timer(after, feed)
    timer.start()
    return timer


def class_folders(root: Path) -> Path:
    for label in ("neg", "pos"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            (root / label / f"{i}.txt").write_text(f"{label} text {i}")
    return root


def test_a_fifo_named_txt_in_a_class_folder_is_refused_not_waited_on(tmp_path):
    root = class_folders(tmp_path / "d")
    os.mkfifo(root / "pos" / "3.txt")
    timer = feed_later(root / "pos" / "3.txt", "fed through the pipe")
    try:
        with pytest.raises(DataError) as err:
            load_corpus(f"text:{root}")
    finally:
        timer.cancel()
    assert str(err.value) == (
        f"{root}/pos/3.txt: a FIFO (named pipe), not a regular file; text datasets read regular files only "
        "(put a file in its place or move it out)"
    )


@pytest.mark.parametrize("name", ["fifo.jsonl", "fifo"])
def test_a_fifo_given_as_the_jsonl_file_says_what_it_is(tmp_path, name):
    os.mkfifo(tmp_path / name)
    timer = feed_later(tmp_path / name, json.dumps(ROWS[0]) + "\n")
    try:
        with pytest.raises(DataError) as err:
            load_corpus(f"text:{tmp_path / name}")
    finally:
        timer.cancel()
    assert "a FIFO (named pipe), not a regular file" in str(err.value) and "no such file" not in str(err.value)


def test_a_folder_named_txt_is_refused(tmp_path):
    root = class_folders(tmp_path / "d")
    (root / "neg" / "sub.txt").mkdir()
    with pytest.raises(DataError, match=r"neg/sub.txt: a folder, not a regular file"):
        load_corpus(f"text:{root}")


def test_labels_of_two_types_in_one_file_are_refused_naming_the_lines(tmp_path):
    rows = [{"text": f"t{i}", "label": 1} for i in range(4)] + [{"text": f"u{i}", "label": "1"} for i in range(4)]
    path = jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError) as err:
        load_corpus(f"text:{path}")
    assert str(err.value) == (
        f'{path}:5: "label" is "1" but line 1 has 1; give every label as a string or every label as a number '
        '(1 and "1" would be two classes)'
    )


@pytest.mark.parametrize(
    "line, field",
    [('{"text": "a\\ud800b", "label": "x"}', "text"), ('{"text": "ab", "label": "x\\udfff"}', "label")],
)
def test_a_lone_surrogate_is_one_line_naming_the_line(tmp_path, line, field):
    path = jsonl(tmp_path / "d.jsonl", [*ROWS[:4], line])
    with pytest.raises(DataError) as err:
        load_corpus(f"text:{path}")
    assert str(err.value).startswith(f'{path}:5: "{field}" holds a lone surrogate \\u')


def test_a_lone_surrogate_from_the_command_line_is_one_line_and_no_folder(workdir, write_spec):
    path = jsonl(workdir / "d.jsonl", [*ROWS, '{"text": "bad \\udc80 text", "label": "a"}'])
    spec = {
        "name": "sur",
        "data": {"dataset": f"text:{path}"},
        "model": {"arch": "bert", "dim": 16, "depth": 1, "heads": 2, "vocab_size": 100, "max_len": 16},
        "train": {"epochs": 1},
    }
    result = cli("train", write_spec(spec), "-q")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.stderr
    assert f'{path}:21: "text" holds a lone surrogate \\udc80' in result.stderr
    assert run_dirs(workdir) == []


def test_a_huge_jsonl_text_is_cut_to_the_limit(tmp_path):
    huge = "word " * (MAX_TEXT_CHARS // 2)  # 2.5 x the limit
    path = jsonl(tmp_path / "d.jsonl", [*ROWS[:10], {"text": huge, "label": "a"}, *ROWS[10:]])
    corpus = load_corpus(f"text:{path}")
    texts = corpus.train_texts + corpus.test_texts
    assert max(map(len, texts)) == MAX_TEXT_CHARS and huge[:MAX_TEXT_CHARS] in texts


def test_a_huge_txt_file_is_read_no_further_than_the_limit(tmp_path):
    root = class_folders(tmp_path / "d")
    # 4 x the limit in bytes is all a text can take; a bad byte beyond it is never read
    (root / "pos" / "9.txt").write_bytes(b"x" * (4 * MAX_TEXT_CHARS) + b"\xff tail")
    corpus = load_corpus(f"text:{root}")
    assert "x" * MAX_TEXT_CHARS in corpus.train_texts + corpus.test_texts
    assert max(map(len, corpus.train_texts + corpus.test_texts)) == MAX_TEXT_CHARS


def test_a_multibyte_character_cut_at_the_read_limit_is_dropped_not_an_error(tmp_path):
    root = class_folders(tmp_path / "d")
    body = ("é" * (2 * MAX_TEXT_CHARS + 1)).encode()  # 2 bytes each: the read stops inside one
    (root / "pos" / "9.txt").write_bytes(body)
    corpus = load_corpus(f"text:{root}")
    assert "é" * MAX_TEXT_CHARS in corpus.train_texts + corpus.test_texts


def test_many_classes_map_each_text_to_its_own_class(tmp_path):
    rows = [{"text": f"text {i}", "label": f"c{i % 3000}"} for i in range(6000)]
    corpus = load_corpus(f"text:{jsonl(tmp_path / 'd.jsonl', rows)}")
    assert len(corpus.classes) == 3000 and corpus.classes == sorted(f"c{i}" for i in range(3000))
    for texts, y in ((corpus.train_texts, corpus.train_y), (corpus.test_texts, corpus.test_y)):
        assert [corpus.classes[k] for k in y] == [f"c{int(t.split()[1]) % 3000}" for t in texts]


def test_the_confusion_of_many_classes_is_its_nonzero_cells():
    rng = np.random.default_rng(0)
    k = DENSE_CONFUSION_CLASSES + 1
    labels = rng.integers(0, k, 5000)
    predicted = np.where(rng.random(5000) < 0.5, labels, rng.integers(0, k, 5000))
    many = classification_metrics(Predictions(labels, predicted, 0.1), [str(c) for c in range(k)])
    dense = confusion_matrix(labels, predicted, k)
    rows, cols = np.nonzero(dense)
    assert many["confusion"] == {"cells": [[int(r), int(c), int(dense[r, c])] for r, c in zip(rows, cols)]}
    few = classification_metrics(Predictions(labels % 10, predicted % 10, 0.1), [str(c) for c in range(10)])
    assert few["confusion"] == {"matrix": confusion_matrix(labels % 10, predicted % 10, 10).tolist()}


def bert_spec(**train) -> spec_mod.Spec:
    body = {
        "name": "m",
        "data": {"dataset": "kjv-mini"},
        "model": {"arch": "bert", "dim": 64, "depth": 1, "heads": 2, "vocab_size": 1 << 18, "max_len": 256},
        "train": {"batch_size": 512, **train},
        "train_ops": [{"op": "tokens", "rate": 0.15, "action": "mlm"}],
    }
    return spec_mod.resolve(body)


def test_the_memory_check_counts_a_text_models_activations_and_its_vocabulary_logits():
    _, _, classify = memory.estimate(bert_spec(), (256,), 5)
    _, _, mlm = memory.estimate(bert_spec(objective="masked-modeling"), (256,), 5)
    assert classify > 0  # the forward pass reads token ids: it was counted as nothing
    # 15% of 256 pieces -> 38 chosen, each with 2^18 logits, float32, kept for backward with their gradients
    assert mlm - classify == 38 * (1 << 18) * 4 * 2


def test_a_masked_modeling_run_whose_vocabulary_logits_cannot_fit_is_refused(monkeypatch):
    spec = bert_spec(objective="masked-modeling")
    _, state, per_text = memory.estimate(spec, (256,), 5)
    # the weights fit, a batch of 512 texts does not
    monkeypatch.setattr(memory, "free_bytes", lambda device: state + 100 * per_text)

    class Data:
        shape, num_classes, train_y = (256,), 5, np.zeros(1000)

    import torch

    with pytest.raises(memory.OutOfMemory, match="a batch of 512 needs about .* reduce train.batch_size"):
        memory.check_fits(spec, Data(), torch.device("cpu"))


def test_per_class_figures_are_drawn_up_to_figure_classes(tmp_path):
    from masklab.analysis.figures import FIGURE_CLASSES, write_run_figures

    for k, drawn in ((FIGURE_CLASSES, True), (FIGURE_CLASSES + 1, False)):
        folder = tmp_path / str(k)
        folder.mkdir()
        classes = [str(c) for c in range(k)]
        summary = {
            "test_acc": 0.5,
            "per_class_recall": dict.fromkeys(classes, 0.5),
            "test_confusion": {"classes": classes, "matrix": np.eye(k, dtype=int).tolist()},
        }
        names = sorted(p.name for p in write_run_figures(folder, [], summary, None))
        assert names == (["confusion.png", "recall.png"] if drawn else [])
