"""The decoded-dataset cache: hits give the same arrays and fingerprint, a changed
source misses, damaged entries are rebuilt, concurrent writers never leave a partial file."""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from test_data import write_idx_folder

from masklab.data import cache, dataset as dataset_mod, fingerprint, idx_folders, registry
from masklab.data.dataset import Dataset
from masklab.data.fingerprint import fingerprint_arrays

from conftest import cli, run_dirs, tiny_spec


def entries(root: Path) -> list[Path]:
    folder = root / "cache" / "decoded"
    return sorted(folder.glob("*.npz")) if folder.is_dir() else []


def same(a: Dataset, b: Dataset) -> bool:
    arrays = ("train_x", "train_y", "test_x", "test_y")
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in arrays) and a.classes == b.classes


def test_a_hit_serves_the_decoded_arrays_and_their_fingerprint(workdir, monkeypatch):
    write_idx_folder(workdir / "digits-idx")
    first = registry.load("idx:digits-idx")
    assert len(entries(workdir)) == 1
    fresh = first.fingerprint()
    calls = []
    monkeypatch.setattr(idx_folders, "read_idx_pair", lambda *a: calls.append(a))  # a hit decodes nothing
    again = registry.load("idx:digits-idx")
    assert calls == [] and same(first, again)
    assert (
        again.known_fingerprint == fresh == fingerprint_arrays(again.train_x, again.train_y, again.test_x, again.test_y)
    )


def test_uncompressed_files_are_not_copied_into_the_cache(workdir):
    write_idx_folder(workdir / "plain", gz=False)
    registry.load("idx:plain")
    assert entries(workdir) == []


def test_a_changed_source_file_misses(workdir):
    folder = workdir / "digits-idx"
    write_idx_folder(folder)
    before = registry.load(f"idx:{folder}")
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    from masklab.data.idx import write_idx

    write_idx(labels, (np.arange(20) % 3).astype(np.uint8))  # new content, new size/mtime
    after = registry.load(f"idx:{folder}")
    assert list(after.test_y[:4]) == [0, 1, 2, 0] and not np.array_equal(before.test_y, after.test_y)
    assert after.fingerprint() != before.fingerprint()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "foreign"])
def test_a_damaged_entry_is_rebuilt(workdir, damage):
    write_idx_folder(workdir / "digits-idx")
    good = registry.load("idx:digits-idx")
    (entry,) = entries(workdir)
    raw = entry.read_bytes()
    if damage == "truncate":
        entry.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":  # flip bytes inside the image data: the zip CRC catches it
        entry.write_bytes(raw[:2000] + bytes(b ^ 0xFF for b in raw[2000:2100]) + raw[2100:])
    elif damage == "empty":
        entry.write_bytes(b"")
    else:  # a valid entry, but written for other files
        np.savez(entry, key=np.array("other"), fingerprint=np.array("0" * 16), train_x=np.zeros(1))
    again = registry.load("idx:digits-idx")
    assert same(good, again) and again.fingerprint() == good.fingerprint()
    assert cache.load(cache.source_key(cache_files(workdir / "digits-idx"))) is not None  # rebuilt and readable


def cache_files(folder: Path) -> list[Path]:
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return [folder / f"{n}.gz" for n in names]


PAYLOAD = {k: np.full(200_000, i, np.uint8) for i, k in enumerate(cache.ARRAYS)}
PAYLOAD_FINGERPRINT = fingerprint_arrays(*PAYLOAD.values())


def _hammer(folder: str, rounds: int) -> tuple[int, int]:
    """Store and load the same entry over and over: (misses, wrong reads)."""
    misses = wrong = 0
    files = cache_files(Path(folder))
    key = cache.source_key(files)
    for _ in range(rounds):
        cache.store(files, key, PAYLOAD, PAYLOAD_FINGERPRINT)
        hit = cache.load(key)
        if hit is None:
            misses += 1
        else:
            arrays, fingerprint = hit
            wrong += [int(arrays[k][-1]) for k in cache.ARRAYS] + [fingerprint] != [0, 1, 2, 3, PAYLOAD_FINGERPRINT]
    return misses, wrong


def test_concurrent_writers_and_readers_never_see_a_partial_entry(workdir):
    """Entries are published by rename: once one exists, every read is a complete hit."""
    write_idx_folder(workdir / "digits-idx")
    files = cache_files(workdir / "digits-idx")
    cache.store(files, cache.source_key(files), PAYLOAD, PAYLOAD_FINGERPRINT)
    ctx = multiprocessing.get_context("spawn")  # children inherit MASKLAB_CACHE from the fixture
    with ctx.Pool(3) as pool:
        results = pool.starmap(_hammer, [(str(workdir / "digits-idx"), 30)] * 3)
    assert results == [(0, 0)] * 3
    assert len(entries(workdir)) == 1 and not list((workdir / "cache" / "decoded").glob(".*"))


