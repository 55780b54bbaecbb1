"""Why masklab never torch.compiles on CPU: a minimal reproduction.

    python bench/inductor_cpu_repro.py

Compiles, on CPU, the keyed hash masklab uses (two fmix32 rounds on per-sample keys,
broadcast over 49 patch positions) and compares it with eager. With torch 2.13.0 (CPU
build) the compiled kernel corrupts the heap (glibc aborts with "free(): invalid next
size" or "double free or corruption"): its vectorised loop over the 49 positions
stores full 16-lane vectors in the tail block, the pattern of pytorch/pytorch#196681.
The child process's fate is reported; masklab therefore compiles only on CUDA.
"""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import torch
from masklab.ops import keyed
idx = torch.randperm(60000)[:512]
base = torch.tensor(12345, dtype=torch.int32)
def f(idx, base):
    x = idx.to(torch.int32) * keyed.GOLDEN ^ base
    return keyed.unit_bits(keyed.fmix32(keyed.fmix32(x)), 49)
same = torch.equal(f(idx, base), torch.compile(f, dynamic=False)(idx, base))
print("compiled == eager:", same)
"""

if __name__ == "__main__":
    import torch

    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True)
    tail = (out.stdout + out.stderr).strip().splitlines()[-1:] or [""]
    print(f"torch {torch.__version__}: exit code {out.returncode}; last line: {tail[0]}")
    print(
        "ok: CPU inductor compiled the kernel correctly"
        if out.returncode == 0 and "True" in tail[0]
        else "bug reproduced: do not compile masklab's ops on CPU"
    )
