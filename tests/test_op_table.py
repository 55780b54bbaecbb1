"""The op table (ops/registry.py) carries each op's code: every registered op resolves to
its apply function, runs through training, `masklab mask/noise` (with a preview) and
eval, and the mask/noise commands take and document exactly the table's parameters."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from masklab.cli.materialize import COMMAND_FAMILIES, TRAINING_ONLY
from masklab.ops import pipeline, registry

from conftest import cli, run_dirs, tiny_spec

IMAGE_FAMILIES = ("mask", "soft", "noise", "transform")
TOKEN_FAMILIES = ("token", "attention")


def example(op: registry.OpDef) -> dict:
    return yaml.safe_load(op.example)


def test_every_registered_op_names_code_that_exists():
    assert set(pipeline.APPLY) == set(registry.OPS)
    for name, op in registry.OPS.items():
        assert callable(pipeline.APPLY[name]), name
        assert (name in pipeline.TEXT_APPLY) == (op.family in TOKEN_FAMILIES), name
        assert (name in pipeline.MEASURE) == bool(op.measure), name
    assert set(pipeline.FAMILY_STEPS) == set(registry.FAMILIES)


def test_an_op_registered_without_its_code_fails_at_import():
    """No default branch: a table entry whose code is missing stops the import, naming the op."""
    code = (
        "import dataclasses, sys\n"
        "from masklab.ops import registry\n"
        "registry.OPS['fog'] = dataclasses.replace(registry.OPS['gaussian'], name='fog', apply='noise.fog')\n"
        "try:\n"
        "    import masklab.ops.pipeline\n"
        "except ImportError as exc:\n"
        "    print(exc); sys.exit(3)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 3, out.stderr
    assert out.stdout.strip() == "op fog: the op table names 'noise.fog', which is no function in masklab/ops/"


def test_an_unwired_family_is_refused_too():
    assert dataclasses.replace(registry.OPS["gaussian"], family="fog").family not in pipeline.FAMILY_STEPS


@pytest.mark.parametrize("command", sorted(COMMAND_FAMILIES))
def test_mask_and_noise_document_every_parameter_of_their_ops(command):
    out = cli(command, "--help")
    assert out.exit_code == 0
    text = " ".join(out.stdout.translate(str.maketrans("", "", "│╭╮╰╯─")).split())
    listed = text.split("Ops (the parameters each takes are below):")[1].split(" Arguments ")[0]
    for op in registry.OPS.values():
        if op.family not in COMMAND_FAMILIES[command]:
            assert f" {op.name}: " not in listed, op.name
            continue
        assert f"{op.name}: {' '.join(op.doc.split())}" in listed, op.name
        for key in registry.allowed_params(op, grid=False):
            if key not in TRAINING_ONLY:
                assert f"--{key.replace('_', '-')} " in text, (op.name, key)
    if command == "mask":
        assert "[top, left, height, width] in pixels" in text  # the table's doc, not eaten as markup


def cli_form(op: registry.OpDef) -> list[str]:
    """The op's example as the command line writes it: --op NAME --key value ..."""
    args = ["--op", op.name]
    for key, value in example(op).items():
        if key != "op":
            text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            args += [f"--{key.replace('_', '-')}", text]
    return args


@pytest.mark.parametrize("name", [n for n, o in registry.OPS.items() if o.family in IMAGE_FAMILIES])
def test_every_image_op_materialises_with_a_preview(workdir, name):
    op = registry.OPS[name]
    command = next(c for c, families in COMMAND_FAMILIES.items() if op.family in families)
    args = [command, "--dataset", "mnist-mini", "--limit", "40", *cli_form(op), "--p", "0.5"]
    out = cli(*args, "--copies", "2", "--out", "x.npz", "--preview", "x.png", "-f", "json")
    assert out.exit_code == 0, out.stderr
    rows = json.loads(out.stdout)["rows"]
    assert {r["op"] for r in rows} == {registry.label(registry.validate({**example(op), "p": 0.5}, "x"))}
    assert rows[-1]["measure"] == "share of images changed" and rows[-1]["requested"] == 0.5
    with np.load(workdir / "x.npz", allow_pickle=False) as z:
        assert z["images"].shape[:2] == (2, 40)
    assert (workdir / "x.png").stat().st_size > 1000


