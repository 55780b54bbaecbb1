"""The decoded-dataset cache: hits give the same arrays and fingerprint, a changed
source misses, damaged entries are rebuilt, concurrent writers never leave a partial file."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
from test_data import write_idx_folder

from masklab.data import cache, registry

from conftest import cli, run_dirs, tiny_spec


def entries(root: Path) -> list[Path]:
    folder = root / "cache" / "decoded"
    return sorted(folder.glob("*.npz")) if folder.is_dir() else []


def same(a: registry.Dataset, b: registry.Dataset) -> bool:
    arrays = ("train_x", "train_y", "test_x", "test_y")
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in arrays) and a.classes == b.classes


def test_a_hit_serves_the_decoded_arrays_and_their_fingerprint(workdir, monkeypatch):
    write_idx_folder(workdir / "digits-idx")
    first = registry.load("idx:digits-idx")
    assert len(entries(workdir)) == 1
    fresh = first.fingerprint()
    calls = []
    monkeypatch.setattr(registry, "read_idx_pair", lambda *a: calls.append(a))  # a hit decodes nothing
    again = registry.load("idx:digits-idx")
    assert calls == [] and same(first, again)
    assert (
        again.known_fingerprint
        == fresh
        == registry.fingerprint_arrays(again.train_x, again.train_y, again.test_x, again.test_y)
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
    assert cache.load(cache_files(workdir / "digits-idx")) is not None  # rebuilt and readable


def cache_files(folder: Path) -> list[Path]:
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    return [folder / f"{n}.gz" for n in names]


PAYLOAD = {k: np.full(200_000, i, np.uint8) for i, k in enumerate(cache.ARRAYS)}


def _hammer(folder: str, rounds: int) -> tuple[int, int]:
    """Store and load the same entry over and over: (misses, wrong reads)."""
    misses = wrong = 0
    files = cache_files(Path(folder))
    for _ in range(rounds):
        cache.store(files, PAYLOAD, "f")
        hit = cache.load(files)
        if hit is None:
            misses += 1
        else:
            arrays, fingerprint = hit
            wrong += [int(arrays[k][-1]) for k in cache.ARRAYS] + [fingerprint] != [0, 1, 2, 3, "f"]
    return misses, wrong


def test_concurrent_writers_and_readers_never_see_a_partial_entry(workdir):
    """Entries are published by rename: once one exists, every read is a complete hit."""
    write_idx_folder(workdir / "digits-idx")
    cache.store(cache_files(workdir / "digits-idx"), PAYLOAD, "f")
    ctx = multiprocessing.get_context("spawn")  # children inherit MASKLAB_CACHE from the fixture
    with ctx.Pool(3) as pool:
        results = pool.starmap(_hammer, [(str(workdir / "digits-idx"), 30)] * 3)
    assert results == [(0, 0)] * 3
    assert len(entries(workdir)) == 1 and not list((workdir / "cache" / "decoded").glob(".*"))


def test_a_study_loads_and_fingerprints_its_data_once(workdir, write_spec, monkeypatch):
    """Two variants x two seeds, one data section: one decode, one hash, four runs."""
    loads, hashes = [], []
    real_load, real_hash = registry.load, registry.fingerprint_arrays
    monkeypatch.setattr(registry, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    monkeypatch.setattr(registry, "fingerprint_arrays", lambda *a: hashes.append(1) or real_hash(*a))
    body = tiny_spec(seeds=[0, 1], train={"epochs": 1})
    body["variants"] = {"a": {"train.lr": 0.01}, "b": {"train.lr": 0.02}}
    result = cli("train", write_spec(body), "-q")
    assert result.exit_code == 0, result.stderr
    assert len(run_dirs(workdir)) == 4
    assert len(loads) == 1 and len(hashes) == 1
    fingerprints = {json.loads((r / "run.json").read_text())["data"]["fingerprint"] for r in run_dirs(workdir)}
    assert len(fingerprints) == 1
