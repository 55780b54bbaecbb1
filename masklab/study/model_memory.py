"""Will the model fit? A check before any run folder exists, and a one-line error when
memory runs out anyway.

The estimate builds the model on torch's meta device (no memory used): weights,
gradients and optimizer state from the parameter count (the vocabulary's embedding and
the classes' head included), activations from one forward pass of a single image, or a
text of model.max_len word pieces, scaled by the batch size (on the CPU for a small
model), the logits over the vocabulary that masked-language modelling computes at the
chosen pieces, and the dataset's copy on the device.
It is deliberately rough and errs on the small side: it refuses only what cannot fit,
and names the setting to reduce.
"""

from __future__ import annotations

import torch

from masklab.data.memory import available_memory
from masklab.errors import MasklabError
from masklab.models.build import build_model
from masklab.vocabulary import N_SPECIAL


class OutOfMemory(MasklabError):
    """The model, batch or data does not fit in the device's memory."""


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


REAL_FORWARD_BYTES = 1 << 30  # a model this small is built for real to count its activations


def estimate(spec, shape: tuple[int, int, int], classes: int) -> tuple[int, int, int]:
    """(parameters, bytes of weights + gradients + optimizer state, activation bytes per image)."""
    with torch.device("meta"):
        model = build_model(spec.model, shape, classes, 0.0, 1.0, spec.train.objective)
    params = sum(p.numel() for p in model.parameters())
    per_param = 4 * (2 + (2 if spec.train.optimizer == "adamw" else 1))  # weights, grads, optimizer state
    device = "meta"
    if params * 4 <= REAL_FORWARD_BYTES:
        # a small model is counted on the CPU for real: some ops on meta tensors import
        # torch._dynamo, a second of start-up that every quickstart would pay
        with torch.random.fork_rng(devices=[]):  # the runs' initialisation draws stay untouched
            model = build_model(spec.model, shape, classes, 0.0, 1.0, spec.train.objective)
        device = "cpu"
    elements = _activations(model, _one_input(spec, shape, device)) + _mlm_logits(spec, shape)
    return params, params * per_param, elements * 4 * 2  # saved for backward, and their gradients


def _one_input(spec, shape: tuple[int, ...], device: str) -> torch.Tensor:
    """What the model reads for one example: an image, or a text filling all max_len pieces."""
    if spec.model.reads == "text":
        return torch.full((1, *shape), N_SPECIAL, dtype=torch.long, device=device)  # no [PAD]: full length
    return torch.zeros((1, *shape), device=device)


def _mlm_logits(spec, shape: tuple[int, ...]) -> int:
    """Elements of the vocabulary-sized logits masked-language modelling computes for one
    text: at the pieces its token ops choose (at least the smallest share any op asks)."""
    if spec.model.reads != "text" or spec.train.objective != "masked-modeling":
        return 0
    share = max((_smallest_share(op) for op in spec.train_ops if op.get("op") == "tokens"), default=0.0)
    return max(1, int(share * shape[0])) * spec.model.vocab_size


def _smallest_share(op: dict) -> float:
    """The least share of pieces a tokens op chooses: its lowest rate (of a [lo, hi] range
    or a schedule's ends) times its probability p."""
    rate = op.get("rate", 0.0)
    if isinstance(rate, dict):  # a schedule
        rate = min(float(rate.get("start", 0.0)), float(rate.get("end", 0.0)))
    elif isinstance(rate, (list, tuple)):
        rate = min(rate)
    p = op.get("p", 1.0)
    return float(rate) * float(min(p) if isinstance(p, (list, tuple)) else p)


def _activations(model: torch.nn.Module, image: torch.Tensor) -> int:
    """Elements output by the model's leaf modules for one image."""
    outputs = [0]

    def count(module, inputs, output) -> None:
        if isinstance(output, torch.Tensor):
            outputs[0] += output.numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    model.eval()  # batch norm takes one image
    try:
        with torch.no_grad():
            model(image)
    except Exception:  # noqa: BLE001 - a model needing extra inputs: weights only
        outputs[0] = 0
    finally:
        for h in hooks:
            h.remove()
    return outputs[0]


def free_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    if device.type == "cpu":
        return available_memory()
    return None


def check_fits(spec, dataset, device: torch.device) -> None:
    """Refuse a spec whose model cannot fit in the device's free memory."""
    free = free_bytes(device)
    if free is None:
        return
    params, state_bytes, per_image = estimate(spec, dataset.shape, dataset.num_classes)
    batch = min(spec.train.batch_size, len(dataset.train_y))
    data_bytes = sum(a.nbytes for a in (dataset.train_x, dataset.test_x)) if device.type != "cpu" else 0
    need = state_bytes + per_image * batch + data_bytes
    if need <= free:
        return
    if state_bytes >= per_image * batch:
        what = f"the model has {params:,} parameters ({_gib(state_bytes)} with gradients and optimizer state)"
        fix = f"reduce {spec.model.size_keys}"
    else:
        what = f"a batch of {batch} needs about {_gib(per_image * batch)} of activations"
        fix = "reduce train.batch_size"
    raise OutOfMemory(f"{what}, but {device.type} has {_gib(free)} free; {fix}")


def is_out_of_memory(exc: BaseException) -> bool:
    """A failed allocation, from Python, the CPU allocator or CUDA."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def out_of_memory(spec, device: torch.device, where: str) -> OutOfMemory:
    return OutOfMemory(
        f"out of memory on {device.type} {where}; reduce train.batch_size (train.eval_batch_size for evaluation) "
        f"or the model ({spec.model.size_keys})"
    )
