"""One name, one meaning: a name that stands for several groups where one is meant is
refused in one line, by every command that takes it, and `runs --name` lists what the
others would take.

Runs are written by hand (no training) except in the first test, which trains the
README's case: a spec trained again with other settings under the same name."""

from __future__ import annotations

import json

import pytest

from conftest import cli, fake_run, run_dirs, tiny_spec

OLD = "2026-01-01T00:00:00.000+00:00"
NEW = "2026-01-02T00:00:00.000+00:00"
QUICKSTART_REFUSED = (
    "Error: quickstart: names 2 groups, different specs trained under the name quickstart: "
    "quickstart-aaaaaaaa (3 runs, created 2026-01-01 00:00:00), quickstart-bbbbbbbb (3 runs, created "
    "2026-01-02 00:00:00); name the group you mean, e.g. quickstart-bbbbbbbb (masklab runs --name quickstart "
    "lists their runs)\n"
)
SEED_REFUSED = (
    "Error: quickstart-s0: matches runs of 2 groups, different specs trained under the name quickstart: "
    "quickstart-aaaaaaaa (1 run, created 2026-01-01 00:00:00), quickstart-bbbbbbbb (1 run, created "
    "2026-01-02 00:00:00); name one run by its id, e.g. quickstart-bbbbbbbb-s0\n"
)


def runs(root, name: str, group_hash: str, created: str, seeds=(0, 1, 2), **info) -> None:
    for seed in seeds:
        fake_run(root, name=name, seed=seed, group_hash=group_hash, created=created, **info)


@pytest.fixture
def two_versions(workdir):
    """quickstart trained from two specs (aaaaaaaa, then bbbbbbbb) and quickstart-static."""
    root = workdir / "runs"
    runs(root, "quickstart", "aaaaaaaa", OLD)
    runs(root, "quickstart", "bbbbbbbb", NEW)
    runs(root, "quickstart-static", "cccccccc", OLD)
    return workdir


def run_jsons(workdir) -> dict[str, str]:
    return {p.name: (p / "run.json").read_text() for p in run_dirs(workdir)}


def test_a_spec_trained_again_under_its_name_is_never_a_hidden_third_group(workdir, write_spec):
    """The README's case, trained: `compare quickstart quickstart-static` after the spec was
    trained again with other settings names two groups of quickstart; it is refused, and
    the group named alone gives two groups and one Holm test."""
    spec = write_spec(tiny_spec(train={"epochs": 1}))
    assert cli("train", spec, "-q", "--seeds", "0,1").exit_code == 0
    assert (
        cli("train", spec, "-q", "--seeds", "0,1", "--set", "name=tiny-static", "--set", "train.lr=0.02").exit_code == 0
    )
    assert cli("train", spec, "-q", "--seeds", "0,1", "--set", "train.epochs=2").exit_code == 0
    first, second = dict.fromkeys(
        p.name[:-3] for p in run_dirs(workdir) if p.name.startswith("tiny-") and "static" not in p.name
    )
    refused = cli("compare", "tiny", "tiny-static")
    assert refused.exit_code == 1 and refused.stdout == ""
    assert refused.stderr.startswith(
        f"Error: tiny: names 2 groups, different specs trained under the name tiny: {first} (2 runs, created "
    )
    assert refused.stderr.endswith(
        f"; name the group you mean, e.g. {second} (masklab runs --name tiny lists their runs)\n"
    )
    body = json.loads(cli("compare", second, "tiny-static", "-f", "json").stdout)
    assert [g["group"] for g in body["groups"]] == [
        second,
        next(p.name[:-3] for p in run_dirs(workdir) if "static" in p.name),
    ]
    (comparison,) = body["comparisons"]
    assert "Holm" not in comparison["why"]  # one test: nothing to adjust for
    shown = cli("show", "tiny-s0")
    assert shown.exit_code == 1 and shown.stderr.endswith(f"; name one run by its id, e.g. {second}-s0\n")
    assert cli("show", f"{second}-s0").exit_code == 0


def test_compare_refuses_a_name_of_two_groups_and_takes_the_group(two_versions):
    refused = cli("compare", "quickstart", "quickstart-static")
    assert (refused.exit_code, refused.stdout, refused.stderr) == (1, "", QUICKSTART_REFUSED)
    body = json.loads(cli("compare", "quickstart-bbbbbbbb", "quickstart-static", "-f", "json").stdout)
    assert [g["group"] for g in body["groups"]] == ["quickstart-bbbbbbbb", "quickstart-static-cccccccc"]
    assert len(body["comparisons"]) == 1


