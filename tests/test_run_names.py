"""A name stands for its own runs only, and a tag set again takes its new value.

Runs are written by hand (no training): `ref`, and runs whose names contain it (`ref2`,
`xref`), so a name matched loosely (by substring or prefix) would reach the others."""

from __future__ import annotations

import json
import shutil

import pytest

from masklab.store.runs import RunStore

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


def show_id(ref: str) -> str:
    out = cli("show", ref, "-f", "json")
    assert out.exit_code == 0, out.stderr
    return json.loads(out.stdout)["run"]["id"]


def error_of(*args: str) -> str:
    out = cli(*args)
    assert out.exit_code == 1 and out.stdout == "", (out.stdout, out.stderr)
    assert out.stderr.count("\n") == 1, out.stderr
    return out.stderr


def test_an_id_names_its_own_run_even_where_it_begins_another_id(workdir):
    for seed in (1, 10):
        fake_run(workdir / "runs", name="x", seed=seed, group_hash="dddddddd")
    assert show_id("x-dddddddd-s1") == "x-dddddddd-s1"
    assert show_id("x-s1") == "x-dddddddd-s1"  # <name>-s<seed>
    assert error_of("show", "x-dddddddd-s") == (
        "Error: x-dddddddd-s: matches 2 runs (seeds 1, 10 of x-dddddddd); name one, e.g. x-s1\n"
    )


def test_an_ambiguous_prefix_lists_five_runs_then_dots(workdir):
    from masklab.store.names import SHOWN

    for seed in range(SHOWN):
        fake_run(workdir / "runs", name="m", seed=seed, group_hash="eeeeeeee")
    shown = "seeds " + ", ".join(str(s) for s in range(SHOWN))
    assert error_of("show", "m-e") == f"Error: m-e: matches {SHOWN} runs ({shown} of m-eeeeeeee); name one, e.g. m-s0\n"
    fake_run(workdir / "runs", name="m", seed=SHOWN, group_hash="eeeeeeee")
    assert error_of("show", "m-e") == (
        f"Error: m-e: matches {SHOWN + 1} runs ({shown}, ... of m-eeeeeeee); name one, e.g. m-s0\n"
    )


def test_an_id_prefix_covers_the_name_its_dash_and_part_of_the_hash(near_names):
    assert show_id("xref-c") == "xref-cccccccc-s0"
    assert error_of("show", "ref-a").startswith("Error: ref-a: matches 2 runs (seeds 0, 1 of ref-aaaaaaaa)")
    for ref in ("ref-", "ref-s", "ref-sx", "ref-s9"):
        assert error_of("show", ref).startswith(f"Error: {ref}: no such run in "), ref


def test_a_name_with_s_in_it_resolves_name_and_seed(workdir):
    for seed in (0, 1):
        fake_run(workdir / "runs", name="mask-study", seed=seed, group_hash="ffffffff")
    assert show_id("mask-study-s1") == "mask-study-ffffffff-s1"
    assert error_of("show", "mask-study-s2").startswith("Error: mask-study-s2: no such run in ")


def test_hidden_folders_are_never_runs_and_paths_name_folders_in_the_store(near_names):
    runs = near_names / "runs"
    hidden = runs / ".stage-ref-aaaaaaaa-s0-1234"
    shutil.copytree(runs / "ref-aaaaaaaa-s0", hidden)
    assert error_of("show", hidden.name).startswith(f"Error: {hidden.name}: no such run in ")
    assert error_of("show", f"runs/{hidden.name}").startswith(
        f"Error: runs/{hidden.name}: not a run folder in the runs"
    )
    assert show_id("runs/ref-aaaaaaaa-s1") == show_id(str(runs / "ref-aaaaaaaa-s1")) == "ref-aaaaaaaa-s1"
    listed = json.loads(cli("runs", "-f", "json").stdout)["rows"]
    assert sorted(r["id"] for r in listed) == [p.name for p in run_dirs(near_names)]


def test_runs_are_listed_in_creation_order_and_a_stray_folder_names_nothing(workdir):
    fake_run(workdir / "runs", name="zzz", created="2026-01-01T00:00:01")
    fake_run(workdir / "runs", name="aaa", created="2026-01-01T00:00:02")
    (workdir / "runs" / "notes").mkdir()  # not a run id: damaged in listings, a name of no run
    listed = json.loads(cli("runs", "-f", "json").stdout)["rows"]
    assert [(r["id"], r["status"]) for r in listed] == [
        ("notes", "damaged"),  # no run.json, no creation time: first
        ("zzz-0123abcd-s0", "done"),
        ("aaa-0123abcd-s0", "done"),
    ]
    assert cli("rm", "aaa").exit_code == 0 and [p.name for p in run_dirs(workdir)] == ["notes", "zzz-0123abcd-s0"]


def test_a_study_name_gives_its_variants_in_the_files_order(workdir):
    fake_run(workdir / "runs", name="st-b", group_hash="11111111", study="st", variant=0)
    fake_run(workdir / "runs", name="st-a", group_hash="22222222", study="st", variant=1)
    fake_run(workdir / "runs", name="st-c", group_hash="33333333", study="st", variant=2)
    body = json.loads(cli("compare", "st", "-f", "json").stdout)
    assert [g["group"] for g in body["groups"]] == ["st-b-11111111", "st-a-22222222", "st-c-33333333"]
    tagged = json.loads(cli("tag", "st", "k=v", "-f", "json").stdout)["rows"]
    assert [r["run"] for r in tagged] == ["st-b-11111111-s0", "st-a-22222222-s0", "st-c-33333333-s0"]


def test_a_path_outside_the_store_or_to_nothing_in_it_is_one_line(near_names):
    root = RunStore(near_names / "runs").root
    assert error_of("show", str(near_names)) == (
        f"Error: {near_names}: not a run folder in the runs folder {root}; masklab names runs by id, name or a path "
        "inside it (pass --runs-dir for another runs folder)\n"
    )
    assert error_of("show", "runs/nope-0123abcd-s0") == (
        f"Error: runs/nope-0123abcd-s0: no such run in {root}; `masklab runs` lists them (or pass --runs-dir)\n"
    )
    (near_names / "runs" / ".link").symlink_to(near_names)
    (near_names / "link").symlink_to(near_names)
    for ref in ("runs/.link", str(near_names / "link")):
        assert error_of("rm", "--unlink", ref) == (
            f"Error: {ref}: not in the runs folder {root}; masklab touches only its own runs\n"
        )
    assert (near_names / "runs" / ".link").is_symlink() and (near_names / "link").is_symlink()
