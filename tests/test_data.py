"""Datasets: IDX reading and its errors, the registry's lookup, splits, downloads."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from masklab.data import download, registry
from masklab.data.idx import read_idx, read_idx_pair, write_idx
from masklab.data.stratified import stratified_subset, validation_split
from masklab.errors import DataError


def write_idx_folder(folder: Path, n_train: int = 40, n_test: int = 20, side: int = 28, gz: bool = True) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{split}-images-idx3-ubyte{ext}", rng.integers(0, 256, (n, side, side), dtype=np.uint8))
        write_idx(folder / f"{split}-labels-idx1-ubyte{ext}", np.arange(n, dtype=np.uint8) % 10)


def test_idx_round_trip(tmp_path):
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a.idx", "a.idx.gz"):
        write_idx(tmp_path / name, a)
        b = read_idx(tmp_path / name)
        assert b.dtype == np.uint8 and b.shape == (2, 3, 4) and np.array_equal(a, b)
        assert b.flags.writeable


def test_idx_errors_name_the_file(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    good = tmp_path / "images.idx"
    write_idx(good, a)
    raw = good.read_bytes()
    (tmp_path / "short.idx").write_bytes(raw[:-10])
    (tmp_path / "long.idx").write_bytes(raw + b"x")
    (tmp_path / "png.idx").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    (tmp_path / "trunc.gz").write_bytes(gzip.compress(raw)[:200])
    cases = {
        "short.idx": "truncated",
        "long.idx": "longer than its header says",
        "png.idx": "not an IDX file",
        "trunc.gz": "truncated or corrupt gzip",
    }
    for name, message in cases.items():
        with pytest.raises(DataError) as err:
            read_idx(tmp_path / name)
        assert str(tmp_path / name) in str(err.value) and message in str(err.value)
    with pytest.raises(DataError, match="holds a 3-dimensional array, expected 1"):
        read_idx(good, ndim=1)


def test_idx_pair_must_agree(tmp_path):
    write_idx(tmp_path / "x.idx", np.zeros((5, 4, 4), dtype=np.uint8))
    write_idx(tmp_path / "y.idx", np.zeros(4, dtype=np.uint8))
    with pytest.raises(DataError, match="5 images but y.idx holds 4 labels"):
        read_idx_pair(tmp_path / "x.idx", tmp_path / "y.idx")


def test_mnist_mini_is_real_and_stratified():
    ds = registry.load("mnist-mini")
    assert ds.train_x.shape == (4000, 1, 28, 28) and ds.test_x.shape == (1000, 1, 28, 28)
    assert ds.train_x.dtype == np.uint8
    assert np.bincount(ds.train_y).tolist() == [400] * 10
    assert np.bincount(ds.test_y).tolist() == [100] * 10
    # real digits: mostly dark background, bright strokes
    assert 0.08 < ds.train_x.mean() / 255 < 0.2
    assert ds.fingerprint() == registry.load("mnist-mini").fingerprint()


def test_digits_from_sklearn():
    ds = registry.load("digits")
    assert ds.shape == (1, 8, 8) and len(ds.train_y) + len(ds.test_y) == 1797
    assert ds.train_x.max() == 255


def test_idx_folder_and_public_lookup(workdir, monkeypatch):
    write_idx_folder(workdir / "mine")
    ds = registry.load(f"idx:{workdir / 'mine'}")
    assert ds.train_x.shape == (40, 1, 28, 28) and ds.test_x.shape == (20, 1, 28, 28)
    # $MASKLAB_DATA/<name> is searched for the public names
    write_idx_folder(workdir / "store" / "mnist", n_train=30, gz=False)
    monkeypatch.setenv("MASKLAB_DATA", str(workdir / "store"))
    ds = registry.load("mnist")
    assert len(ds.train_y) == 30 and ds.source == str(workdir / "store" / "mnist")
    # data.root wins over $MASKLAB_DATA
    write_idx_folder(workdir / "root", n_train=50)
    assert len(registry.load("mnist", root=str(workdir / "root")).train_y) == 50


def test_missing_public_data_says_how_to_get_it(workdir):
    (workdir / "empty").mkdir()
    with pytest.raises(DataError) as err:
        registry.load("mnist", root=str(workdir / "empty"))
    assert "IDX files not found" in str(err.value) and "data.download: true" in str(err.value)
    # a data.root that does not exist is a typo, not a reason to search elsewhere
    with pytest.raises(DataError, match=r"data.root .*nothing: no such folder"):
        registry.load("fashion-mnist", root=str(workdir / "nothing"))
    with pytest.raises(DataError, match="missing IDX files"):
        (workdir / "half").mkdir()
        registry.load(f"idx:{workdir / 'half'}")


def test_stratified_limit_and_validation_split():
    labels = np.repeat(np.arange(10), 50)
    keep = stratified_subset(labels, 100)
    assert len(keep) == 100 and np.bincount(labels[keep]).tolist() == [10] * 10
    tr, va = validation_split(labels, 0.2, seed=3)
    assert len(va) == 100 and np.bincount(labels[va]).tolist() == [10] * 10
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 500
    tr2, va2 = validation_split(labels, 0.2, seed=4)
    assert not np.array_equal(va, va2)
    assert np.array_equal(validation_split(labels, 0.2, seed=3)[1], va)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def loopback_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/served."""
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_from_a_mirror_checks_sha256(workdir, loopback_server, monkeypatch):
    served, url = loopback_server
    write_idx_folder(served, n_train=30, n_test=10)
    sums = {name: hashlib.sha256((served / name).read_bytes()).hexdigest() for name in download.IDX_FILES}
    # your own mirror is tried first; when it cannot be reached the public ones are tried in order
    monkeypatch.setitem(download.SOURCES, "mnist", {"mirrors": ("http://127.0.0.1:9/down/", url), "sha256": sums})
    monkeypatch.setenv("MASKLAB_MIRROR", "http://127.0.0.1:9/unreachable/")
    tried = []
    fetch = download.fetch
    monkeypatch.setattr(download, "fetch", lambda u, *a, **k: tried.append(u) or fetch(u, *a, **k))
    ds = registry.load("mnist", download=True)
    assert tried[:3] == [
        f"http://127.0.0.1:9/unreachable/{download.IDX_FILES[0]}",
        f"http://127.0.0.1:9/down/{download.IDX_FILES[0]}",
        f"{url}{download.IDX_FILES[0]}",
    ]
    assert len(tried) == 3 * 4
    assert len(ds.train_y) == 30 and len(ds.test_y) == 10
    cached = workdir / "cache" / "mnist"
    assert sorted(p.name for p in cached.iterdir()) == sorted(download.IDX_FILES)
    # a second load finds the cache without the network
    monkeypatch.setenv("MASKLAB_MIRROR", "http://127.0.0.1:9/")
    assert len(registry.load("mnist", download=False).train_y) == 30


def test_download_rejects_a_wrong_checksum(workdir, loopback_server, monkeypatch):
    served, url = loopback_server
    write_idx_folder(served)
    sums = {name: "0" * 64 for name in download.IDX_FILES}
    monkeypatch.setitem(download.SOURCES, "mnist", {"mirrors": (), "sha256": sums})
    monkeypatch.setenv("MASKLAB_MIRROR", url)
    with pytest.raises(DataError, match="does not match the expected"):
        registry.load("mnist", download=True)
    assert list((workdir / "cache" / "mnist").iterdir()) == []  # nothing kept, not even a temp file


PUBLISHED_SHA256 = {  # an independent copy of the published .gz sums: a changed digit in download.py fails here
    "mnist": [
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ],
    "fashion-mnist": [
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    ],
}


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_the_real_checksums_are_pinned(name):
    pinned = download.SOURCES[name]["sha256"]
    assert list(pinned) == list(download.IDX_FILES) and list(pinned.values()) == PUBLISHED_SHA256[name]
    # (Debian's dataset-fashion-mnist recompresses the files, so its .gz bytes cannot confirm these offline)