@pytest.mark.parametrize(
    "command",
    [
        ("rm", "quickstart"),
        ("rm", "quickstart", "--dry-run"),
        ("tag", "quickstart", "method=dynamic"),
        ("export", "quickstart", "--to", "tensorboard:tb"),
        ("eval", "quickstart", "--op", "gaussian:sigma=0.1"),
        ("compare", "quickstart", "--by", "train.lr"),
    ],
)
def test_every_command_refuses_a_name_of_two_groups_and_touches_nothing(two_versions, command):
    before = run_jsons(two_versions)
    out = cli(*command)
    assert (out.exit_code, out.stdout, out.stderr) == (1, "", QUICKSTART_REFUSED)
    assert run_jsons(two_versions) == before and not (two_versions / "tb").exists()


@pytest.mark.parametrize(
    "command",
    [
        ("show", "quickstart-s0"),
        ("eval", "quickstart-static-s0", "--op", "gaussian:sigma=0.1", "--baseline", "quickstart-s0"),
    ],
)
def test_a_run_name_of_two_groups_says_which_and_how_to_name_one(two_versions, command):
    out = cli(*command)
    assert (out.exit_code, out.stdout, out.stderr) == (1, "", SEED_REFUSED)


def test_several_runs_of_one_group_where_one_is_meant(two_versions):
    out = cli("show", "quickstart-static")
    assert out.exit_code == 1
    assert out.stderr == (
        "Error: quickstart-static: matches 3 runs (seeds 0, 1, 2 of quickstart-static-cccccccc); name one, "
        "e.g. quickstart-static-s0\n"
    )
    for seed, created in ((2, OLD), (0, NEW), (1, NEW)):  # seeds created out of order: listed by seed
        fake_run(two_versions / "runs", name="late", seed=seed, group_hash="dddddddd", created=created)
    late = cli("show", "late")
    assert late.stderr == "Error: late: matches 3 runs (seeds 0, 1, 2 of late-dddddddd); name one, e.g. late-s0\n"
    prefix = cli("show", "quickstart-b")  # a prefix into the hash of one group: its runs, not one
    assert prefix.stderr == (
        "Error: quickstart-b: matches 3 runs (seeds 0, 1, 2 of quickstart-bbbbbbbb); name one, e.g. "
        "quickstart-bbbbbbbb-s0\n"
    )


def test_runs_name_lists_the_runs_of_both_groups_and_says_the_others_refuse(two_versions):
    out = cli("runs", "--name", "quickstart", "-f", "csv")
    assert out.exit_code == 0
    assert [line.split(",")[0] for line in out.stdout.splitlines()[1:]] == [
        f"quickstart-{h}-s{s}" for h in ("aaaaaaaa", "bbbbbbbb") for s in range(3)
    ]
    note = QUICKSTART_REFUSED.replace("Error: ", "note: ").split("; name the group")[0]
    assert out.stderr == f"{note}; other commands refuse the name: name a group or a run id\n"
    one = cli("runs", "--name", "quickstart-bbbbbbbb", "-f", "csv")
    assert (one.stderr, len(one.stdout.splitlines())) == ("", 4)


@pytest.fixture
def study(workdir):
    """A study `sd` of two variants (none, dynamic), each 2 seeds, and a run outside it."""
    root = workdir / "runs"
    for position, (label, group_hash) in enumerate((("none", "11111111"), ("dynamic", "22222222"))):
        runs(root, f"sd-{label}", group_hash, OLD, (0, 1), study="sd", variant=position, label=label)
    runs(root, "sd-dynamicx", "33333333", OLD, (0,))  # a name that contains a variant's: never in the study
    return workdir


def ids(out) -> list[str]:
    assert out.exit_code == 0, out.stderr
    return [r.get("id") or r.get("run") for r in json.loads(out.stdout)["rows"]]


@pytest.mark.parametrize(
    "name",
    [
        "sd",
        "sd-none",
        "sd-dynamic-22222222",
        "sd-none-s1",
        "sd-none-11111111-s0",
        "sd-none-1",
        "sd-dynamicx",
        "nothing",
    ],
)
def test_runs_name_selects_what_rm_selects(study, name):
    """A study, a variant's name, a group, <name>-s<seed>, an id, a prefix: `runs --name`
    lists exactly the runs `rm` would remove; where rm refuses the name, it lists the runs
    the name matches and says why rm refuses; a name of nothing lists nothing."""
    listed = cli("runs", "--name", name, "-f", "json")
    removed = cli("rm", name, "--dry-run", "-f", "json")
    if removed.exit_code == 0:
        assert sorted(ids(listed)) == sorted(ids(removed)) and ids(listed) and listed.stderr == ""
    elif name == "nothing":
        assert ids(listed) == [] and listed.stderr == "" and "no such run" in removed.stderr
    else:  # a prefix of two runs: listed, and the note says what rm says
        reason = removed.stderr.removeprefix("Error: ").split("; name one")[0]
        assert ids(listed) == ["sd-none-11111111-s0", "sd-none-11111111-s1"]
        assert listed.stderr == f"note: {reason}; other commands refuse the name: name a group or a run id\n"


