"""ViT encoder training step with 75% of the tokens dropped (MAE) vs the same tokens
replaced by [MASK] (BERT/SimMIM), in one run. Last line: `ratio: X` (mask time / drop time).

    python bench/vit_drop.py [--device cpu|cuda] [--batch-size 256] [--steps 20]

The step is a full training step of the encoder (forward, classification loss,
backward, AdamW) on 28x28 images cut into 49 tokens of 4x4 (dim 64, depth 4, 4 heads,
cls pooling); the token masks come from masklab's keyed tokens op. The masked-modeling
step (encoder + light decoder) is timed as well, for information.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from masklab import spec as spec_mod
from masklab.models.build import build_model
from masklab.ops import registry
from masklab.ops.pipeline import OpPipeline

SPEC = {"name": "bench", "model": {"arch": "vit", "patch": 4, "dim": 64, "depth": 4, "heads": 4, "pool": "cls"}}


def step_time(action: str, objective: str, batch: int, steps: int, device: torch.device) -> float:
    torch.manual_seed(0)
    spec = spec_mod.resolve(SPEC)
    model = build_model(spec.model, (1, 28, 28), 10, 0.3, 0.35, objective).to(device)
    opt = torch.optim.AdamW(model.parameters(), 1e-3, fused=True)  # as masklab train builds it
    ops = [registry.validate({"op": "tokens", "rate": 0.75, "action": action}, "bench")]
    pipe = OpPipeline(ops, 0, (1, 28, 28), token_grid=(model.tokens, model.heads))
    x = torch.rand(batch, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    index = torch.arange(batch, device=device)

    def one(epoch: int) -> None:
        inputs = pipe(x, index, pipe.epoch_keys(epoch, device=device)).model_inputs()
        if objective == "masked-modeling":
            loss = model.reconstruction_loss(x, **inputs)
        else:
            loss = F.cross_entropy(model(x, **inputs), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for e in range(3):
        one(e)
    times = []
    for e in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        one(e)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(
        f"ViT dim 64, depth 4, 49 tokens; batch {args.batch_size}; device {device}; torch {torch.__version__}; threads {torch.get_num_threads()}"
    )
    results = {}
    for objective in ("masked-modeling", "classify"):
        for action in ("mask", "drop"):
            results[objective, action] = step_time(action, objective, args.batch_size, args.steps, device)
            print(
                f"{objective:16s} 75% tokens {action:4s}: {results[objective, action]:8.2f} ms/step (median of {args.steps})",
                flush=True,
            )
    print(
        f"masked-modeling step (encoder + decoder): mask / drop = {results['masked-modeling', 'mask'] / results['masked-modeling', 'drop']:.2f}"
    )
    print(f"ratio: {results['classify', 'mask'] / results['classify', 'drop']:.2f}")


if __name__ == "__main__":
    main()
