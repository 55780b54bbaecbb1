"""What the per-run figures cost: the four PNGs (curves, confusion, recall, ops preview)
drawn at the end of every run, against the run they belong to. Trains the quickstart
spec once in a temporary runs folder, then redraws its figures `--repeat` times.
Last line: `ratio: X` (figure seconds / the whole run's seconds, figures included).

    python bench/figures.py [--spec experiments/quickstart.yaml] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def import_seconds() -> float:
    """matplotlib with the Agg backend, imported in a fresh interpreter: paid once per process."""
    code = (
        "import time; t = time.perf_counter(); import matplotlib; matplotlib.use('Agg'); "
        "import matplotlib.pyplot; print(time.perf_counter() - t)"
    )
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "experiments" / "quickstart.yaml"))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import torch

    from masklab import spec as spec_mod
    from masklab.data.checks import load_checked_data
    from masklab.data.splits import build_data
    from masklab.events import Events
    from masklab.ops.pipeline import OpPipeline
    from masklab.store.runs import RunStore
    from masklab.study import runner
    from masklab.study.run_figures import write_figures

    spec = spec_mod.load_spec(Path(args.spec))
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "runs")
        began = time.perf_counter()
        (outcome,) = runner.train_spec(spec, [spec.seeds[0]], store, Events())
        run_seconds = time.perf_counter() - began
        run = outcome.run
        device = torch.device("cpu")
        data = build_data(load_checked_data(spec), spec.data.val_fraction, spec.seeds[0], device)
        steps = data.train.num_batches(spec.train.batch_size, drop_last=True)
        pipeline = OpPipeline(
            spec.train_ops,
            spec.seeds[0],
            data.shape,
            fill_mean=data.mean,
            fill_std=data.std,
            epochs=spec.train.epochs,
            steps_per_epoch=steps,
        )
        walls, cpus = [], []
        for _ in range(args.repeat):
            w, c = time.perf_counter(), time.process_time()
            write_figures(run, spec, data, pipeline)
            walls.append(time.perf_counter() - w)
            cpus.append(time.process_time() - c)
        sizes = {p.name: p.stat().st_size for p in sorted(run.path.glob("*.png"))}
        train_seconds = run.summary.get("train_seconds")
    figures = statistics.median(walls)
    once = import_seconds()
    print(f"spec: {args.spec} ({run.id})")
    print(f"whole run, figures included: {run_seconds:.2f} s wall (training loop {train_seconds:.2f} s)")
    print(f"figures per run: {figures:.3f} s wall, {statistics.median(cpus):.3f} s CPU (median of {args.repeat})")
    print(f"matplotlib import, once per process: {once:.3f} s")
    print("files: " + ", ".join(f"{k} {v / 1000:.0f} kB" for k, v in sizes.items()))
    print(f"ratio: {figures / run_seconds:.3f}")


if __name__ == "__main__":
    main()
