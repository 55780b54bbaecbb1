"""A seed group trained as one batched model (`train.seed_batch`) against the same
seeds trained one after another, in one invocation: the wall time of `masklab train`
for the group (imports, training, validation, checkpoints, test evaluation, writes)
and the test accuracies of both, so the speed-up sits next to the evidence that the
runs are the same runs. Last line: `ratio: X` (sequential wall / batched wall).

    python bench/seed_batch.py [--spec experiments/quickstart.yaml] [--seeds 5] [--repeat 1] [--jobs] [--step]

--jobs adds a third way to use a CPU: the seeds split between one process per usable
core, each with one thread (what a parallel executor does). --step adds a per-step
comparison of ways to batch seeds in one process: S separate steps,
`torch.func.vmap` over `functional_call`, and masklab's grouped convolutions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train(spec: Path, seeds: list[int], sets: list[str], runs: Path, threads: int | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "masklab", "train", str(spec), "--seeds", ",".join(map(str, seeds))]
    cmd += [a for s in sets for a in ("--set", s)] + ["--runs-dir", str(runs), "-q", "--format", "json"]
    cmd += ["--threads", str(threads)] if threads else []
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def finish(procs: list[subprocess.Popen]) -> list[dict]:
    rows = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"masklab train failed ({proc.returncode}): {err.strip()[-500:]}")
        rows += json.loads(out)["rows"]
    return sorted(rows, key=lambda r: r["seed"])


def side(kind: str, spec: Path, seeds: list[int], device: str, runs: Path) -> tuple[float, list[dict]]:
    """(wall seconds, one row per seed) of one way of training the group."""
    sets = [f"train.device={device}"]
    began = time.perf_counter()
    if kind == "sequential":
        rows = finish([train(spec, seeds, sets, runs)])
    elif kind == "batched":
        rows = finish([train(spec, seeds, sets + [f"train.seed_batch={len(seeds)}"], runs)])
    else:  # one single-threaded process per usable core
        cores = len(os.sched_getaffinity(0))
        parts = [seeds[i::cores] for i in range(cores) if seeds[i::cores]]
        rows = finish([train(spec, part, sets, runs / str(i), threads=1) for i, part in enumerate(parts)])
    return time.perf_counter() - began, rows


def step_comparison(seeds: int, batch: int, width: int, norm: str) -> None:
    """ms per optimisation step of `seeds` quickstart-sized CNNs, three ways, in this process."""
    from masklab import threads

    threads.configure()
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call, vmap

    from masklab.models.build import build_model
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
        losses = F.cross_entropy(stacked(x).flatten(0, 1), y.flatten(), reduction="none")
        losses.view(seeds, -1).mean(1).sum().backward()
        grouped_opt.step()

    # vmap cannot ask for channels_last inside the batched function: an NCHW forward
    template = models[0]
    params = {k: v.detach().clone().requires_grad_() for k, v in stacked.tensors.items() if v.requires_grad}
    buffers = {k: v for k, v in stacked.tensors.items() if not v.requires_grad}
    vmap_opt = AdamW([{"params": list(params.values())}], lr=1e-3)

    def loss_one(p, b, xs, ys):
        return F.cross_entropy(functional_call(template, (p, b), (xs,)), ys)

    batched_loss = vmap(loss_one, randomness="different")

    def vmapped() -> None:
        vmap_opt.zero_grad()
        batched_loss(params, buffers, x, y).sum().backward()
        vmap_opt.step()

    original = CNN.forward
    CNN.forward = lambda self, inp: self.head(self.features(self.standardize(inp)))
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
    parser.add_argument("--jobs", action="store_true", help="also: one single-threaded process per core")
    parser.add_argument("--step", action="store_true", help="also compare per-step ways of batching")
    args = parser.parse_args()
    seeds = list(range(args.seeds))
    print(
        f"load average {os.getloadavg()[0]:.2f}; {len(os.sched_getaffinity(0))} usable cores; "
        f"device {args.device}; spec {args.spec.name}; seeds {seeds}"
    )
    if args.step:
        for norm in ("group", "none"):  # vmap needs a model without GroupNorm
            step_comparison(args.seeds, 128, 16, norm)
    kinds = ["sequential", "batched"] + (["jobs"] if args.jobs else [])
    walls: dict[str, list[float]] = {k: [] for k in kinds}
    rows: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeat):
            for kind in kinds:
                wall, rows[kind] = side(kind, args.spec, seeds, args.device, Path(tmp) / f"{rep}-{kind}")
                walls[kind].append(wall)
                loops = sum(r["train_seconds"] for r in rows[kind])
                print(f"  {kind:10s} wall {wall:6.1f} s  (training loops {loops:6.1f} s)", flush=True)
    for kind in kinds:
        accs = [r["test_acc"] for r in rows[kind]]
        spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(
            f"{kind:10s} median wall {statistics.median(walls[kind]):6.1f} s; test_acc mean {statistics.mean(accs):.4f} "
            f"sd {spread:.4f}: {', '.join(f'{a:.4f}' for a in accs)}"
        )
    if args.jobs:
        print(f"jobs ratio: {statistics.median(walls['sequential']) / statistics.median(walls['jobs']):.2f}")
    print(f"ratio: {statistics.median(walls['sequential']) / statistics.median(walls['batched']):.2f}")


if __name__ == "__main__":
    main()
