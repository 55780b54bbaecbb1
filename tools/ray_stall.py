"""Stall or kill the local Ray node under a running study and show what masklab says.

    python tools/ray_stall.py 90            # the raylet stopped (SIGSTOP) for 90 s, then continued
    python tools/ray_stall.py 0 --kill      # the raylet killed (SIGKILL)
    RAY_health_check_failure_threshold=5 RAY_health_check_period_ms=3000 \\
        RAY_health_check_timeout_ms=10000 python tools/ray_stall.py 90   # with Ray's own defaults

A 3-run `masklab train --executor ray` (3 seeds, 8 epochs of 1000 MNIST digits) runs in a
scratch folder; once a run has shipped two epochs, the raylet under it is stopped for the
given seconds (or killed). Prints masklab's exit code, the last lines of its stderr and
each run's status. Not part of the tests (minutes); docs/testing.md says what it showed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

SPEC = {
    "name": "stall",
    "seeds": [0, 1, 2],
    "data": {"dataset": "mnist-mini", "train_limit": 1000, "test_limit": 200, "val_fraction": 0.2},
    "model": {"arch": "mlp", "hidden": [64], "dropout": 0.0},
    "train": {"epochs": 8, "batch_size": 32, "lr": 0.01},
}


def raylet_under(pid: int) -> int | None:
    """The pid of the raylet among the descendants of `pid` (read from /proc)."""
    parents, lines = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                lines[int(entry.name)] = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                continue
    todo, seen = [pid], set()
    while todo:
        parent = todo.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in seen:
                seen.add(child)
                todo.append(child)
    return next((p for p in seen if lines.get(p, "").endswith("/raylet")), None)


def statuses(runs: Path) -> dict[str, tuple]:
    out = {}
    for path in runs.glob("*/run.json"):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        out[path.parent.name] = (info.get("status"), info.get("epochs_done"), info.get("error"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("seconds", type=float, help="how long the raylet stays stopped")
    parser.add_argument("--kill", action="store_true", help="kill the raylet instead of stopping it")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ray-stall-"))
    (root / "spec.yaml").write_text(yaml.safe_dump(SPEC, sort_keys=False))
    env = {**os.environ, "MASKLAB_RUNS": str(root / "runs"), "MASKLAB_FIGURES": "0", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "masklab", "train", str(root / "spec.yaml"), "--executor", "ray"]
    began = time.time()
    proc = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not any(s[0] == "running" and (s[1] or 0) >= 2 for s in statuses(root / "runs").values()):
        if proc.poll() is not None or time.time() - began > 600:
            sys.exit(f"the study ended before a run shipped two epochs:\n{proc.stderr.read()}")
        time.sleep(0.2)
    raylet = raylet_under(proc.pid)
    print(f"{'killing' if args.kill else 'stopping'} the raylet (pid {raylet}) at {time.time() - began:.0f} s")
    os.kill(raylet, signal.SIGKILL if args.kill else signal.SIGSTOP)
    if not args.kill:
        time.sleep(args.seconds)
        os.kill(raylet, signal.SIGCONT)
    err = proc.communicate(timeout=900)[1]
    print(f"masklab exited {proc.returncode} at {time.time() - began:.0f} s; its stderr ends:")
    print("\n".join("  " + line for line in err.splitlines()[-4:]))
    for rid, state in sorted(statuses(root / "runs").items()):
        print(f"  {rid}: {state}")


if __name__ == "__main__":
    main()
