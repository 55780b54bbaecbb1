"""Wall time of training until the clean test accuracy first reaches a target on full
Fashion-MNIST: masklab's experiments/fashion-cnn.yaml vs the pytorch/examples MNIST
recipe, in one run, same data, machine and thread count. Last line: `ratio: X`.

    python bench/time_to_accuracy.py [--target 0.90] [--max-epochs 4] [--seed 0]

Clocks count training only: data loading before the first epoch and the test
evaluation after each epoch are excluded for both. masklab's clock is the sum of the
epochs' `train_seconds` (its training loop: batches, ops, forward, backward, step); its
test accuracy after each epoch is measured from the epoch's checkpoint. The peer is
bench/peer.py: Adadelta lr 1.0, StepLR gamma 0.7, batch 64, per-sample Dataset.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from masklab import threads

PLAN = threads.configure()  # before torch is imported, as every masklab command does (both sides run under it)

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from torch.utils.data import DataLoader  # noqa: E402

from masklab import spec as spec_mod  # noqa: E402
from masklab.data.batches import DeviceSplit  # noqa: E402
from masklab.data.checks import load_checked_data  # noqa: E402
from masklab.evaluation.metrics import predict  # noqa: E402
from masklab.events import Events  # noqa: E402
from masklab.models.build import build_model  # noqa: E402
from masklab.store.runs import RunStore  # noqa: E402
from masklab.study import runner as experiment  # noqa: E402

from peer import Normalized, examples_recipe, examples_test_accuracy, examples_train_epoch  # noqa: E402


def run_peer(ds, target: float, max_epochs: int, device: torch.device) -> list[tuple[int, float, float]]:
    model, optimizer, scheduler = examples_recipe(device=device)
    loader = DataLoader(Normalized(ds.train_x, ds.train_y), batch_size=64, shuffle=True)
    rows, clock = [], 0.0
    for epoch in range(1, max_epochs + 1):
        began = time.perf_counter()
        examples_train_epoch(model, optimizer, loader, device)
        scheduler.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        clock += time.perf_counter() - began
        acc = examples_test_accuracy(model, ds.test_x, ds.test_y, device)
        rows.append((epoch, clock, acc))
        print(f"  peer    epoch {epoch}: {clock:7.1f} s  test acc {acc:.4f}", flush=True)
        if acc >= target:
            break
    return rows


class TestEachEpoch(Events):
    """Measures test accuracy from each epoch's checkpoint (outside the training clock)."""

    def __init__(self, spec, ds, store: RunStore, device: torch.device) -> None:
        self.spec, self.ds, self.store, self.device = spec, ds, store, device
        self.rows: list[tuple[int, float, float]] = []
        self.clock = 0.0
        self.test = DeviceSplit(ds.test_x, ds.test_y, np.arange(len(ds.test_y)), device)

    def epoch(self, rid: str, row: dict) -> None:
        (run,) = self.store.all()
        state = torch.load(run.path / "checkpoint.pt", weights_only=True, map_location=self.device)["model"]
        model = build_model(self.spec.model, self.ds.shape, self.ds.num_classes, 0.0, 1.0).to(self.device)
        model.load_state_dict(state)
        p = predict(model, self.test, 2048)
        acc = float((p.predicted == p.labels).mean())
        self.clock += row["train_seconds"]
        self.rows.append((row["epoch"], self.clock, acc))
        print(f"  masklab epoch {row['epoch']}: {self.clock:7.1f} s  test acc {acc:.4f}", flush=True)


def run_masklab(spec_path: Path, seed: int, device: torch.device) -> tuple[list[tuple[int, float, float]], dict]:
    spec = spec_mod.load_spec(spec_path, [f"train.device={device}"])
    ds = load_checked_data(spec)
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(tmp)
        reporter = TestEachEpoch(spec, ds, store, device)
        outcome = experiment.train_spec(spec, [seed], store, reporter)[0]
        return reporter.rows, outcome.summary


def first_reaching(rows, target: float) -> tuple[int, float] | None:
    return next(((e, t) for e, t, a in rows if a >= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.90)
    parser.add_argument("--max-epochs", type=int, default=4, help="peer epochs at most")
    parser.add_argument("--spec", type=Path, default=ROOT / "experiments" / "fashion-cnn.yaml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (both sides run there)")
    args = parser.parse_args()
    device = torch.device(args.device)
    from masklab.data.registry import load

    ds = load("fashion-mnist")
    gpu = f"; {torch.cuda.get_device_name()}" if device.type == "cuda" else ""
    print(
        f"Fashion-MNIST {ds.train_x.shape[0]}/{ds.test_x.shape[0]}; torch {torch.__version__}; threads {torch.get_num_threads()}, wait {PLAN.wait_policy}; device {device}{gpu}"
    )
    print(f"masklab: {args.spec.name}")
    ours, summary = run_masklab(args.spec, args.seed, device)
    print("peer: pytorch/examples MNIST recipe")
    peer = run_peer(ds, args.target, args.max_epochs, device)
    mine, theirs = first_reaching(ours, args.target), first_reaching(peer, args.target)
    reach = lambda r: f"epoch {r[0]}, {r[1]:.1f} s" if r else "not reached"  # noqa: E731
    print(f"masklab: {reach(mine)} to {args.target:.0%}; final test acc {summary['test_acc']:.4f}")
    print(f"peer:    {reach(theirs)} to {args.target:.0%} (at most {args.max_epochs} epochs)")
    if mine and theirs:
        print(f"ratio: {theirs[1] / mine[1]:.1f}")
    else:
        print("ratio: n/a (a side did not reach the target)")


if __name__ == "__main__":
    main()