def test_a_study_loads_and_fingerprints_its_data_once(workdir, write_spec, monkeypatch):
    """Two variants x two seeds, one data section: one decode, one hash, four runs."""
    loads, hashes = [], []
    real_load, real_hash = registry.load, fingerprint_arrays
    monkeypatch.setattr(registry, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    monkeypatch.setattr(dataset_mod, "fingerprint_arrays", lambda *a: hashes.append(1) or real_hash(*a))
    body = tiny_spec(seeds=[0, 1], train={"epochs": 1})
    body["variants"] = {"a": {"train.lr": 0.01}, "b": {"train.lr": 0.02}}
    result = cli("train", write_spec(body), "-q")
    assert result.exit_code == 0, result.stderr
    assert len(run_dirs(workdir)) == 4
    assert len(loads) == 1 and len(hashes) == 1
    fingerprints = {json.loads((r / "run.json").read_text())["data"]["fingerprint"] for r in run_dirs(workdir)}
    assert len(fingerprints) == 1


def gzip_of_size(content: bytes, size: int) -> bytes:
    """A gzip file of exactly `size` bytes holding `content` (an FNAME field pads the header)."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = co.compress(content) + co.flush()
    trailer = struct.pack("<II", zlib.crc32(content), len(content))
    pad = size - 10 - len(body) - len(trailer) - 1
    assert pad >= 0
    out = b"\x1f\x8b\x08\x08\0\0\0\0\x00\xff" + b"n" * pad + b"\0" + body + trailer
    assert len(out) == size and gzip.decompress(out) == content
    return out


def edit_in_place_keeping_mtime(path: Path, content: bytes) -> None:
    """New content, same size, same inode, and the old mtime put back (only ctime tells)."""
    before = os.stat(path)
    with open(path, "r+b") as fh:
        fh.write(gzip_of_size(content, before.st_size))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)


def test_an_edit_that_keeps_size_inode_and_mtime_misses(workdir, monkeypatch):
    """The digest cache is keyed by ctime too: restoring the mtime does not hide an edit."""
    monkeypatch.setattr(fingerprint, "RACY_S", 0.0)  # cache even files written a moment ago
    folder = workdir / "digits-idx"
    write_idx_folder(folder)
    before = registry.load("idx:digits-idx")
    time.sleep(0.05)  # past the clock tick of the first write: the edit gets a new ctime
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[8:] = bytes(len(raw) - 8)  # every test label 0
    edit_in_place_keeping_mtime(labels, bytes(raw))
    fingerprint._memo.clear()  # as a new process would start
    after = registry.load("idx:digits-idx")
    assert list(before.test_y[:3]) == [0, 1, 2] and list(after.test_y) == [0] * 20
    assert after.fingerprint() != before.fingerprint()


def test_a_substituted_entry_is_rebuilt_not_trusted(workdir):
    """An entry holding other valid arrays under the original fingerprint is verified
    against that fingerprint, removed and decoded again."""
    write_idx_folder(workdir / "digits-idx")
    good = registry.load("idx:digits-idx")
    (entry,) = entries(workdir)
    with np.load(entry) as z:
        body = {k: z[k] for k in z.files}
    body["test_y"] = (body["test_y"] + 1) % 10  # still valid labels, but not the file's
    np.savez(entry, **body)
    again = registry.load("idx:digits-idx")
    assert np.array_equal(again.test_y, good.test_y) and again.fingerprint() == good.fingerprint()
    with np.load(entries(workdir)[0]) as z:
        assert np.array_equal(z["test_y"], good.test_y)  # the entry was rebuilt from the files


def test_a_digest_is_cached_by_identity_and_rehashed_when_it_changes(workdir, monkeypatch):
    monkeypatch.setattr(fingerprint, "RACY_S", 0.0)
    path = workdir / "f.bin"
    path.write_bytes(b"a" * 1000)
    hashed = []
    real = fingerprint._hash_file
    monkeypatch.setattr(fingerprint, "_hash_file", lambda p: hashed.append(p) or real(p))
    first = fingerprint.file_digest(path)
    fingerprint._memo.clear()
    assert fingerprint.file_digest(path) == first and len(hashed) == 1  # from the cache file
    time.sleep(0.05)
    before = os.stat(path)
    with open(path, "r+b") as fh:
        fh.write(b"b")  # same size, same inode
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    fingerprint._memo.clear()
    assert fingerprint.file_digest(path) != first and len(hashed) == 2


def test_a_fresh_file_is_hashed_again_not_cached(workdir, monkeypatch):
    """Within a second of its last change a file's timestamps could repeat (git's racy
    case): its digest is not cached."""
    path = workdir / "f.bin"
    path.write_bytes(b"abc")
    fingerprint.file_digest(path)
    assert not list((workdir / "cache").glob("digests/*.json"))
    monkeypatch.setattr(fingerprint, "RACY_S", 0.0)
    fingerprint.file_digest(path)
    assert len(list((workdir / "cache").glob("digests/*.json"))) == 1


def test_a_folder_digest_covers_added_files_and_skips_hidden_ones(workdir):
    folder = workdir / "texts"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "1.txt").write_text("one")
    first = fingerprint.input_digest(folder)
    (folder / ".hidden").write_text("x")
    assert fingerprint.input_digest(folder) == first
    (folder / "a" / "2.txt").write_text("two")
    assert fingerprint.input_digest(folder) != first
