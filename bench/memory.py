"""Peak memory (max RSS) of a full Fashion-MNIST training: masklab's
experiments/fashion-cnn.yaml vs the pytorch/examples recipe for one epoch, each in its
own process, measured by the kernel (getrusage of the child). Last line: `ratio: X`
(peer peak / masklab peak).

    python bench/memory.py [--spec experiments/fashion-cnn.yaml]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PEER = """
import sys; sys.path.insert(0, {bench!r})
from torch.utils.data import DataLoader
from peer import Normalized, examples_recipe, examples_train_epoch
from masklab.data.registry import load
ds = load("fashion-mnist")
model, optimizer, scheduler = examples_recipe()
examples_train_epoch(model, optimizer, DataLoader(Normalized(ds.train_x, ds.train_y), batch_size=64, shuffle=True))
"""


def peak_mib(cmd: list[str]) -> float:
    """Max RSS of `cmd`, in MiB, measured by a fresh parent process (ru_maxrss of
    RUSAGE_CHILDREN is the largest child a parent ever had, so one parent per command)."""
    out = subprocess.run(
        [sys.executable, str(Path(__file__)), "--child", *cmd], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip()) / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "experiments" / "fashion-cnn.yaml"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ours = peak_mib(
            [sys.executable, "-m", "masklab", "train", args.spec, "--runs-dir", tmp, "--device", "cpu", "-q"]
        )
    peer = peak_mib([sys.executable, "-c", PEER.format(bench=str(ROOT / "bench"))])
    print(f"peer (pytorch/examples recipe, 1 epoch): {peer:8.1f} MiB peak RSS")
    print(f"masklab train {Path(args.spec).name}:     {ours:8.1f} MiB peak RSS")
    print(f"ratio: {peer / ours:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        subprocess.run(sys.argv[2:], check=True, capture_output=True)
        print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    else:
        main()
