"""The options of `masklab mask` and `masklab noise` one by one, every kind of file they
write trained again, and schedules other than linear in a real training."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from masklab.data.dataset import limit, pixel_stats
from masklab.data.npz import read

from conftest import cli, run_dirs, tiny_spec

MINI = ["--dataset", "mnist-mini", "--limit", "200"]


def written(workdir, command: str, *args) -> tuple[dict, dict, dict]:
    """(arrays, manifest, {(measure, class): row}) of one mask/noise call."""
    out = workdir / "out.npz"
    result = cli(command, *args, "--out", out, "-f", "json")
    assert result.exit_code == 0, result.stderr
    arrays, manifest = read(out)
    return arrays, manifest, {(r["measure"], r["class"]): r for r in json.loads(result.stdout)["rows"]}


def test_fill_options(workdir):
    from scipy.stats import norm

    from masklab.data import registry

    subset = limit(registry.load("mnist-mini"), 200, None)
    mean, std = pixel_stats(subset.train_x)
    a, b = -mean / std, (1 - mean) / std  # N(mean, std) clipped to [0, 1]
    clipped_mean = mean * (norm.cdf(b) - norm.cdf(a)) + std * (norm.pdf(a) - norm.pdf(b)) + norm.sf(b)
    for fill, check in (
        ("0.5", lambda v: np.all(v == 0.5)),
        ("mean", lambda v: np.allclose(v, mean)),
        ("zero", lambda v: np.all(v == 0)),
        (
            "gaussian",
            lambda v: (
                abs((v == 0).mean() - norm.cdf(-mean / std)) < 0.01 and np.allclose(v.mean(), clipped_mean, atol=0.005)
            ),
        ),
        ("uniform", lambda v: v.min() >= 0 and v.max() <= 1 and abs(v.mean() - 0.5) < 0.02),
    ):
        arrays, manifest, _ = written(workdir, "mask", *MINI, "--op", "pixel", "--rate", "0.3", "--fill", fill)
        assert check(arrays["images"][arrays["masks"]]), fill
        assert manifest["ops"][0]["fill"] == (0.5 if fill == "0.5" else fill)


def test_mode_static_repeats_one_mask_and_dynamic_draws_each_copy(workdir):
    args = [*MINI, "--op", "patch", "--rate", "0.5", "--copies", "3"]
    static = written(workdir, "mask", *args, "--mode", "static")[0]["masks"]
    dynamic = written(workdir, "mask", *args, "--mode", "dynamic")[0]["masks"]
    assert np.array_equal(static[0], static[1]) and np.array_equal(static[0], static[2])
    assert not np.array_equal(dynamic[0], dynamic[1]) and not np.array_equal(dynamic[1], dynamic[2])
    assert not np.array_equal(static[0], dynamic[0])  # static masks have a key space of their own


def test_count_exact_and_bernoulli(workdir):
    exact = written(workdir, "mask", *MINI, "--op", "pixel", "--rate", "0.3", "--count", "exact")[0]["masks"]
    assert exact.reshape(200, -1).sum(1).tolist() == [235] * 200  # round(0.3 * 784)
    drawn = written(workdir, "mask", *MINI, "--op", "pixel", "--rate", "0.3", "--count", "bernoulli")[0]["masks"]
    counts = drawn.reshape(200, -1).sum(1)
    assert len(set(counts.tolist())) > 10 and abs(counts.mean() - 235.2) < 4 * (784 * 0.21 / 200) ** 0.5


def test_severity_clip_and_p(workdir):
    _, manifest, rows = written(workdir, "noise", *MINI, "--op", "gaussian", "--severity", "3")
    assert manifest["ops"][0]["sigma"] == 0.18 and rows["noise std before clipping", "all"]["requested"] == 0.18
    assert rows["noise std before clipping", "all"]["realized"] == pytest.approx(0.18, abs=0.003)

    clipped = written(workdir, "noise", *MINI, "--op", "gaussian", "--sigma", "0.3")[0]["images"]
    unclipped = written(workdir, "noise", *MINI, "--op", "gaussian", "--sigma", "0.3", "--clip", "false")[0]["images"]
    assert clipped.min() == 0.0 and clipped.max() == 1.0
    assert unclipped.min() < -0.5 and unclipped.max() > 1.5
    assert np.array_equal(np.clip(unclipped, 0, 1), clipped)  # the same draws, clipped or not

    arrays, _, rows = written(workdir, "mask", *MINI, "--op", "patch", "--rate", "0.5", "--p", "0.5")
    masked = arrays["masks"].reshape(200, -1).any(1)
    assert rows["share of images changed", "all"]["requested"] == 0.5
    assert rows["share of images changed", "all"]["realized"] == masked.mean() and 0.35 < masked.mean() < 0.65
    assert set(arrays["masks"].reshape(200, -1).sum(1).tolist()) == {0, 24 * 16}  # all of round(0.5 * 49) or none


def test_noise_preview_split_test_and_a_spec_without_op(workdir, write_spec):
    png = workdir / "noisy.png"
    _, manifest, rows = written(
        workdir,
        "noise",
        "--dataset",
        "mnist-mini",
        "--op",
        "gaussian",
        "--sigma",
        "0.2",
        "--split",
        "test",
        "--preview",
        png,
    )
    assert png.read_bytes()[:4] == b"\x89PNG" and manifest["split"] == "test"
    assert rows["noise std before clipping", "all"]["n"] == 1000  # mnist-mini's test split

    ops = [{"op": "speckle", "sigma": 0.3}, {"op": "gaussian", "sigma": 0.1, "p": 0.5}]
    _, manifest, rows = written(workdir, "noise", write_spec(tiny_spec(train_ops=ops)))
    assert [(o["op"], o["sigma"]) for o in manifest["ops"]] == [("speckle", 0.3), ("gaussian", 0.1)]
    assert rows["noise std before clipping", "all"]["n"] == 300  # the spec's train_limit
    assert rows["share of images changed", "all"]["requested"] == 0.5


@pytest.mark.parametrize(
    "command, args, n_train, n_test",
    [
        ("mask", ["--op", "patch", "--rate", "0.25"], 200, 200),
        ("mask", ["--op", "patch", "--rate", "0.25", "--copies", "3"], 600, 200),
        ("noise", ["--op", "gaussian", "--sigma", "0.2"], 200, 200),
        ("noise", ["--op", "gaussian", "--sigma", "0.2", "--copies", "2"], 400, 200),
        ("mask", ["--op", "pixel", "--rate", "0.5", "--split", "test"], 300, 200),  # the source supplies train
    ],
    ids=["mask", "mask-copies", "noise", "noise-copies", "test-split"],
)
def test_every_file_masklab_writes_trains(workdir, write_spec, command, args, n_train, n_test):
    out = workdir / "made.npz"
    assert cli(command, *MINI, *args, "--out", out).exit_code == 0
    limits = {"train_limit": 300 if "--split" in args else None, "test_limit": 200}
    result = cli("train", write_spec(tiny_spec(data={"dataset": f"npz:{out}", **limits}, train={"epochs": 1})), "-q")
    assert result.exit_code == 0, result.stderr
    (folder,) = run_dirs(workdir)
    info = json.loads((folder / "run.json").read_text())
    assert info["status"] == "done" and info["data"]["dataset"] == f"npz:{out}"
    assert (info["data"]["n_train"], info["data"].get("n_test", n_test)) == (n_train, n_test)


@pytest.mark.parametrize(
    "rate, per_epoch",
    [
        ({"schedule": "cosine", "start": 0.6, "end": 0.1}, [0.6, 0.475, 0.225, 0.1]),  # 0.1 + 0.25 (1 + cos(pi e / 3))
        ({"schedule": "step", "start": 0.5, "end": 0.2, "at": 0.5}, [0.5, 0.5, 0.2, 0.2]),
        ({"schedule": "constant", "start": 0.3, "end": 0.1}, [0.3] * 4),
        ({"schedule": "linear", "start": 0.2, "end": 0.4, "warmup": 1}, [0.0, 0.2, 0.3, 0.4]),
        ({"schedule": "cosine", "start": 0.6, "end": 0.1, "over": "step"}, None),
    ],
    ids=["cosine", "step", "constant", "warmup", "cosine-per-step"],
)
def test_schedules_drive_the_realized_rate_in_training(workdir, write_spec, rate, per_epoch):
    """Each epoch's logged realized pixel fraction is round(r * 784) / 784 at the schedule's
    value (per step: averaged over the epoch's 7 equal batches, from 0.6 at the first step
    to 0.1 at the 28th)."""
    spec = tiny_spec(train={"epochs": 4}, train_ops=[{"op": "pixel", "rate": rate, "mode": "scheduled"}])
    assert cli("train", write_spec(spec), "-q").exit_code == 0
    (folder,) = run_dirs(workdir)
    lines = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 4
    if per_epoch is None:  # step t of 28: 0.1 + 0.25 (1 + cos(pi t / 27))
        per_step = [[0.1 + 0.25 * (1 + math.cos(math.pi * (7 * e + s) / 27)) for s in range(7)] for e in range(4)]
    else:
        per_step = [[v] for v in per_epoch]
    for line, values in zip(lines, per_step):
        expected = sum(round(v * 784) for v in values) / 784 / len(values)
        assert line["ops"][0]["realized"] == pytest.approx(expected, abs=2e-6), values
        assert line["scheduled"]["op0.rate"] == pytest.approx(values[0], abs=1e-9)