def test_runs_name_of_a_study_lists_its_variants(study):
    listed = ids(cli("runs", "--name", "sd", "-f", "json"))
    assert listed == ["sd-dynamic-22222222-s0", "sd-dynamic-22222222-s1", "sd-none-11111111-s0", "sd-none-11111111-s1"]


def test_a_study_trained_again_with_other_settings_is_refused(study):
    root = study / "runs"
    for position, (label, group_hash) in enumerate((("none", "44444444"), ("dynamic", "55555555"))):
        runs(root, f"sd-{label}", group_hash, NEW, (0,), study="sd", variant=position, label=label)
    for command in (("compare", "sd"), ("compare", "sd", "--by", "train.lr"), ("rm", "sd"), ("tag", "sd", "a=b")):
        out = cli(*command)
        assert (out.exit_code, out.stdout) == (1, "")
        assert out.stderr == (
            "Error: sd: names 2 groups for its variant or cell sd-none (the study trained again with other "
            "settings): sd-none-11111111 (2 runs, created 2026-01-01 00:00:00), sd-none-44444444 (1 run, created "
            "2026-01-02 00:00:00) (and so do 1 more of its variants or cells); name the group you mean, e.g. "
            "sd-none-44444444 (masklab runs --name sd lists their runs)\n"
        ), command
    assert len(run_dirs(study)) == 7


def test_a_study_and_a_spec_name_at_once(workdir):
    """`grid` is a study (two cells) and the spec name of a run trained without the grid."""
    root = workdir / "runs"
    runs(root, "grid-rate=0.25", "66666666", OLD, (0,), study="grid", variant=0, label="rate=0.25")
    runs(root, "grid-rate=0.5", "77777777", OLD, (0,), study="grid", variant=1, label="rate=0.5")
    runs(root, "grid", "88888888", NEW, (0,), summary={"test_acc": 0.5})
    refused = cli("compare", "grid")
    assert (refused.exit_code, refused.stdout) == (1, "")
    assert refused.stderr == (
        "Error: grid: names a study of 2 groups (grid-rate=0.25-66666666, grid-rate=0.5-77777777) and, outside "
        "it, runs of the spec name grid: grid-88888888 (1 run, created 2026-01-02 00:00:00); name the groups you "
        "mean, e.g. grid-88888888 (masklab runs --name grid lists their runs)\n"
    )
    pivot = cli("compare", "grid", "--by", "model.arch", "-f", "csv")  # --by pivots the study alone, and says so
    assert pivot.exit_code == 0 and pivot.stdout.splitlines()[1].startswith("mlp,1,0.9,")
    assert pivot.stderr == (
        "note: grid: --by pivots the study grid; runs of the spec name grid outside it are left out (grid-88888888)\n"
    )


def test_a_search_names_its_trials_and_refuses_the_trials_of_two_searches(workdir):
    root = workdir / "runs"
    for number, group_hash in enumerate(("9a9a9a9a", "9b9b9b9b")):
        trial = {"study": "s-0f0f0f0f", "number": number}
        fake_run(root, name="s-search", seed=3, group_hash=group_hash, created=OLD, trial=trial)
    body = json.loads(cli("compare", "s-search", "-f", "json").stdout)
    assert [g["group"] for g in body["groups"]] == ["s-search-9a9a9a9a", "s-search-9b9b9b9b"]
    fake_run(root, name="s-search", seed=3, group_hash="9c9c9c9c", created=NEW, trial={"study": "s-1e1e1e1e"})
    refused = cli("compare", "s-search")
    assert (refused.exit_code, refused.stdout) == (1, "")
    assert refused.stderr == (
        "Error: s-search: names the trials of 2 searches: s-0f0f0f0f (2 trial runs, created 2026-01-01 00:00:00), "
        "s-1e1e1e1e (1 trial runs, created 2026-01-02 00:00:00); name the groups you mean, e.g. s-search-9c9c9c9c "
        "(masklab runs --name s-search lists their runs)\n"
    )
