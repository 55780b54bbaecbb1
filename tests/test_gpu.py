"""GPU end to end (skipped without CUDA): the same spec trains on CUDA, compiled, in bf16."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import cli, run_dirs, tiny_spec

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_train_on_cuda_with_ops_compile_and_bf16(workdir, write_spec):
    ops = [{"op": "patch", "rate": 0.25, "size": 4}, {"op": "gaussian", "sigma": 0.1, "p": 0.5}]
    path = write_spec(
        tiny_spec(
            model={"arch": "cnn", "width": 16}, train_ops=ops, train={"device": "cuda", "compile": True, "epochs": 2}
        )
    )
    result = cli("train", path, "-q", "-f", "json")
    assert result.exit_code == 0, result.stderr
    (folder,) = run_dirs(workdir)
    info = json.loads((folder / "run.json").read_text())
    assert info["device"].startswith("cuda") and info["compile"] is True and info["status"] == "done"
    rows = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["ops"][0]["realized"] == pytest.approx(12 / 49, abs=1e-6)  # exact count on the GPU too
    ev = cli("eval", folder.name, "--device", "cuda", "--op", "gaussian:sigma=0.1,0.2", "-f", "json")
    assert ev.exit_code == 0, ev.stderr
    assert len(json.loads(ev.stdout)["evals"][0]["cells"]) == 2


def test_cuda_and_cpu_training_agree_closely(workdir, write_spec):
    """Same spec and seed: the keyed data order and ops are identical, so fp32 results
    differ only by floating-point reduction order."""
    accs = {}
    for device in ("cpu", "cuda"):
        path = write_spec(tiny_spec(train={"device": device, "precision": "fp32", "compile": False}), f"{device}.yaml")
        out = cli("train", path, "-q", "-f", "json", "--set", f"name=tiny-{device}")
        assert out.exit_code == 0, out.stderr
        accs[device] = json.loads(out.stdout)["rows"][0]["test_acc"]
    assert abs(accs["cpu"] - accs["cuda"]) <= 0.03


def test_a_seed_group_trains_batched_on_cuda(workdir, write_spec):
    """Not run where it was written (no GPU was lent): the batched loop's CUDA path
    (bf16 autocast, a finiteness check every 25 steps) with exact-count masks."""
    ops = [{"op": "patch", "rate": 0.25, "size": 4}]
    body = tiny_spec(model={"arch": "cnn", "width": 8}, train_ops=ops, seeds=[0, 1, 2], train={"device": "cuda"})
    body["train"]["seed_batch"] = 3
    result = cli("train", write_spec(body), "-q", "-f", "json")
    assert result.exit_code == 0, result.stderr
    folders = run_dirs(workdir)
    assert len(folders) == 3
    for folder in folders:
        info = json.loads((folder / "run.json").read_text())
        assert info["status"] == "done" and info["device"].startswith("cuda")
        assert info["seed_batch"] == {"seeds": [0, 1, 2], "size": 3}
        rows = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
        assert rows[-1]["ops"][0]["realized"] == pytest.approx(12 / 49, abs=1e-6)
