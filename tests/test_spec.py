"""The spec: defaults, overrides, and one-line errors that name the key path."""

from __future__ import annotations

import pytest

from masklab import spec as spec_mod
from masklab.errors import SpecError, UsageError


def test_defaults_are_filled_and_resolved_spec_round_trips():
    spec = spec_mod.resolve({"name": "x"})
    body = spec.to_dict()
    assert body["data"] == {
        "dataset": "mnist-mini",
        "root": None,
        "download": False,
        "val_fraction": 0.1,
        "train_limit": None,
        "test_limit": None,
    }
    assert body["model"] == {"arch": "cnn", "width": 24, "depth": 2, "hidden": 256, "norm": "group", "dropout": 0.0}
    assert body["train"]["optimizer"] == "adamw" and body["train"]["schedule"] == "onecycle"
    assert body["seeds"] == [0] and body["train_ops"] == []
    assert spec_mod.resolve(body).to_dict() == body


def test_group_hash_ignores_seeds_only():
    a = spec_mod.resolve({"name": "x", "seeds": [0, 1]})
    b = spec_mod.resolve({"name": "x", "seeds": [5]})
    c = spec_mod.resolve({"name": "x", "train": {"lr": 0.01}})
    assert a.group_hash() == b.group_hash() != c.group_hash()
    assert len(a.group_hash()) == 8


def test_numeric_strings_are_numbers():
    # PyYAML reads 3e-3 as a string; the spec accepts it as the number it is
    spec = spec_mod.resolve({"name": "x", "train": {"lr": "3e-3"}})
    assert spec.train.lr == 0.003


def test_set_overrides_parse_yaml_scalars_and_paths(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ntrain_ops:\n  - {op: patch, rate: 0.25}\n")
    spec = spec_mod.load_spec(
        path,
        [
            "train.lr=0.01",
            "train_ops[0].rate=0.5",
            "model.arch=mlp",
            "seeds=[1, 2]",
            "train_ops[1]={op: gaussian, sigma: 0.1}",
        ],
    )
    assert spec.train.lr == 0.01
    assert spec.train_ops[0]["rate"] == 0.5
    assert spec.train_ops[1]["op"] == "gaussian" and spec.train_ops[1]["sigma"] == 0.1
    assert spec.model.arch == "mlp" and spec.seeds == [1, 2]


@pytest.mark.parametrize(
    "body, message",
    [
        ({"name": "x", "train": {"lrr": 0.1}}, "train.lrr: unknown key; did you mean 'lr'?"),
        ({"name": "x", "trian": {}}, "trian: unknown key; did you mean 'train'?"),
        ({"name": "x", "epochs": 5}, "epochs: unknown key at the top level; did you mean 'train.epochs'?"),
        ({"name": "x", "train": {"lr": -1}}, "train.lr: must be > 0, got -1.0"),
        ({"name": "x", "train": {"epochs": "five"}}, "train.epochs: must be an integer, got a string 'five'"),
        ({"name": "x", "train": {"epochs": True}}, "train.epochs: must be an integer, got a boolean true"),
        ({"name": "x", "train": {"lr": float("nan")}}, "train.lr: must be a finite number, got nan"),
        (
            {"name": "x", "data": {"dataset": "fashion-mnst"}},
            "data.dataset: unknown dataset 'fashion-mnst'; did you mean 'fashion-mnist'?",
        ),
        (
            {"name": "x", "train": {"optimizer": "adam"}},
            "train.optimizer: must be one of adamw, sgd, got 'adam'; did you mean 'adamw'?",
        ),
        ({"name": "x", "train_ops": [{"op": "patch", "rate": 1.5}]}, "train_ops[0].rate: must be in [0, 1], got 1.5"),
        ({"name": "x", "train_ops": [{"op": "pach", "rate": 0.5}]}, "train_ops[0].op: must be one of"),
        ({"name": "x", "seeds": [0, 0]}, "seeds: seeds must be distinct, got [0, 0]"),
        ({"name": "bad name!"}, "name: must be letters, digits"),
        (
            {"name": "x", "model": {"arch": "vit", "dim": 30, "heads": 4}},
            "model.heads: must divide model.dim (30), got 4",
        ),
        ({"name": "x", "model": "cnn"}, "model: must be a mapping, got a string 'cnn'"),
    ],
)
def test_invalid_values_name_the_key_path(body, message):
    with pytest.raises(SpecError) as err:
        spec_mod.resolve(body)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "the spec is empty"),
        ("# only a comment\n", "the spec is empty"),
        ("- a\n- b\n", "the top level must be a mapping"),
        ("name: x\ntrain:\n\tlr: 0.1\n", "tab character; YAML indents with spaces"),
        ("name: x\nname: y\n", "key 'name' appears twice"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_files_get_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(SpecError) as err:
        spec_mod.load_spec(path)
    assert message in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_binary_and_missing_files(tmp_path):
    path = tmp_path / "garbage.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(SpecError, match="binary data"):
        spec_mod.load_spec(path)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(SpecError, match="not UTF-8 text"):
        spec_mod.load_spec(latin)
    with pytest.raises(UsageError, match="no such spec file"):
        spec_mod.load_spec(tmp_path / "absent.yaml")


@pytest.mark.parametrize("assignment", ["train.lr", "train..lr=1", "train_ops[3].rate=0.5"])
def test_bad_overrides_are_usage_errors(tmp_path, assignment):
    path = tmp_path / "s.yaml"
    path.write_text("name: s\n")
    with pytest.raises(UsageError):
        spec_mod.load_spec(path, [assignment])


def test_diff_keys_and_flatten():
    a = spec_mod.resolve({"name": "x", "train_ops": [{"op": "patch", "rate": 0.25}]}).to_dict()
    b = spec_mod.resolve({"name": "x", "train": {"lr": 0.01}, "train_ops": [{"op": "patch", "rate": 0.5}]}).to_dict()
    assert spec_mod.diff_keys(a, b) == ["train.lr", "train_ops[0].rate"]
    flat = spec_mod.flatten(a)
    assert flat["train_ops[0].rate"] == 0.25 and flat["data.dataset"] == "mnist-mini"


def test_token_ops_need_a_vit():
    with pytest.raises(SpecError, match="train_ops\\[0\\].op: tokens needs model.arch vit"):
        spec_mod.resolve({"name": "x", "train_ops": [{"op": "tokens", "rate": 0.5}]})


def test_every_shipped_experiment_validates():
    from pathlib import Path

    specs = sorted((Path(__file__).parents[1] / "experiments").glob("*.yaml"))
    assert specs, "no shipped experiments found"
    for path in specs:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# masklab "), f"{path.name} must start with the command that runs it"
        spec_mod.load_spec(path)


def test_every_model_builds_for_every_input_size():
    import torch

    from masklab.models.build import build_model

    for model in (
        {"arch": "cnn", "depth": 1},
        {"arch": "cnn", "depth": 2},
        {"arch": "cnn", "depth": 4, "width": 8},
        {"arch": "mlp"},
        {"arch": "vit", "patch": 4, "dim": 16, "depth": 1, "heads": 2},
    ):
        spec = spec_mod.resolve({"name": "m", "model": model})
        for side in (8, 28):
            net = build_model(spec.model, (1, side, side), 10, 0.1, 0.3)
            assert net(torch.rand(3, 1, side, side)).shape == (3, 10), (model, side)
