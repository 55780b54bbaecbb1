"""Run folders as bytes, for executors whose workers share no file system with the driver.

`pack` writes the files of run folders into an uncompressed tar (checkpoints do not
compress); hidden files (the lock, temporaries) stay behind. `unpack` accepts only
plain files and folders under relative paths, so a worker's bytes cannot write outside
the folder they are unpacked into.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path, PurePosixPath

from masklab.errors import RunError


def pack(folders: list[Path], only: tuple[str, ...] = (), names: list[str] | None = None) -> bytes:
    """The files of each folder, under the folder's name (or the one `names` gives it: a
    staged folder travels under its run id); `only` keeps just those names."""
    buffer = io.BytesIO()
    names = list(names or [])
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for index, folder in enumerate(folders):
            top = names[index] if index < len(names) else Path(folder).name
            for path in sorted(Path(folder).rglob("*")):
                rel = path.relative_to(folder)
                if any(part.startswith(".") for part in rel.parts) or path.is_symlink():
                    continue
                if only and rel.parts[0] not in only:
                    continue
                tar.add(path, arcname=str(PurePosixPath(top, *rel.parts)), recursive=False)
    return buffer.getvalue()


def unpack(data: bytes, into: Path) -> list[Path]:
    """Write packed folders under `into`; returns the top-level folders written."""
    into.mkdir(parents=True, exist_ok=True)
    tops: set[Path] = set()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        for member in tar.getmembers():
            parts = PurePosixPath(member.name).parts
            if not parts or member.name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
                raise RunError(f"refusing a shipped run folder entry {member.name!r}: not a plain relative file")
            target = into.joinpath(*parts)
            tops.add(into / parts[0])
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            target.write_bytes(source.read() if source else b"")
    return sorted(tops)
