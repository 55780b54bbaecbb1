"""What a run on a text dataset adds: what run.json records about the tokenizer, and the
check that a fine-tuning run reads its pretrained encoder's vocabulary."""

from __future__ import annotations

from collections.abc import Iterable

from masklab.data.dataset import Dataset
from masklab.errors import SpecError
from masklab.store.runs import Run


def text_info(dataset: Dataset) -> dict:
    """The tokenizer facts for run.json's data section (nothing for image datasets)."""
    info = dataset.text
    if info is None:
        return {}
    return {
        "tokenizer": {
            "key": info.key,
            "file": info.path,
            "vocab_size": info.vocab_size,
            "max_len": info.max_len,
            "truncated": round(info.truncated, 4),
        }
    }


def check_same_tokenizer(sources: Iterable[Run | None], dataset: Dataset) -> None:
    """A fine-tuning run must read text with the vocabulary its encoder was pretrained on."""
    if dataset.text is None:
        return
    for source in sources:
        if source is None:
            continue
        theirs = source.info.get("data", {}).get("tokenizer", {}).get("key")
        if theirs != dataset.text.key:
            raise SpecError(
                f"train.init_from: run {source.id} was trained with tokenizer {theirs}, this spec's data gives "
                f"{dataset.text.key}; pretrain and fine-tune on the same training texts and model.vocab_size"
            )
