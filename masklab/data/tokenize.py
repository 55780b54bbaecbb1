"""Subword tokenization of a text corpus with Hugging Face `tokenizers`.

A byte-pair-encoding (BPE) vocabulary is trained on the training split only, with the
special tokens [PAD] [UNK] [CLS] [SEP] [MASK] at ids 0-4. Texts are normalised and split
into words as BERT does (lowercased, accents stripped, punctuation split off), and the
first piece of every word carries SentencePiece's word marker `▁`: whole-word and span
masking read word boundaries off the vocabulary. BPE with this marker trains
deterministically; the library's WordPiece trainer (and BPE with `##` continuation
pieces) does not, because it numbers those pieces in hash-map order, which breaks ties
between merges differently from one process to the next
(huggingface/tokenizers#1794), so it is not offered. The
trained tokenizer is cached as `$MASKLAB_CACHE/tokenizers/<key>.json`, where the key is
the SHA-256 of the training texts, the settings and the library version: a study
trains it once, and two processes that train it at once write the same file through an
atomic rename. Every text is then encoded once, as `[CLS] pieces [SEP]` cut and padded
to `max_len`: an int64 array (N, max_len) that a run moves to its device whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from masklab.data.dataset import Dataset
from masklab.data.download import cache_dir
from masklab.data.text import TextCorpus
from masklab.errors import DataError
from masklab.vocabulary import CLS_ID, MASK_ID, PAD_ID, SEP_ID, SPECIAL_TOKENS, UNK_ID

WORD_MARK = "\u2581"  # "▁", SentencePiece's word marker, starts the first piece of every word
INSTALL_HINT = "pip install tokenizers (or pip install -e '.[text]')"


@dataclass
class Tokenized:
    """What training needs to know about a corpus's tokenizer, besides the ids."""

    key: str  # cache key: SHA-256 (16 hex digits) of the training texts, settings and library version
    path: str  # the tokenizer's JSON file in the cache
    vocab_size: int  # ids the tokenizer really uses (at most the requested vocab_size)
    continuation: np.ndarray  # (vocab_size,) bool: the piece continues a word (no word marker)
    counts: np.ndarray  # (vocab_size,) int64: occurrences of each id in the training split
    max_len: int
    truncated: float  # share of the training texts cut at max_len


def _library():
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # masklab may fork after tokenizing
    try:
        import tokenizers
    except ImportError:
        raise DataError(f"text datasets need the tokenizers library; {INSTALL_HINT}") from None
    return tokenizers


def cache_key(texts: list[str], vocab_size: int, lowercase: bool, version: str) -> str:
    h = hashlib.sha256(json.dumps(["bpe-metaspace", vocab_size, lowercase, version]).encode())
    for text in texts:
        h.update(text.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


def _new_tokenizer(vocab_size: int, lowercase: bool):
    tk = _library()
    from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = tk.Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase, clean_text=True)
    # BERT's split on spaces and punctuation, then a word marker on the first piece of every word
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.BertPreTokenizer(), pre_tokenizers.Metaspace()])
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        show_progress=False,  # it draws on stdout, which is data
    )
    return tokenizer, trainer


def train_or_load(texts: list[str], vocab_size: int, lowercase: bool) -> tuple[object, str, Path]:
    """(tokenizer, cache key, its file): from the cache, or trained on `texts` and cached."""
    tk = _library()
    key = cache_key(texts, vocab_size, lowercase, tk.__version__)
    folder = cache_dir() / "tokenizers"
    path = folder / f"{key}.json"
    if path.is_file():
        try:
            return tk.Tokenizer.from_file(str(path)), key, path
        except Exception:  # a damaged cache file is trained again, not trusted
            path.unlink(missing_ok=True)
    tokenizer, trainer = _new_tokenizer(vocab_size, lowercase)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    vocab = tokenizer.get_vocab()
    if [vocab.get(t) for t in SPECIAL_TOKENS] != [PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID]:
        raise DataError(f"tokenizer: special tokens got ids {[vocab.get(t) for t in SPECIAL_TOKENS]}, expected 0-4")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".json", dir=folder)
    os.close(fd)
    try:
        tokenizer.save(tmp)
        os.replace(tmp, path)  # atomic: a concurrent trainer of the same key writes the same content
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return tokenizer, key, path


def encode(tokenizer, texts: list[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids (N, max_len) int64 as [CLS] pieces [SEP] [PAD]..., truncated (N,) bool).
    A text longer than max_len is cut and still ends with [SEP]."""
    from tokenizers.processors import TemplateProcessing

    tokenizer.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", CLS_ID), ("[SEP]", SEP_ID)]
    )
    tokenizer.enable_truncation(max_length=max_len)
    tokenizer.enable_padding(length=max_len, pad_id=PAD_ID, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encodings], dtype=np.int64).reshape(len(texts), max_len)
    return ids, np.array([bool(e.overflowing) for e in encodings], dtype=bool)


def tokenize_corpus(corpus: TextCorpus, vocab_size: int, lowercase: bool, max_len: int):
    """(train ids, test ids, Tokenized) for a corpus, the tokenizer trained on its training split."""
    tokenizer, key, path = train_or_load(corpus.train_texts, vocab_size, lowercase)
    train_ids, cut = encode(tokenizer, corpus.train_texts, max_len)
    test_ids, _ = encode(tokenizer, corpus.test_texts, max_len)
    size = tokenizer.get_vocab_size()
    pieces = [tokenizer.id_to_token(i) or "" for i in range(size)]
    info = Tokenized(
        key=key,
        path=str(path),
        vocab_size=size,
        continuation=np.array([not p.startswith(WORD_MARK) for p in pieces], dtype=bool),
        counts=np.bincount(train_ids.reshape(-1), minlength=size).astype(np.int64),
        max_len=max_len,
        truncated=float(cut.mean()) if len(cut) else 0.0,
    )
    return train_ids, test_ids, info


def tokenized_dataset(corpus: TextCorpus, model) -> Dataset:
    """A text corpus as a Dataset of token ids, tokenized as the model section says."""
    train_ids, test_ids, info = tokenize_corpus(corpus, model.vocab_size, model.lowercase, model.max_len)
    return Dataset(
        corpus.name, train_ids, corpus.train_y, test_ids, corpus.test_y, corpus.source, corpus.classes, text=info
    )
