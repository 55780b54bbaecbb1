"""masklab mask / noise: files that reproduce training's draws and compose with train."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from masklab.data.dataset import limit
from masklab.data.npz import read

from conftest import cli, run_dirs, tiny_spec


@pytest.mark.parametrize(
    "op",
    [
        ["--op", "patch", "--rate", "0.5", "--size", "4"],
        ["--op", "pixel", "--rate", "0.3"],
        ["--op", "rect", "--area", "0.1,0.3"],
        ["--op", "stripes", "--rate", "0.25", "--axis", "both"],
    ],
)
def test_masks_do_not_depend_on_batch_size(workdir, op):
    files = []
    for batch in ("1000", "7"):
        out = workdir / f"m{batch}.npz"
        result = cli(
            "mask",
            "--dataset",
            "mnist-mini",
            "--limit",
            "300",
            *op,
            "--seed",
            "3",
            "--batch-size",
            batch,
            "--out",
            out,
            "-f",
            "json",
        )
        assert result.exit_code == 0, result.stderr
        files.append(read(out)[0])
    assert np.array_equal(files[0]["masks"], files[1]["masks"])
    assert np.array_equal(files[0]["images"], files[1]["images"])


def test_patch_rate_is_exact_per_image_and_the_file_is_complete(workdir):
    out = workdir / "patch.npz"
    result = cli(
        "mask",
        "--dataset",
        "mnist-mini",
        "--op",
        "patch",
        "--rate",
        "0.5",
        "--size",
        "7",
        "--out",
        out,
        "--preview",
        workdir / "patch.png",
        "-f",
        "csv",
    )
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows[0]["class"] == "all" and len(rows) == 11  # overall and per class
    assert {(r["realized"], r["min"], r["max"]) for r in rows} == {("0.5", "0.5", "0.5")}
    arrays, manifest = read(out)
    assert arrays["images"].shape == (4000, 28, 28) and arrays["images"].dtype == np.float32
    assert arrays["masks"].shape == (4000, 28, 28) and arrays["masks"].dtype == bool
    assert arrays["masks"].reshape(4000, -1).sum(1).tolist() == [392] * 4000
    assert np.all(arrays["images"][arrays["masks"]] == 0.0)
    assert manifest["seed"] == 0 and manifest["copies"] == 1 and manifest["split"] == "train"
    assert manifest["ops"][0] == {
        "op": "patch",
        "rate": 0.5,
        "size": 7,
        "fill": "zero",
        "p": 1.0,
        "mode": "dynamic",
        "copies": 1,
    }
    assert manifest["source"]["dataset"] == "mnist-mini" and set(manifest["sha256"]) == {"images", "labels", "masks"}
    assert (workdir / "patch.png").read_bytes()[:4] == b"\x89PNG"


def test_copies_give_k_distinct_masks_per_image(workdir):
    out = workdir / "copies.npz"
    assert (
        cli(
            "mask",
            "--dataset",
            "mnist-mini",
            "--limit",
            "200",
            "--op",
            "patch",
            "--rate",
            "0.5",
            "--copies",
            "3",
            "--out",
            out,
        ).exit_code
        == 0
    )
    masks = read(out)[0]["masks"]
    assert masks.shape == (3, 200, 28, 28)
    for i in range(200):
        assert len({masks[k, i].tobytes() for k in range(3)}) == 3


@pytest.mark.parametrize("op", [{"op": "pixel", "rate": 0.4, "fill": "mean"}, {"op": "patch", "rate": 0.25, "size": 4}])
def test_mask_file_equals_what_training_applies(workdir, write_spec, monkeypatch, op):
    """`masklab mask SPEC --seed S --copies K` (no --limit: the spec's train_limit cuts the
    data) holds, for every image a run with seed S trains on, the mask and masked image
    that run applies in epoch k, copy k mod K; recorded from a real `masklab train`."""
    from masklab.ops.pipeline import OpPipeline

    ops = [dict(op, mode="static", copies=2)]
    path = write_spec(tiny_spec(seeds=[5], train_ops=ops, train={"epochs": 3}))
    out = workdir / "spec-masks.npz"
    assert cli("mask", path, "--seed", "5", "--copies", "2", "--out", out).exit_code == 0
    arrays, manifest = read(out)
    assert arrays["masks"].shape == (2, 300, 28, 28) and manifest["source"]["dataset"] == "mnist-mini"

    applied = []  # (epoch, dataset indices, mask, images) of every training batch
    call, epoch_keys = OpPipeline.__call__, OpPipeline.epoch_keys

    def record_keys(self, epoch, *args, **kwargs):
        self.recorded_epoch = epoch
        return epoch_keys(self, epoch, *args, **kwargs)

    def record_call(self, x, index, p):
        result = call(self, x, index, p)
        applied.append((self.recorded_epoch, index.numpy(), result.mask.numpy(), result.images[:, 0].numpy()))
        return result

    monkeypatch.setattr(OpPipeline, "epoch_keys", record_keys)
    monkeypatch.setattr(OpPipeline, "__call__", record_call)
    assert cli("train", path, "-q").exit_code == 0
    assert sorted({epoch for epoch, *_ in applied}) == [0, 1, 2] and len(applied) == 3 * 7  # 240 images, 32 a batch
    for epoch, index, mask, images in applied:
        assert np.array_equal(arrays["masks"][epoch % 2][index], mask)
        assert np.array_equal(arrays["images"][epoch % 2][index], images)  # the same images, filled alike


def test_mask_split_test_takes_the_specs_test_limit(workdir, write_spec):
    import torch

    from masklab.data import registry
    from masklab.data.batches import to_float

    path = write_spec(tiny_spec(train_ops=[{"op": "pixel", "rate": 0.5}]))
    out = workdir / "test-masks.npz"
    result = cli("mask", path, "--split", "test", "--out", out, "-f", "json")
    assert result.exit_code == 0, result.stderr
    arrays, manifest = read(out)
    expected = limit(registry.load("mnist-mini"), None, 200)
    assert manifest["split"] == "test" and np.array_equal(arrays["labels"], expected.test_y)
    kept = ~arrays["masks"]
    originals = to_float(torch.from_numpy(expected.test_x))[:, 0].numpy()
    assert np.array_equal(arrays["images"][kept], originals[kept]) and (arrays["images"][~kept] == 0).all()
    assert json.loads(result.stdout)["rows"][0]["n"] == 200


def test_noise_files_and_the_pipeline_into_train(workdir, write_spec):
    noisy = workdir / "noisy.npz"
    result = cli("noise", "--dataset", "mnist-mini", "--op", "gaussian", "--sigma", "0.2", "--out", noisy, "-f", "json")
    assert result.exit_code == 0, result.stderr
    rows = {(r["measure"], r["class"]): r for r in json.loads(result.stdout)["rows"]}
    before, after = rows["noise std before clipping", "all"], rows["noise std after clipping", "all"]
    assert before["requested"] == after["requested"] == 0.2 and before["n"] == 4000
    assert before["realized"] == pytest.approx(0.2, abs=0.002)  # the noise as drawn has the sigma asked for
    assert 0.1 < after["realized"] < 0.17  # clipping to [0, 1] removes much of it on black backgrounds
    arrays, manifest = read(noisy)
    assert "masks" not in arrays and arrays["images"].min() >= 0 and arrays["images"].max() <= 1
    path = write_spec(tiny_spec(data={"dataset": f"npz:{noisy}", "train_limit": 300, "test_limit": 200}))
    trained = cli("train", path, "-q", "-f", "json")
    assert trained.exit_code == 0, trained.stderr
    (folder,) = run_dirs(workdir)
    info = json.loads((folder / "run.json").read_text())
    assert info["data"]["dataset"] == f"npz:{noisy}" and info["status"] == "done"


@pytest.mark.parametrize("count, hits", [("exact", [78] * 50), ("bernoulli", None)])
def test_salt_and_pepper_hits_exactly_the_pixels_it_names(workdir, count, hits):
    """On mid-grey images every hit shows (0 or 1 where nothing else is): exact counts hit
    round(0.1 * 784) = 78 pixels per image, round(0.5 * 78) = 39 of them salt."""
    gray = workdir / "gray.npz"
    g = np.full((50, 28, 28), 128, np.uint8)
    np.savez(gray, train_images=g, train_labels=np.arange(50) % 10, test_images=g[:10], test_labels=np.arange(10))
    sp = workdir / "sp.npz"
    args = ["--op", "salt_pepper", "--amount", "0.1", "--count", count, "--out", sp]
    assert cli("noise", "--dataset", f"npz:{gray}", *args).exit_code == 0
    images = read(sp)[0]["images"].reshape(50, -1)
    salt, pepper = (images == 1).sum(1), (images == 0).sum(1)
    assert ((images == 1) | (images == 0) | (images == np.float32(128 / 255))).all()
    if hits:
        assert (salt + pepper).tolist() == hits and salt.tolist() == [39] * 50
    else:  # each of 39,200 pixels hit with probability 0.1: 3,920 expected, sd 59
        hit = salt + pepper
        assert abs(int(hit.sum()) - 3920) < 4 * 59 and len(set(hit.tolist())) > 5  # counts vary per image
        assert abs(int(salt.sum()) - int(pepper.sum())) < 4 * 3920**0.5


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["mask", "--dataset", "mnist-mini", "--rate", "0.5", "--out", "x.npz"], 2, "--rate needs --op"),
        (
            ["mask", "--dataset", "mnist-mini", "--op", "gaussian", "--sigma", "0.1", "--out", "x.npz"],
            2,
            "No such option",
        ),
        (
            ["noise", "--dataset", "mnist-mini", "--op", "gaussian", "--out", "x.npz"],
            2,
            "--op gaussian.sigma: required",
        ),
        (
            ["mask", "--dataset", "mnist-mini", "--op", "gaussian", "--out", "x.npz"],
            2,
            "gaussian is a noise op; use `masklab noise`",
        ),
        (
            ["noise", "--dataset", "mnist-mini", "--op", "patch", "--out", "x.npz"],
            2,
            "patch is a mask op; use `masklab mask`",
        ),
        (
            ["mask", "--dataset", "mnist-mini", "--op", "patch", "--rate", "2", "--out", "x.npz"],
            2,
            "--op patch.rate: must be in [0, 1], got 2",
        ),
        (
            ["mask", "--dataset", "mnist-mini", "--op", "patch", "--rate", "0.5", "--size", "5", "--out", "x.npz"],
            2,
            "must divide the image size 28x28",
        ),
        (
            ["mask", "--dataset", "mnist-mini", "--op", "patch", "--rate", "0.5", "--out", "x.png"],
            2,
            "must end in .npz",
        ),
        (["mask", "--op", "patch", "--rate", "0.5", "--out", "x.npz"], 2, "give either a SPEC or --dataset NAME"),
    ],
)
def test_mask_noise_errors(workdir, args, code, message):
    result = cli(*args)
    assert result.exit_code == code
    assert message in result.stderr
    assert not (workdir / "x.npz").exists()


def test_a_damaged_npz_is_refused(workdir, write_spec):
    out = workdir / "m.npz"
    assert (
        cli(
            "mask", "--dataset", "mnist-mini", "--op", "pixel", "--rate", "0.2", "--limit", "100", "--out", out
        ).exit_code
        == 0
    )
    arrays, manifest = read(out)
    arrays["images"][0, 0, 0] = 0.5
    np.savez(out, manifest=np.array(json.dumps(manifest)), **arrays)
    path = write_spec(tiny_spec(data={"dataset": f"npz:{out}"}))
    result = cli("train", path)
    assert result.exit_code == 1 and "does not match its SHA-256" in result.stderr
    (workdir / "junk.npz").write_bytes(b"not a zip")
    path = write_spec(tiny_spec(data={"dataset": f"npz:{workdir / 'junk.npz'}"}))
    result = cli("train", path)
    assert result.exit_code == 1 and "not a readable .npz file" in result.stderr
    assert run_dirs(workdir) == []


def test_noise_reports_the_quantity_its_setting_names(workdir):
    def rows(*args):
        result = cli(
            "noise", "--dataset", "mnist-mini", "--limit", "200", "--out", workdir / "n.npz", "-f", "json", *args
        )
        assert result.exit_code == 0, result.stderr
        return {(r["measure"], r["class"]): r for r in json.loads(result.stdout)["rows"]}

    hit = rows("--op", "salt_pepper", "--amount", "0.1")["fraction of pixels hit", "all"]
    assert (hit["realized"], hit["min"], hit["max"]) == (round(78 / 784, 6),) * 3  # round(0.1 * 784) pixels, exactly
    shot = rows("--op", "shot", "--c", "20")["photons per unit (mean / noise variance)", "all"]
    assert shot["requested"] == 20 and shot["realized"] == pytest.approx(20, rel=0.05)
    speckle = rows("--op", "speckle", "--sigma", "0.3")["relative noise std before clipping (pixels > 0.05)", "all"]
    assert speckle["realized"] == pytest.approx(0.3, abs=0.01)
    uniform = rows("--op", "uniform", "--width", "0.4")
    assert uniform["noise width (std x sqrt 12) before clipping", "all"]["realized"] == pytest.approx(0.4, abs=0.01)
    half = rows("--op", "gaussian", "--sigma", "0.1,0.3", "--p", "0.5")
    assert half["share of images changed", "all"]["requested"] == 0.5
    assert half["share of images changed", "all"]["realized"] == pytest.approx(0.5, abs=0.1)
    assert half["noise std before clipping", "all"]["realized"] == pytest.approx(0.2, abs=0.01)  # over changed images


def test_previews_tint_masks_and_show_every_copy(workdir):
    import matplotlib.image

    from masklab.analysis.figures import MASK_ALPHA, MASK_COLOUR, tinted

    images = np.zeros((1, 1, 2, 2), np.float32)
    mask = np.array([[[True, False], [False, False]]])
    rgb = tinted(images, mask)
    assert np.allclose(rgb[0, 0, 0], MASK_ALPHA * MASK_COLOUR) and np.allclose(rgb[0, 1, 1], 0.0)
    heights = {}
    for k in (1, 3):
        png = workdir / f"p{k}.png"
        args = ["mask", "--dataset", "mnist-mini", "--limit", "100", "--op", "patch", "--rate", "0.5"]
        assert cli(*args, "--copies", str(k), "--out", workdir / f"p{k}.npz", "--preview", png).exit_code == 0
        pixels = matplotlib.image.imread(png)
        heights[k] = pixels.shape[0]
        orange = (np.abs(pixels[..., :3] - MASK_ALPHA * MASK_COLOUR) < 0.02).all(-1)
        assert orange.sum() > 1000  # masked pixels stand out in colour, never black on black
    assert heights[3] - heights[1] >= 2 * 90  # two more rows of images: every copy is shown
