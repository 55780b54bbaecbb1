"""The closed table of models, without torch: model.arch -> its spec section, a
dataclass with a doc and a check per field (what `model:` in a spec may hold) and what
the rest of masklab needs to know about it as class attributes:

`ModelSpec` below lists them (the builder, what it reads, whether it is a transformer,
the settings init_from must match, whether seeds can be stacked, what to shrink when it
does not fit); models/build.py calls the builder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from masklab import schema as sc
from masklab.errors import SpecError


def _hidden(value: Any, path: str) -> list[int]:
    items = sc.as_list(value, path)
    return [sc.as_int(h, sc.join(path, i), 1, 65536) for i, h in enumerate(items)]


class ModelSpec:
    """What every model section says about its model (class attributes, not spec keys),
    and the model's checks against the data."""

    builder: ClassVar[str]  # `module.function` in masklab/models/ that builds the network
    reads: ClassVar[str] = "images"  # images | text
    transformer: ClassVar[bool] = False  # takes token/attention ops and masked modeling
    encoder_keys: ClassVar[tuple[str, ...]] = ()  # settings a pretrained run must share (train.init_from)
    seed_batch: ClassVar[bool] = False  # its seeds can train as one stacked model (models/stacked.py)
    size_keys: ClassVar[str] = "the model size"  # what to reduce when it does not fit in memory

    def check_image_size(self, height: int, width: int) -> None:
        """Checks that need the image size; none by default."""


@dataclass
class MLPSpec(ModelSpec):
    """A multi-layer perceptron on flattened pixels."""

    builder: ClassVar[str] = "mlp.build"
    encoder_keys: ClassVar[tuple[str, ...]] = ("hidden",)
    seed_batch: ClassVar[bool] = True
    size_keys: ClassVar[str] = "model.hidden"

    arch: str = sc.opt("mlp", "model family", lambda v, p: sc.as_choice(v, p, ("mlp",)))
    hidden: list[int] = sc.opt([256, 128], "hidden layer widths", _hidden)
    dropout: float = sc.opt(0.1, "dropout after each hidden layer", lambda v, p: sc.as_float(v, p, 0.0, 0.95))


@dataclass
class CNNSpec(ModelSpec):
    """A small convolutional net: three conv-norm-ReLU stages, a flattening MLP head."""

    builder: ClassVar[str] = "cnn.build"
    encoder_keys: ClassVar[tuple[str, ...]] = ("width", "depth", "norm")
    seed_batch: ClassVar[bool] = True
    size_keys: ClassVar[str] = "model.width or model.hidden"

    arch: str = sc.opt("cnn", "model family", lambda v, p: sc.as_choice(v, p, ("cnn",)))
    width: int = sc.opt(
        24, "channels of the first stage (doubled from the second)", lambda v, p: sc.as_int(v, p, 4, 512)
    )
    depth: int = sc.opt(
        2, "conv stages: the first two halve the size, later ones keep it", lambda v, p: sc.as_int(v, p, 1, 16)
    )
    hidden: int = sc.opt(256, "width of the hidden layer of the head", lambda v, p: sc.as_int(v, p, 8, 65536))
    norm: str = sc.opt(
        "group", "group (GroupNorm(1, C)) | batch | none", lambda v, p: sc.as_choice(v, p, ("group", "batch", "none"))
    )
    dropout: float = sc.opt(0.0, "dropout in the head", lambda v, p: sc.as_float(v, p, 0.0, 0.95))


