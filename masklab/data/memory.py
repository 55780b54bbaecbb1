"""How much memory this process may still use: checked before reading a file whose
header declares its size, and before training a model, so that a hostile header or a
too-large model is a one-line error instead of the kernel's out-of-memory killer."""

from __future__ import annotations

import resource


def available_memory() -> int | None:
    """Bytes this process can still allocate: Linux's MemAvailable, capped by an address
    space limit (ulimit -v) when one is set. None when unknown (not Linux)."""
    free = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        return None
    limit, _ = resource.getrlimit(resource.RLIMIT_AS)
    if limit != resource.RLIM_INFINITY and free is not None:
        free = min(free, max(0, limit - _address_space()))
    return free


def _address_space() -> int:
    """This process's virtual memory size in bytes (what RLIMIT_AS counts)."""
    try:
        with open("/proc/self/statm") as fh:
            import os

            return int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
