"""One KEY=VALUE rule (masklab/keyvalue.py) for `tag`, `runs --tag` and `compare --where`:
the parser's every edge, then the same edges through each command."""

from __future__ import annotations

import json

import pytest

from masklab.errors import UsageError
from masklab.keyvalue import NAME, PATH, parse_key_values, split_key_value

from conftest import cli, fake_run, tiny_spec


@pytest.mark.parametrize(
    "text, pair",
    [
        ("a=b", ("a", "b")),
        ("a=b=c", ("a", "b=c")),  # the first '=' splits
        ("a=", ("a", "")),  # the empty value
        (" a = b ", ("a", "b")),  # spaces around key and value dropped
        ("a=b c", ("a", "b c")),  # spaces inside the value kept
        ("a='b'", ("a", "'b'")),  # quotes are the shell's business: kept as written
        ("paper.fig-2_x=1", ("paper.fig-2_x", "1")),
    ],
)
def test_a_pair_splits_at_the_first_equals_sign(text, pair):
    assert split_key_value(text, "--tag", "--tag paper=fig2") == pair


@pytest.mark.parametrize("text", ["", "ab", "=b", " =b", "a b=c", "a[0]=1", "a:b=c"])
def test_a_text_without_a_key_is_one_line_naming_it_and_the_form(text):
    with pytest.raises(UsageError) as e:
        split_key_value(text, "--tag", "--tag paper=fig2")
    assert str(e.value) == (
        f"--tag {text}: expected KEY=VALUE with a key of letters, digits, '.', '_' or '-', e.g. --tag paper=fig2"
    )


def test_a_key_path_may_index_a_list_and_a_positional_text_names_itself():
    assert split_key_value("train_ops[0].rate=0.5", "--where", "x", PATH) == ("train_ops[0].rate", "0.5")
    with pytest.raises(UsageError, match=r"^no equals sign: expected KEY=VALUE with a key of letters"):
        split_key_value("no equals sign", "", "method=static", NAME)
    with pytest.raises(UsageError, match=r"^--where a b=1: expected KEY=VALUE with a key path such as"):
        split_key_value("a b=1", "--where", "x", PATH)


def test_a_repeated_key_keeps_its_last_value_and_no_texts_are_no_pairs():
    assert parse_key_values([], "--tag", "x") == {}
    assert parse_key_values(["a=1", "b=2", " a = 3"], "--tag", "x") == {"a": "3", "b": "2"}


def test_tag_takes_pairs_by_the_rule(workdir):
    fake_run(workdir / "runs", "ta")
    assert cli("tag", "ta", " method = static ", "url=http://x?a=b", "empty=").exit_code == 0
    info = json.loads(next((workdir / "runs").iterdir()).joinpath("run.json").read_text())
    assert info["tags"] == {"method": "static", "url": "http://x?a=b", "empty": ""}
    out = cli("tag", "ta", "=static")
    assert (out.exit_code, out.stderr) == (
        2,
        "Error: =static: expected KEY=VALUE with a key of letters, digits, '.', '_' or '-', e.g. method=static\n",
    )


def test_runs_filters_by_the_rule_and_a_missing_tag_never_matches(workdir):
    fake_run(workdir / "runs", "ta", seed=0, tags={"method": "static", "empty": ""})
    fake_run(workdir / "runs", "tb", seed=1)

    def names(*filters):
        out = cli("runs", *[a for f in filters for a in ("--tag", f)], "-f", "json")
        assert out.exit_code == 0, out.stderr
        return [r["name"] for r in json.loads(out.stdout)["rows"]]

    assert names(" method = static") == ["ta"]
    assert names("empty=") == ["ta"]
    assert names("method=None") == []  # a run without the tag is not one whose tag reads None
    assert names("method=static", "method=static") == ["ta"]
    assert names("method=dynamic", "method=static") == ["ta"]  # the last value of a key counts
    out = cli("runs", "--tag", "a b=c")
    assert out.exit_code == 2 and out.stderr.startswith("Error: --tag a b=c: expected KEY=VALUE with a key of")


def test_compare_where_filters_by_the_rule(workdir):
    runs = workdir / "runs"
    for seed, (rate, acc) in enumerate([(0.25, 0.8), (0.25, 0.82), (0.5, 0.7), (0.5, 0.72)]):
        spec = tiny_spec(name="w", train_ops=[{"op": "patch", "rate": rate, "size": 4}])
        folder = fake_run(runs, "w", seed=seed, summary={"test_acc": acc}, group_hash=f"{int(rate * 100):08d}")
        folder.joinpath("spec.yaml").write_text(json.dumps({**spec, "seeds": [seed]}))
    args = ("compare", "w-00000025", "w-00000050", "--by", "train_ops[0].rate", "-f", "json")  # "w" names 2 groups
    picked = json.loads(cli(*args, "--where", " train_ops[0].size = 4 ").stdout)
    assert [c["n"] for c in picked["cells"]] == [2, 2]
    again = json.loads(cli(*args, "--where", "train_ops[0].size=8", "--where", "train_ops[0].size=4").stdout)
    assert again["cells"] == picked["cells"]
    out = cli(*args, "--where", "=4")
    assert (out.exit_code, out.stderr) == (
        2,
        "Error: --where =4: expected KEY=VALUE with a key path such as train.epochs or train_ops[0].rate, "
        "e.g. --where train.epochs=8\n",
    )