@dataclass
class ViTSpec(ModelSpec):
    """A small Vision Transformer on patch tokens."""

    builder: ClassVar[str] = "vit.build"
    transformer: ClassVar[bool] = True
    encoder_keys: ClassVar[tuple[str, ...]] = ("patch", "dim", "depth", "heads", "mlp_ratio", "pool")
    size_keys: ClassVar[str] = "model.dim or model.depth"

    arch: str = sc.opt("vit", "model family", lambda v, p: sc.as_choice(v, p, ("vit",)))
    patch: int = sc.opt(4, "patch side in pixels (must divide the image side)", lambda v, p: sc.as_int(v, p, 1, 64))
    dim: int = sc.opt(64, "token width", lambda v, p: sc.as_int(v, p, 8, 2048))
    depth: int = sc.opt(4, "number of transformer blocks", lambda v, p: sc.as_int(v, p, 1, 48))
    heads: int = sc.opt(4, "attention heads (must divide dim)", lambda v, p: sc.as_int(v, p, 1, 64))
    mlp_ratio: float = sc.opt(2.0, "MLP hidden width as a multiple of dim", lambda v, p: sc.as_float(v, p, 0.25, 16))
    pool: str = sc.opt("cls", "cls token or mean of tokens", lambda v, p: sc.as_choice(v, p, ("cls", "mean")))
    dropout: float = sc.opt(0.0, "dropout in blocks and before the head", lambda v, p: sc.as_float(v, p, 0.0, 0.95))
    decoder_dim: int = sc.opt(
        64, "width of the light decoder used by masked modeling", lambda v, p: sc.as_int(v, p, 8, 2048)
    )
    decoder_depth: int = sc.opt(1, "blocks in the masked-modeling decoder", lambda v, p: sc.as_int(v, p, 1, 16))

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise SpecError(f"model.heads: must divide model.dim ({self.dim}), got {self.heads}")

    def check_image_size(self, height: int, width: int) -> None:
        if height % self.patch or width % self.patch:
            raise SpecError(f"model.patch: must divide the image size {height}x{width}, got {self.patch}")


@dataclass
class BertSpec(ModelSpec):
    """A small BERT-style encoder on word pieces (text datasets); the tokenizer is part of it."""

    builder: ClassVar[str] = "bert.build"
    reads: ClassVar[str] = "text"
    transformer: ClassVar[bool] = True
    encoder_keys: ClassVar[tuple[str, ...]] = (
        "dim",
        "depth",
        "heads",
        "mlp_ratio",
        "pool",
        "vocab_size",
        "max_len",
        "tokenizer",
        "lowercase",
    )
    size_keys: ClassVar[str] = "model.dim, model.depth or model.vocab_size"

    arch: str = sc.opt("bert", "model family", lambda v, p: sc.as_choice(v, p, ("bert",)))
    dim: int = sc.opt(64, "token width", lambda v, p: sc.as_int(v, p, 8, 2048))
    depth: int = sc.opt(2, "number of transformer blocks", lambda v, p: sc.as_int(v, p, 1, 48))
    heads: int = sc.opt(4, "attention heads (must divide dim)", lambda v, p: sc.as_int(v, p, 1, 64))
    mlp_ratio: float = sc.opt(4.0, "MLP hidden width as a multiple of dim", lambda v, p: sc.as_float(v, p, 0.25, 16))
    pool: str = sc.opt(
        "cls", "the [CLS] output or the mean of the real tokens", lambda v, p: sc.as_choice(v, p, ("cls", "mean"))
    )
    dropout: float = sc.opt(0.1, "dropout in blocks and before the head", lambda v, p: sc.as_float(v, p, 0.0, 0.95))
    vocab_size: int = sc.opt(
        4000, "word pieces in the vocabulary, special tokens included", lambda v, p: sc.as_int(v, p, 64, 1 << 18)
    )
    max_len: int = sc.opt(
        64, "tokens per sequence with [CLS] and [SEP]; longer texts are cut", lambda v, p: sc.as_int(v, p, 4, 4096)
    )
    tokenizer: str = sc.opt(
        "bpe",
        "bpe (Hugging Face tokenizers, trained on the training split; deterministic, unlike its WordPiece trainer)",
        lambda v, p: sc.as_choice(v, p, ("bpe",)),
    )
    lowercase: bool = sc.opt(True, "lowercase (and strip accents) before tokenizing", sc.as_bool)

    __post_init__ = ViTSpec.__post_init__  # heads must divide dim


# The table: model.arch -> its spec section. Adding a model: its module in models/ with a
# `build` function, its section above (fields, docs, checks, what it reads) and one entry here.
MODEL_SPECS: dict[str, type] = {cls.arch: cls for cls in (MLPSpec, CNNSpec, ViTSpec, BertSpec)}
