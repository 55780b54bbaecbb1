"""Bad input is refused before it costs anything: YAML bombs, deep nesting, hostile
dataset files, weights that are not weights, models that cannot fit, and --plot paths.
Every case: one line, exit 1 or 2, no traceback, no run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from masklab import spec as spec_mod
from masklab.data.idx import read_idx
from masklab.errors import DataError, SpecError

from conftest import cli, run_dirs, tiny_spec


def bomb(levels: int = 9, fan: int = 9) -> str:
    """A few hundred bytes of aliases that expand to fan**levels values."""
    items = ['&a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    items += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * fan) + "]" for i in range(1, levels)]
    return "name: bomb\ntrain:\n  epochs: [" + ", ".join(items) + "]\n"


def test_an_alias_bomb_is_refused_cheaply_under_a_memory_limit(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb())
    assert len(path.read_bytes()) < 600
    child = textwrap.dedent(
        f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({512 << 20}, {512 << 20}))
        from masklab import spec
        from masklab.errors import SpecError
        try:
            spec.load_study({str(path)!r})
        except SpecError as exc:
            print(exc)
            sys.exit(2)
        """
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "expands to more than 200,000 values through aliases" in done.stdout


def test_the_alias_limit_is_far_above_real_specs():
    text = "name: ok\nbase: &b {op: gaussian, sigma: 0.1}\n"
    assert spec_mod.parse_yaml_text(text, "t")["base"] == {"op": "gaussian", "sigma": 0.1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: deep\ndata: " + "[" * 5000 + "]" * 5000 + "\n", "nests more than 64 levels"),
        ("name: deep\ndata: " + "[" * 100 + "]" * 100 + "\n", "nests more than 64 levels"),
        ("name: deep\ndata: " + "{a: " * 70 + "1" + "}" * 70 + "\n", "nests more than 64 levels"),
        ("name: r\ndata: &d [*d]\n", "recursive alias"),
    ],
    ids=["5000-lists", "100-lists", "70-mappings", "recursive"],
)
def test_deep_or_recursive_yaml_is_a_spec_error(workdir, write_spec, text, message):
    result = cli("train", write_spec(text))
    assert result.exit_code == 2 and message in result.stderr and result.stderr.count("\n") == 1
    with pytest.raises(SpecError, match=message):
        spec_mod.parse_yaml_text(text, "t")


def test_a_huge_spec_file_is_refused_unread(workdir, write_spec):
    result = cli("train", write_spec("name: big\n# " + "x" * (2 << 20) + "\n"))
    assert result.exit_code == 2 and "a spec is a small text file" in result.stderr


def images(n: int, h: int = 8, w: int = 8, c: int | None = None, dtype=np.uint8) -> np.ndarray:
    shape = (n, h, w) if c is None else (n, c, h, w)
    return (np.arange(int(np.prod(shape))) % 251).astype(dtype).reshape(shape)


def labels(n: int, dtype=np.int64) -> np.ndarray:
    return (np.arange(n) % 3).astype(dtype)


SPLITS = {"train_images": images(60), "train_labels": labels(60), "test_images": images(20), "test_labels": labels(20)}
HOSTILE_NPZ = {
    "label-out-of-range": ({"train_labels": np.r_[labels(59), [10**9]]}, "go up to 1000000000"),
    "uint64-max-label": ({"train_labels": np.r_[labels(59, np.uint64), np.array([2**64 - 1], np.uint64)]}, "go up to"),
    "negative-label": ({"test_labels": -labels(20) - 1}, "negative labels"),
    "float-labels": ({"train_labels": labels(60).astype(np.float32)}, "integer labels"),
    "shape-mismatch": ({"test_images": images(20, 9, 9)}, "both splits must match"),
    "channel-mismatch": ({"train_images": images(60, c=3)}, "both splits must match"),
    "empty-test": ({"test_images": images(0), "test_labels": labels(0)}, "the test split holds no images"),
    "zero-size": ({"train_images": images(60, 0, 0), "test_images": images(20, 0, 0)}, "C, H, W >= 1"),
    "nan-pixels": ({"train_images": np.full((60, 8, 8), np.nan, np.float32)}, "NaN or infinite pixels"),
    "label-count": ({"train_labels": labels(59)}, "must be 60 integer labels"),
    "5d-images": ({"train_images": images(60).reshape(60, 1, 1, 8, 8)}, "(N, H, W) or (N, C, H, W)"),
    "object-array": ({"train_images": np.array([{"a": 1}] * 60, dtype=object)}, "holds Python objects"),
}


def npz_spec(write_spec, path) -> object:
    return write_spec(tiny_spec(data={"dataset": f"npz:{path}", "train_limit": None, "test_limit": None}))


