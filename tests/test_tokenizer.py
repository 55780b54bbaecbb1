"""What the tokenizer learns from, and what its cache key covers: piece counts come from
the training split only, and every setting that changes the tokenizer changes its key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from masklab.data import tokenize
from masklab.data.registry import load_corpus
from masklab.data.splits import vocabulary


@pytest.fixture
def corpus(workdir):
    return load_corpus("kjv-mini").limit(200, 50)


def test_piece_counts_are_the_bincount_of_the_training_ids(corpus):
    train, test, info = tokenize.tokenize_corpus(corpus, 300, True, 24)
    expected = np.bincount(train.reshape(-1), minlength=info.vocab_size)
    assert info.counts.dtype == np.int64 and np.array_equal(info.counts, expected)
    assert not np.array_equal(info.counts, np.bincount(test.reshape(-1), minlength=info.vocab_size))
    import torch

    vocab = vocabulary(info, torch.device("cpu"))  # what rarity-weighted masking reads
    assert torch.equal(vocab.counts, torch.from_numpy(expected).float())


def test_a_new_test_split_leaves_the_counts_and_the_key_alone(corpus):
    _, _, info = tokenize.tokenize_corpus(corpus, 300, True, 24)
    other = load_corpus("kjv-mini").limit(200, 80)
    assert other.train_texts == corpus.train_texts and other.test_texts != corpus.test_texts
    _, _, again = tokenize.tokenize_corpus(other, 300, True, 24)
    assert again.key == info.key and np.array_equal(again.counts, info.counts)


def test_each_tokenizer_setting_has_its_own_cache_entry(corpus, monkeypatch):
    _, _, lower = tokenize.tokenize_corpus(corpus, 300, True, 24)
    _, _, cased = tokenize.tokenize_corpus(corpus, 300, False, 24)
    assert cased.key != lower.key and cased.path != lower.path
    pieces = [p for p in tokenize.train_or_load(corpus.train_texts, 300, False)[0].get_vocab()]
    assert any(p != p.lower() for p in pieces)  # the cased tokenizer was trained, not the cached lowercase one
    _, _, wider = tokenize.tokenize_corpus(corpus, 301, True, 24)
    assert len({lower.key, cased.key, wider.key}) == 3
    _, _, longer = tokenize.tokenize_corpus(corpus, 300, True, 32)  # max_len cuts and pads; one tokenizer
    assert longer.key == lower.key
    import tokenizers

    monkeypatch.setattr(tokenizers, "__version__", "0.0.0-other")
    _, _, newer = tokenize.tokenize_corpus(corpus, 300, True, 24)
    assert newer.key not in (lower.key, cased.key, wider.key)
    assert sorted(p.name for p in Path(lower.path).parent.glob("*.json")) == sorted(
        Path(i.path).name for i in (lower, cased, wider, newer)
    )


def test_the_key_covers_every_text_where_it_ends_and_every_setting():
    base = (["in the beginning", "god created"], 300, True, "0.22.1")
    changed = [
        (["in the beginnin", "g god created"], 300, True, "0.22.1"),  # a boundary moved
        (["god created", "in the beginning"], 300, True, "0.22.1"),  # reordered
        (["in the beginning", "god created", ""], 300, True, "0.22.1"),  # one more (empty) text
        (base[0], 301, True, "0.22.1"),
        (base[0], 300, False, "0.22.1"),
        (base[0], 300, True, "0.22.2"),
    ]
    keys = [tokenize.cache_key(*args) for args in [base, *changed]]
    assert len(set(keys)) == len(keys) and tokenize.cache_key(*base) == keys[0]
