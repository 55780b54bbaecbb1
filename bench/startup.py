"""`masklab --help` wall time against `python -c pass`, and proof that torch is not
imported. Last line: `ratio: X` (masklab --help time / bare interpreter time).

    python bench/startup.py [--repeat 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def wall(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    bare = wall([sys.executable, "-c", "pass"], args.repeat)
    helped = wall([sys.executable, "-m", "masklab", "--help"], args.repeat)
    trace = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import masklab.cli"], capture_output=True, text=True, check=True
    )
    modules = {line.rsplit("|", 1)[-1].strip() for line in trace.stderr.splitlines() if "|" in line}
    heavy = sorted(m for m in modules if m.split(".")[0] in ("torch", "numpy", "sklearn", "scipy", "matplotlib"))
    print(f"python -c pass:       {bare * 1000:7.1f} ms (median of {args.repeat})")
    print(f"masklab --help:       {helped * 1000:7.1f} ms (median of {args.repeat})")
    print(
        f"modules imported by masklab.cli: {len(modules)}; torch imported: {'yes' if any(m.startswith('torch') for m in heavy) else 'no'}; heavy: {', '.join(heavy) or 'none'}"
    )
    print(f"ratio: {helped / bare:.1f}")


if __name__ == "__main__":
    main()