@pytest.mark.parametrize("case", HOSTILE_NPZ)
def test_hostile_npz_files_are_refused_before_any_folder(workdir, write_spec, case):
    changes, message = HOSTILE_NPZ[case]
    path = workdir / f"{case}.npz"
    np.savez(path, **{**SPLITS, **changes})
    result = cli("train", npz_spec(write_spec, path))
    assert result.exit_code == 1 and message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1 and "internal error" not in result.stderr
    assert run_dirs(workdir) == []


def manifest_file(path, manifest: object, **arrays) -> None:
    arrays = {"images": images(10).astype(np.float32) / 255, "labels": labels(10), **arrays}
    np.savez(path, manifest=np.array(json.dumps(manifest)), **arrays)


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ([1, 2], "has no source dataset"),
        ({"source": "mnist-mini"}, "has no source dataset"),
        ({"source": {"dataset": 5, "fingerprint": "x"}, "split": "train"}, "source is incomplete"),
        ({"source": {"dataset": "mnist-mini", "fingerprint": "x"}, "split": "val"}, "not train or test"),
        ({"source": {"dataset": "mnist-mini", "fingerprint": "x"}, "split": "train", "copies": -2}, "positive integer"),
        ({"source": {"dataset": "mnist-mini", "fingerprint": "x"}, "split": "train", "copies": 3}, "not 3 copies"),
        ({"source": {"dataset": "mnist-mini", "fingerprint": "x"}, "split": "train", "sha256": [1]}, "sha256 is not"),
    ],
)
def test_a_malformed_manifest_is_one_line(workdir, write_spec, manifest, message):
    path = workdir / "m.npz"
    manifest_file(path, manifest)
    result = cli("train", npz_spec(write_spec, path))
    assert result.exit_code == 1 and message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert run_dirs(workdir) == []


def test_a_self_referencing_or_cyclic_manifest_stops_at_once(workdir, write_spec):
    a, b = workdir / "a.npz", workdir / "b.npz"
    manifest_file(a, {"source": {"dataset": f"npz:{a}", "fingerprint": "x"}, "split": "train"})
    result = cli("train", npz_spec(write_spec, a))
    assert result.exit_code == 1 and "leads back to this file" in result.stderr
    manifest_file(a, {"source": {"dataset": f"npz:{b}", "fingerprint": "x"}, "split": "train"})
    manifest_file(b, {"source": {"dataset": f"npz:{a}", "fingerprint": "x"}, "split": "train"})
    result = cli("train", npz_spec(write_spec, a))
    assert result.exit_code == 1 and "leads back to this file" in result.stderr


def test_files_that_are_not_npz_archives(workdir, write_spec):
    np.save(workdir / "array.npy", images(3))
    os.replace(workdir / "array.npy", workdir / "array.npz")
    result = cli("train", npz_spec(write_spec, workdir / "array.npz"))
    assert result.exit_code == 1 and "not a zip archive" in result.stderr
    huge = workdir / "huge.npz"  # a header claiming 10^12 bytes, a few bytes of data
    np.savez(huge, **SPLITS)
    raw = huge.read_bytes().replace(b"'shape': (60, 8, 8)", b"'shape': (10000000, 100000, 1)", 1)
    huge.write_bytes(raw)
    result = cli("train", npz_spec(write_spec, huge))
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "internal error" not in result.stderr


def test_an_idx_header_cannot_allocate_what_the_file_does_not_hold(tmp_path):
    path = tmp_path / "images.idx"
    path.write_bytes(bytes([0, 0, 8, 3]) + (0xFFFFFFF).to_bytes(4, "big") * 3 + b"\x00" * 64)
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)  # before allocating 2^84 bytes
    path.write_bytes(bytes([0, 0, 8, 3]) + (0).to_bytes(4, "big") * 3)
    with pytest.raises(DataError, match="declares an empty array"):
        read_idx(path)


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def trained(workdir, write_spec, **changes):
    assert cli("train", write_spec(tiny_spec(**changes)), "-q").exit_code == 0
    return run_dirs(workdir)[-1]


def test_a_model_file_that_is_not_a_state_dict_is_refused_in_one_line(workdir, write_spec):
    run = trained(workdir, write_spec)
    for hostile in ({"weights": Evil()}, [1, 2, 3], {"w": "not a tensor"}):
        torch.save(hostile, run / "model.pt")
        result = cli("eval", str(run))
        assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.stderr
        assert "model.pt" in result.stderr and "weights_only" not in result.stderr and "trust" not in result.stderr
        assert not (workdir / "pwned").exists()
        assert json.loads((run / "run.json").read_text())["status"] == "done"
    torch.save({"head.weight": torch.zeros(2, 2)}, run / "model.pt")
    result = cli("eval", str(run))
    assert result.exit_code == 1 and "do not match the run's model" in result.stderr