def test_the_other_command_is_named_for_an_op_of_the_wrong_family(workdir):
    out = cli("mask", "--dataset", "mnist-mini", "--op", "rotate", "--out", "x.npz")
    assert out.exit_code == 2 and "--op rotate is a transform op; use `masklab noise` for it" in out.stderr
    out = cli("noise", "--dataset", "mnist-mini", "--op", "soft", "--out", "x.npz")
    assert out.exit_code == 2 and "--op soft is a soft op; use `masklab mask` for it" in out.stderr
    out = cli("noise", "--dataset", "mnist-mini", "--op", "tokens", "--out", "x.npz")
    assert out.exit_code == 2 and "use `a ViT spec's train_ops` for it" in out.stderr


def test_a_transform_takes_one_number_and_says_so_before_training(workdir, write_spec):
    spec = tiny_spec(train_ops=[{"op": "rotate", "degrees": [5, 20]}])
    out = cli("train", write_spec(spec))
    assert out.exit_code == 2 and not run_dirs(workdir)
    assert "train_ops[0].degrees: takes one number (a range or schedule only where a value may vary per image)" in (
        out.stderr
    )


def image_ops() -> list[dict]:
    """Every image op of the table once, each on a third of the images (p) so the chain stays learnable."""
    ops = [example(o) | {"p": 0.3} for o in registry.OPS.values() if o.family in IMAGE_FAMILIES]
    return [dict(o, box=[0, 0, 4, 4]) if o["op"] == "region" else o for o in ops]


def test_every_op_trains_and_evaluates(workdir, write_spec):
    """One run trains through every image op, a ViT through the token ops, BERT through the
    text ops; every op that eval takes is a cell of the grid of the first run."""
    images = tiny_spec(name="every", train_ops=image_ops(), train={"epochs": 1})
    assert cli("train", write_spec(images, "a.yaml"), "-q").exit_code == 0
    vit = {"arch": "vit", "patch": 4, "dim": 16, "depth": 1, "heads": 2}
    token_ops = [example(o) | {"p": 0.5} for o in registry.OPS.values() if o.family in TOKEN_FAMILIES]
    tokens = tiny_spec(name="tokens", model=vit, train_ops=token_ops, train={"epochs": 1})
    assert cli("train", write_spec(tokens, "b.yaml"), "-q").exit_code == 0
    logged = []
    for run in run_dirs(workdir):
        (row,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        logged += [o["op"] for o in row["ops"]]
    assert sorted(logged) == sorted(registry.OPS)  # every op ran and logged its realized value
    evaluable = [o for o in registry.OPS.values() if o.family in IMAGE_FAMILIES]
    args = [a for o in evaluable for a in ("--op", f"{o.name}:" + op_text(example(o)))]
    out = cli("eval", "every", *args, "-f", "json")
    assert out.exit_code == 0, out.stderr
    (evaluation,) = json.loads(out.stdout)["evals"]
    assert [c["op"]["op"] for c in evaluation["cells"]] == [o.name for o in evaluable]
    assert all(0 <= c["acc"] <= 1 for c in evaluation["cells"])


def op_text(raw: dict) -> str:
    parts = [f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in raw.items() if k != "op"]
    return ",".join(parts)


def test_text_ops_train_on_text(workdir, write_spec):
    pytest.importorskip("tokenizers")
    spec = {
        "name": "text",
        "seeds": [0],
        "data": {"dataset": "kjv-mini", "train_limit": 200, "test_limit": 60, "val_fraction": 0.2},
        "model": {"arch": "bert", "dim": 16, "depth": 1, "heads": 2, "vocab_size": 300, "max_len": 24},
        "train": {"epochs": 1, "batch_size": 32},
        "train_ops": [example(o) | {"p": 0.5} for o in registry.OPS.values() if o.family in TOKEN_FAMILIES],
    }
    spec["train_ops"][0]["action"] = "mask"
    assert cli("train", write_spec(spec), "-q").exit_code == 0
    (run,) = run_dirs(workdir)
    (row,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [o["op"] for o in row["ops"]] == ["tokens", "attention"]
    assert 0 < row["ops"][0]["realized"] < 0.75
