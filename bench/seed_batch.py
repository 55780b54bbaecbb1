"""A seed group trained as one batched model (`train.seed_batch`) against the same
seeds trained one after another, in one invocation: wall time of `train_spec` for the
group (training, validation, checkpoints, test evaluation, writes) and the accuracies
of both, so the speed-up is shown next to the evidence that the runs are the same
runs. Last line: `ratio: X` (sequential wall / batched wall).

    python bench/seed_batch.py [--spec experiments/quickstart.yaml] [--seeds 5] [--device cpu] [--step]

--step adds a per-step comparison of ways to batch seeds: S separate steps, one
`torch.func.vmap` over `functional_call`, and masklab's grouped convolutions (`Stacked`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from masklab import threads  # noqa: E402

PLAN = threads.configure()  # before torch is imported, as the CLI does

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from masklab import spec as spec_mod  # noqa: E402
from masklab.data.checks import load_checked_data  # noqa: E402
from masklab.store.runs import RunStore  # noqa: E402
from masklab.study import runner  # noqa: E402
from masklab.train import Reporter  # noqa: E402


def train_group(spec_path: Path, seeds: list[int], seed_batch: int, device: str, tmp: Path) -> tuple[float, list]:
    spec = spec_mod.load_spec(spec_path, [f"train.seed_batch={seed_batch}", f"train.device={device}"])
    load_checked_data(spec)  # fills the dataset cache before the clock starts, for both sides alike
    store = RunStore(tmp / f"batch-{seed_batch}")
    began = time.perf_counter()
    outcomes = runner.train_spec(spec, seeds, store, Reporter())
    return time.perf_counter() - began, [o.summary for o in outcomes]


def step_comparison(seeds: int, batch: int, width: int, norm: str) -> None:
    """ms per optimisation step of `seeds` quickstart-sized CNNs, three ways."""
    from torch.func import functional_call, vmap

    from masklab.models import build_model
    from masklab.models.cnn import CNN
    from masklab.models.stacked import Stacked
    from masklab.optimizers import AdamW
    from masklab.spec import CNNSpec

    models = []
    for s in range(seeds):
        torch.manual_seed(s)
        models.append(build_model(CNNSpec(width=width, norm=norm), (1, 28, 28), 10, 0.13, 0.31))
    x, y = torch.rand(seeds, batch, 1, 28, 28), torch.randint(0, 10, (seeds, batch))

    def timed(step, n: int = 20) -> float:
        for _ in range(3):
            step()
        began = time.perf_counter()
        for _ in range(n):
            step()
        return (time.perf_counter() - began) / n * 1000

    opts = [AdamW([{"params": list(m.parameters())}], lr=1e-3) for m in models]

    def separate() -> None:
        for m, opt, xs, ys in zip(models, opts, x, y):
            opt.zero_grad()
            F.cross_entropy(m(xs), ys).backward()
            opt.step()

    stacked = Stacked(models)
    grouped_opt = AdamW([{"params": stacked.parameters()}], lr=1e-3)

    def grouped() -> None:
        grouped_opt.zero_grad()
        F.cross_entropy(stacked(x).flatten(0, 1), y.flatten(), reduction="none").view(seeds, -1).mean(
            1
        ).sum().backward()
        grouped_opt.step()

    # vmap cannot ask for channels_last inside the batched function: an NCHW forward
    template = models[0]
    nchw = lambda self, inp: self.head(self.features(self.standardize(inp)))  # noqa: E731
    params = {k: v.detach().clone().requires_grad_() for k, v in stacked.tensors.items() if v.requires_grad}
    buffers = {k: v for k, v in stacked.tensors.items() if not v.requires_grad}
    vmap_opt = AdamW([{"params": list(params.values())}], lr=1e-3)
    loss_one = lambda p, b, xs, ys: F.cross_entropy(functional_call(template, (p, b), (xs,)), ys)  # noqa: E731
    batched_loss = vmap(loss_one, randomness="different")

    def vmapped() -> None:
        vmap_opt.zero_grad()
        batched_loss(params, buffers, x, y).sum().backward()
        vmap_opt.step()

    original = CNN.forward
    CNN.forward = nchw
    try:
        vmap_text = f"{timed(vmapped):8.1f} ms"
    except RuntimeError as exc:  # torch 2.13: GroupNorm asks is_contiguous(channels_last), NYI under vmap
        vmap_text = f"fails: {str(exc).splitlines()[0][:80]}"
    finally:
        CNN.forward = original
    print(f"step of {seeds} seeds x batch {batch}, CNN width {width}, norm {norm}:")
    print(f"  {seeds} separate steps      {timed(separate):8.1f} ms")
    print(f"  vmap(functional_call)  {vmap_text}")
    print(f"  grouped (Stacked)      {timed(grouped):8.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "experiments" / "quickstart.yaml")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=1, help="repeats of each side (medians reported)")
    parser.add_argument("--step", action="store_true", help="also compare per-step ways of batching")
    args = parser.parse_args()
    seeds = list(range(args.seeds))
    import os

    print(
        f"load average {os.getloadavg()[0]:.2f}; threads {PLAN.threads} of {PLAN.cores} usable cores; "
        f"torch {torch.__version__}; device {args.device}; spec {args.spec.name}; seeds {seeds}"
    )
    if args.step:
        for norm in ("group", "none"):  # vmap needs a model without GroupNorm
            step_comparison(args.seeds, 128, 16, norm)
    walls: dict[int, list[float]] = {1: [], args.seeds: []}
    summaries = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeat):
            for size in (1, args.seeds):
                wall, summaries[size] = train_group(args.spec, seeds, size, args.device, Path(tmp) / str(rep))
                walls[size].append(wall)
                label = "sequential" if size == 1 else f"batched ({size})"
                train = sum(s["train_seconds"] for s in summaries[size])
                print(f"  {label:13s} wall {wall:6.1f} s  (training loops {train:6.1f} s)", flush=True)
    for size, label in ((1, "sequential"), (args.seeds, "batched")):
        accs = [s["test_acc"] for s in summaries[size]]
        spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(
            f"{label:10s} median wall {statistics.median(walls[size]):6.1f} s; test_acc mean {statistics.mean(accs):.4f} sd {spread:.4f}: {', '.join(f'{a:.4f}' for a in accs)}"
        )
    print(f"ratio: {statistics.median(walls[1]) / statistics.median(walls[args.seeds]):.2f}")


if __name__ == "__main__":
    main()
