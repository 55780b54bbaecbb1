"""File primitives more than one stage needs (the run store and the data writers), no
masklab imports: a leaf."""

from __future__ import annotations

import os
from pathlib import Path


def umask() -> int:
    """The process's file-creation mask (read by setting it and back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def readable(path: str | Path) -> None:
    """Give a temporary file (mkstemp makes them 0600) the usual permissions."""
    os.chmod(path, 0o666 & ~umask())
