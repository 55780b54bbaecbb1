"""A name stands for its own runs only, and a tag set again takes its new value.

Runs are written by hand (no training): `ref`, and runs whose names contain it (`ref2`,
`xref`), so a name matched loosely (by substring or prefix) would reach the others."""

from __future__ import annotations

import json

import pytest

from conftest import cli, fake_run, run_dirs

NAMES = {"ref": "aaaaaaaa", "ref2": "bbbbbbbb", "xref": "cccccccc"}


@pytest.fixture
def near_names(workdir):
    """ref s0, s1; ref2 s0, s1; xref s0 (every test_acc 0.9)."""
    for name, group_hash in NAMES.items():
        for seed in range(1 if name == "xref" else 2):
            fake_run(workdir / "runs", name=name, seed=seed, group_hash=group_hash)
    return workdir


def names_left(workdir) -> list[str]:
    return [p.name for p in run_dirs(workdir)]


def tags_of(workdir) -> dict[str, dict]:
    return {p.name: json.loads((p / "run.json").read_text()).get("tags") or {} for p in run_dirs(workdir)}


def test_rm_of_a_name_leaves_the_runs_of_names_that_contain_it(near_names):
    assert cli("rm", "ref", "-f", "json").exit_code == 0
    assert names_left(near_names) == ["ref2-bbbbbbbb-s0", "ref2-bbbbbbbb-s1", "xref-cccccccc-s0"]
    assert cli("rm", "ref2-bbbbbbbb").exit_code == 0  # a group: its runs
    assert names_left(near_names) == ["xref-cccccccc-s0"]


def test_rm_of_a_part_of_several_names_removes_nothing(near_names):
    before = names_left(near_names)
    out = cli("rm", "re")  # no run is named re; an id prefix must cover a whole name and part of its hash
    assert out.exit_code == 1
    assert out.stderr.startswith("Error: re: no such run in ")
    assert out.stderr.count("\n") == 1
    for part in ("ef", "ref-aaaa", "ref-s"):  # inside a name, a partial hash, a name without its seed
        assert cli("rm", part).exit_code == 1, part
    assert names_left(near_names) == before


def test_tag_of_a_name_tags_its_runs_only(near_names):
    assert cli("tag", "ref", "method=static").exit_code == 0
    assert tags_of(near_names) == {
        "ref-aaaaaaaa-s0": {"method": "static"},
        "ref-aaaaaaaa-s1": {"method": "static"},
        "ref2-bbbbbbbb-s0": {},
        "ref2-bbbbbbbb-s1": {},
        "xref-cccccccc-s0": {},
    }
    assert cli("tag", "re", "method=x").exit_code == 1 and tags_of(near_names)["ref2-bbbbbbbb-s0"] == {}


def test_compare_of_a_name_groups_its_runs_only(near_names):
    body = json.loads(cli("compare", "ref", "-f", "json").stdout)
    assert [(g["group"], g["runs"]) for g in body["groups"]] == [
        ("ref-aaaaaaaa", ["ref-aaaaaaaa-s0", "ref-aaaaaaaa-s1"])
    ]
    both = json.loads(cli("compare", "xref", "ref", "-f", "json").stdout)
    assert [g["group"] for g in both["groups"]] == ["xref-cccccccc", "ref-aaaaaaaa"]


def test_tagging_a_key_again_replaces_its_value(near_names):
    assert cli("tag", "ref", "method=old", "paper=fig2").exit_code == 0
    again = cli("tag", "ref", "method=new", "-f", "json")
    assert again.exit_code == 0, again.stderr
    assert [r["tags"] for r in json.loads(again.stdout)["rows"]] == ["method=new,paper=fig2"] * 2
    assert tags_of(near_names)["ref-aaaaaaaa-s1"] == {"method": "new", "paper": "fig2"}
    assert cli("tag", "ref-s0", "method=a", "method=b").exit_code == 0  # the last of one command wins
    assert tags_of(near_names)["ref-aaaaaaaa-s0"] == {"method": "b", "paper": "fig2"}
    listed = json.loads(cli("runs", "--tag", "method=new", "-f", "json").stdout)["rows"]
    assert [r["id"] for r in listed] == ["ref-aaaaaaaa-s1"]
