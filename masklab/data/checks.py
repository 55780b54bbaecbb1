"""A spec's dataset, loaded and checked against the spec before any run folder exists:
op and model shapes, a usable training split."""

from __future__ import annotations

import dataclasses

from masklab.data import registry as data_registry
from masklab.data.dataset import Dataset, limit
from masklab.data.tokenize import tokenized_dataset
from masklab.datasets import is_text
from masklab.errors import SpecError
from masklab.ops import adaptive_spec, registry as op_registry
from masklab.spec import Spec


def load_data(spec: Spec) -> Dataset:
    d = spec.data
    if is_text(d.dataset):
        return tokenized_dataset(
            data_registry.load_corpus(d.dataset, d.root).limit(d.train_limit, d.test_limit), spec.model
        )
    return limit(data_registry.load(d.dataset, d.root, d.download), d.train_limit, d.test_limit)


def data_key(spec: Spec) -> str:
    """What decides a spec's loaded dataset: its data section, and for text the tokenizer settings."""
    key = repr(dataclasses.asdict(spec.data))
    if is_text(spec.data.dataset):
        m = spec.model
        key += repr((m.tokenizer, m.vocab_size, m.lowercase, m.max_len))
    return key


def check_against_data(spec: Spec, dataset: Dataset) -> None:
    """The checks that need the images: op and model shapes, a usable training split."""
    adaptive_spec.check_classes(spec.train_ops, len(dataset.classes))
    if dataset.text is not None:
        return
    _, height, width = dataset.shape
    op_registry.check_image_shape(spec.train_ops, height, width, "train_ops")
    op_registry.check_image_shape(spec.eval.ops, height, width, "eval.ops")
    spec.model.check_image_size(height, width)
    if spec.train.objective == "classify" and len(dataset.train_y) < 2:
        raise SpecError("data: the training split holds fewer than 2 images")


def load_checked_data(spec: Spec) -> Dataset:
    """The spec's dataset, with every shape-dependent check of ops and model done."""
    dataset = load_data(spec)
    check_against_data(spec, dataset)
    return dataset
