"""Downloads of public IDX datasets, checked by size-independent SHA-256 sums.

A file is fetched into a temporary name beside its destination, hashed while it
streams, and renamed into place only when the hash matches: an interrupted or
tampered download never leaves a file that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from masklab.errors import DataError

IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

# SHA-256 of the published .gz files. MNIST: as listed by TensorFlow Datasets and other
# loaders for the cvdf/ossci mirrors; Fashion-MNIST: the files on Zalando's S3 bucket.
SOURCES: dict[str, dict] = {
    "mnist": {
        "mirrors": (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        "sha256": {
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    },
    "fashion-mnist": {
        "mirrors": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        "sha256": {
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
    },
}


def cache_dir() -> Path:
    """Where downloads go: $MASKLAB_CACHE, else $XDG_CACHE_HOME/masklab, else ~/.cache/masklab."""
    if os.environ.get("MASKLAB_CACHE"):
        return Path(os.environ["MASKLAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "masklab"


def publish(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a file of masklab's cache atomically: `write` fills a temporary file in the
    same folder, which is then renamed over `path`. A cache that cannot be written is no
    error (the caller computes again); nothing is left behind."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as out:
            write(out)
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def mirrors(name: str) -> tuple[str, ...]:
    """$MASKLAB_MIRROR (a base URL holding the IDX files) first, then the public mirrors."""
    own = os.environ.get("MASKLAB_MIRROR")
    public = SOURCES[name]["mirrors"]
    return ((own.rstrip("/") + "/",) if own else ()) + public


def fetch(url: str, dest: Path, sha256: str, timeout: float = 30.0) -> None:
    """Download url to dest, keeping it only if its SHA-256 equals `sha256`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != sha256:
            raise DataError(
                f"{url}: SHA-256 {digest.hexdigest()[:16]}... does not match the expected {sha256[:16]}...; the mirror serves a different file"
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def download(name: str, dest: Path | None = None) -> Path:
    """Fetch the four IDX files of `name` into the cache (or dest); returns the folder."""
    dest = dest or cache_dir() / name
    errors = []
    for filename, sha in SOURCES[name]["sha256"].items():
        if (dest / filename).is_file():
            continue
        for base in mirrors(name):
            try:
                fetch(base + filename, dest / filename, sha)
                break
            except (urllib.error.URLError, OSError, DataError) as exc:
                errors.append(f"{base}{filename}: {getattr(exc, 'reason', exc)}")
        else:
            raise DataError(f"could not download {name} ({errors[-1]}); get the IDX files by hand and set data.root")
    return dest