def test_a_hostile_checkpoint_does_not_flip_an_interrupted_run(workdir, write_spec, monkeypatch):
    from masklab.study import runner

    path = write_spec(tiny_spec(train={"epochs": 3}))
    real_fit = runner.fit

    def stop_after_one_epoch(*args, **kwargs):
        from masklab.errors import Interrupted

        group, spec = args[0], args[0].spec
        group.spec = spec_mod.dataclasses.replace(spec, train=spec_mod.dataclasses.replace(spec.train, epochs=1))
        real_fit(*args, **kwargs)
        raise Interrupted("interrupted after epoch 1")

    monkeypatch.setattr(runner, "fit", stop_after_one_epoch)
    assert cli("train", path, "-q").exit_code == 130
    monkeypatch.setattr(runner, "fit", real_fit)
    (run,) = run_dirs(workdir)
    torch.save({"epochs_done": Evil()}, run / "checkpoint.pt")
    result = cli("train", path, "--resume", "-q")
    assert result.exit_code == 1 and "checkpoint.pt" in result.stderr and "weights_only" not in result.stderr
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
    torch.save([1], run / "checkpoint.pt")
    result = cli("train", path, "--resume", "-q")
    assert result.exit_code == 1 and "not a masklab checkpoint" in result.stderr
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"


def test_init_from_a_hostile_model_leaves_no_folder(workdir, write_spec):
    source = trained(workdir, write_spec, name="src")
    torch.save({"w": Evil()}, source / "model.pt")
    result = cli("train", write_spec(tiny_spec(name="dst", train={"init_from": source.name}), "dst.yaml"), "-q")
    assert result.exit_code == 1 and "model.pt" in result.stderr and not (workdir / "pwned").exists()
    assert [p.name for p in run_dirs(workdir)] == [source.name]


def test_a_model_that_cannot_fit_names_the_setting_and_leaves_no_folder(workdir, write_spec):
    huge = tiny_spec(model={"arch": "cnn", "width": 512, "hidden": 65536})
    result = cli("train", write_spec(huge))
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "reduce model.width or model.hidden" in result.stderr and "parameters" in result.stderr
    assert run_dirs(workdir) == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_model_too_large_for_the_gpu_is_refused_before_any_folder(workdir, write_spec):
    huge = tiny_spec(model={"arch": "mlp", "hidden": [65536] * 4}, train={"device": "cuda"})  # 13e9 parameters
    result = cli("train", write_spec(huge))
    assert result.exit_code == 1 and "but cuda has" in result.stderr and "reduce model.hidden" in result.stderr
    assert run_dirs(workdir) == []


def test_running_out_of_memory_mid_start_leaves_no_failed_folder(workdir, write_spec, monkeypatch):
    from masklab.study import runner

    def no_memory(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(runner, "fit", no_memory)
    result = cli("train", write_spec(tiny_spec()), "-q")
    assert result.exit_code == 1 and "out of memory on cpu" in result.stderr and "train.batch_size" in result.stderr
    assert run_dirs(workdir) == [] and "internal error" not in result.stderr


def test_running_out_of_memory_in_eval_is_one_line(workdir, write_spec, monkeypatch):
    from masklab.evaluation import stored

    run = trained(workdir, write_spec)

    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(stored.eval_metrics, "predict", no_memory)
    result = cli("eval", run.name)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "out of memory" in result.stderr and "train.eval_batch_size" in result.stderr


def test_a_plot_path_that_is_a_folder_is_refused_and_nothing_lands_beside_it(workdir, write_spec):
    trained(workdir, write_spec)
    (workdir / "out").mkdir()
    for args in (("compare", "tiny"), ("eval", "tiny", "--op", "gaussian:sigma=0.1")):
        result = cli(*args, "--plot", workdir / "out")
        assert result.exit_code == 2 and "is a folder" in result.stderr
    for family, op in (("mask", "patch:rate=0.5"), ("noise", "gaussian:sigma=0.1")):  # before any work
        args = (family, "--dataset", "mnist-mini", "--op", op, "--limit", "50", "--out", workdir / "m.npz")
        result = cli(*args, "--preview", workdir / "out")
        assert result.exit_code == 2 and "--preview" in result.stderr and "is a folder" in result.stderr
        assert not (workdir / "m.npz").exists()
    assert sorted(p.name for p in workdir.iterdir() if p.name.startswith("out")) == ["out"]
    assert cli("compare", "tiny", "--plot", workdir / "bars").exit_code == 0
    assert (workdir / "bars").read_bytes()[:4] == b"\x89PNG" and not (workdir / "bars.png").exists()
