"""Sequential studies from the command line (`masklab train --until decided`): the
`sequential:` section, the plan (--dry-run), looks that stop early for a large effect
and run to the budget otherwise, the record and its refusals, resume after a signal,
executors that agree (--jobs, Ray, seed groups), and compare over a recorded study."""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

import pytest
import yaml
from test_study import masklab as masklab_proc

from masklab.errors import SpecError, UsageError
from masklab.study import plan, sequential_plan as sp

from conftest import cli, tiny_spec

LARGE = {"plain": {}, "masked": {"train_ops": [{"op": "pixel", "rate": 0.97}]}}  # masked is far worse
SMALL = {"a": {}, "b": {"train.lr": 0.0101}}  # a difference well inside the seed noise


def study_spec(name: str, variants: dict, **changes) -> dict:
    return tiny_spec(name=name, variants=variants, **changes)


def write(folder: Path, body: dict, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def train_json(*args, runs: Path):
    out = cli("train", *args, "-q", "-f", "json", "--runs-dir", runs)
    return out, (json.loads(out.stdout) if out.exit_code == 0 else None)


def record(runs: Path, study: str) -> dict:
    return json.loads((runs / f"{study}.sequential.json").read_text())


def run_names(runs: Path) -> list[str]:
    return sorted(p.name for p in runs.iterdir() if p.is_dir() and not p.name.startswith("."))


def decisions(body: dict) -> list[tuple]:
    return [(c["group"], c["metric"], c["verdict"], c["decided_at"], c["diff"], c["ci"]) for c in body["comparisons"]]


# --- the section and the plan (pure) ------------------------------------------------------


def test_the_section_takes_defaults_overrides_and_options_in_that_order():
    s = sp.read_settings({"max_seeds": 10, "metric": "acc"}, [], {})
    assert (s.max_seeds, s.metric, s.min_effect, s.boundary, s.futility) == (
        10,
        ["test_acc"],
        0.0,
        "obrien-fleming",
        0.2,
    )
    assert s.design(2).looks == (3, 5, 10) and s.design(2).comparisons == 2
    s = sp.read_settings(
        {"max_seeds": 10}, ["sequential.max_seeds=12", "sequential.min_effect=0.01"], {"max_seeds": 40}
    )
    assert (s.max_seeds, s.min_effect) == (40, 0.01) and s.design(1).looks == (3, 5, 8, 12, 18, 27, 40)
    s = sp.read_settings({"looks": [3, 6, 9]}, [], {"metric": ["test_acc", "robust_acc"]})
    assert (s.max_seeds, s.metric, s.design(1).looks) == (9, ["test_acc", "robust_acc"], (3, 6, 9))


@pytest.mark.parametrize(
    "section, sets, options, message",
    [
        ({"max_seeds": 2}, [], {}, "sequential.max_seeds: must be an integer in [3, 1000], got 2"),
        ({"max_sedes": 5}, [], {}, "sequential.max_sedes: unknown key; did you mean 'max_seeds'?"),
        (
            {"boundary": "pocok"},
            [],
            {},
            "sequential.boundary: must be one of obrien-fleming, pocock, confidence-sequence, got 'pocok'; did you mean 'pocock'?",
        ),
        ({"min_effect": -0.1}, [], {}, "sequential.min_effect: must be >= 0, got -0.1"),
        ({"alpha": 0.7}, [], {}, "sequential.alpha: must be in (0, 0.5], got 0.7"),
        ({"looks": [3, 3]}, [], {}, "sequential.looks: seed counts must increase, e.g. [3, 5, 8, 12, 20]; got [3, 3]"),
        (
            {"looks": [3, 6], "max_seeds": 8},
            [],
            {},
            "sequential.looks: ends at 6, but max_seeds is 8; give one of them",
        ),
        ({"metric": ["acc", "test_acc"]}, [], {}, "sequential.metric: a metric appears twice; list each once"),
        ([3], [], {}, "sequential: must be a mapping, got a list [3]"),
        (
            {},
            ["sequential.max_seeds=many"],
            {},
            "sequential.max_seeds: must be an integer, got a string 'many'",
        ),
        (
            {"looks": [3, 6]},
            [],
            {"max_seeds": 8},
            "--max-seeds 8: the spec's sequential.looks end at 6; drop one of them",
        ),
    ],
)
def test_bad_settings_name_their_key(section, sets, options, message):
    with pytest.raises((SpecError, UsageError)) as err:
        sp.read_settings(section, sets, options)
    assert str(err.value) == message


def test_the_comparisons_are_each_group_against_the_first_declared_before_any_seed():
    raw = study_spec("s", {**LARGE, "other": {"train.lr": 0.02}})
    settings = sp.read_settings({"metric": ["test_acc", "test_loss"], "max_seeds": 5}, [], {})
    study = plan.plan_study(raw, "s", seeds=list(range(settings.max_seeds)))
    p = sp.plan_sequential(study, settings)
    assert [p.labels[g] for g in p.groups] == ["plain", "masked", "other"] and p.reference == p.groups[0]
    assert [(c.group, c.metric) for c in p.comparisons] == [
        (p.groups[1], "test_acc"),
        (p.groups[1], "test_loss"),
        (p.groups[2], "test_acc"),
        (p.groups[2], "test_loss"),
    ]
    assert p.design.comparisons == 4 and p.design.looks == (3, 5) and p.seeds == [0, 1, 2, 3, 4]
    assert [r.seed for r in p.runs([p.groups[1]], 3)] == [0, 1, 2]
    assert p.identity()["groups"] == p.groups  # what a rerun must match


def test_the_section_is_not_part_of_a_runs_id():
    raw = study_spec("s", LARGE)
    with_section = {**raw, "sequential": {"max_seeds": 5}}
    ids = [r.id for r in plan.plan_study(raw, "s", seeds=[0]).runs]
    assert [r.id for r in plan.plan_study(with_section, "s", seeds=[0]).runs] == ids


def test_the_shipped_sequential_studies_plan_as_results_md_says():
    from masklab import spec as spec_mod

    root = Path(__file__).resolve().parents[1] / "experiments"
    planned = {}
    for path in sorted(root.glob("*.yaml")):
        raw = spec_mod.read_spec_file(path)
        if "sequential" in raw:
            settings = sp.read_settings(raw["sequential"], [], {})
            study = plan.plan_study(raw, raw["name"], seeds=list(range(settings.max_seeds)))
            p = sp.plan_sequential(study, settings)
            planned[path.name] = (p.labels[p.reference], [p.labels[c.group] for c in p.comparisons], p.metrics)
            planned[path.name] += (p.design.looks, p.design.min_effect)
    assert planned == {
        "vit-pretrain.yaml": ("dynamic", ["static-1", "static-4"], ["test_recon_loss"], (3, 5, 8, 12), 0.0),
        "vit-finetune.yaml": (
            "from-dynamic",
            ["from-static-1", "from-static-4", "scratch", "scratch-16"],
            ["test_acc"],
            (3, 5, 8, 12),
            0.005,
        ),
    }


# --- bad input: one line each, nothing created -----------------------------------------------


@pytest.mark.parametrize(
    "body, args, message",
    [
        (study_spec("s", LARGE), ["--until", "decided", "--seeds", "0-4"], "Error: --seeds with --until decided"),
        (study_spec("s", LARGE), ["--until", "decided", "--force"], "Error: --force with --until decided"),
        (study_spec("s", LARGE), ["--max-seeds", "5"], "Error: --max-seeds goes with --until decided"),
        (
            study_spec("s", LARGE),
            ["--until", "all", "--metric", "test_loss"],
            "Error: --metric goes with --until decided",
        ),
        (study_spec("s", LARGE), ["--until", "decided", "--max-seeds", "2"], "Invalid value for '--max-seeds'"),
        (
            tiny_spec(name="s"),
            ["--until", "decided"],
            "Error: --until decided: study s has one group, nothing to compare",
        ),
        (
            {**study_spec("s", LARGE), "sequential": {"max_seeds": 2}},
            [],
            "Error: sequential.max_seeds: must be an integer",
        ),
        (
            {**study_spec("s", LARGE), "sequential": {"futile": 0.1}},
            ["--until", "all"],
            "Error: sequential.futile: unknown key; did you mean 'futility'?",
        ),
        (
            study_spec("s", LARGE),
            ["--until", "decided", "--set", "sequential=5"],
            "Error: --set sequential=...: set one key at a time",
        ),
        (
            study_spec(
                "s",
                {"a": {}, "b": {"train_ops[0].mode": "static"}},
                train={"objective": "masked-modeling"},
                model={"arch": "vit", "patch": 4, "dim": 16, "depth": 1, "heads": 2},
                train_ops=[{"op": "tokens", "rate": 0.5, "action": "drop"}],
            ),
            ["--until", "decided"],
            "Error: metric test_acc: masked-modeling runs are scored by reconstruction; compare test_recon_loss",
        ),
    ],
)
def test_bad_input_is_one_line_and_creates_nothing(workdir, body, args, message):
    spec = write(workdir, body)
    out = cli("train", spec, *args)
    assert out.exit_code == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr
    if message.startswith("Error"):
        assert out.stderr.count("\n") == 1
    assert not (workdir / "runs").exists()


def test_dry_run_shows_the_design_its_boundaries_and_the_most_runs_and_creates_nothing(workdir):
    spec = write(workdir, {**study_spec("s", LARGE), "sequential": {"max_seeds": 8}})
    out = cli("train", spec, "--dry-run", "-f", "json")
    assert out.exit_code == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["describe"] == (
        "looks at 3, 5, 8 seeds per group (at most 8); O'Brien-Fleming-type alpha spending at 0.05; "
        "futile below 20% predictive power"
    )
    assert [(r["look"], r["seeds"], r["runs_at_most"]) for r in body["looks"]] == [(1, 3, 6), (2, 5, 10), (3, 8, 16)]
    assert body["looks"][-1]["alpha_spent"] == pytest.approx(0.05)
    assert body["looks"][0]["t_critical"] == pytest.approx(44.52, abs=0.01)
    assert (body["max_runs"], body["runs_done"], body["record"]) == (16, 0, None)
    assert body["comparisons"] == [{"group": body["groups"][1], "metric": "test_acc"}]
    table = cli("train", spec, "--dry-run")
    assert table.stdout.splitlines()[0].split() == [
        "look",
        "seeds",
        "runs_at_most",
        "alpha_spent",
        "nominal_p",
        "t_critical",
    ]
    assert "at most 16 runs (2 groups x 8 seeds, a fixed design's count); 0 done already" in table.stderr
    assert not (workdir / "runs").exists()


def test_the_dry_run_does_not_import_torch(workdir):
    import subprocess
    import sys

    spec = write(workdir, study_spec("s", LARGE))
    code = (
        "import sys; from masklab.cli import app; from typer.testing import CliRunner; "
        f"r = CliRunner().invoke(app, ['train', {str(spec)!r}, '--until', 'decided', '--dry-run']); "
        "assert r.exit_code == 0, r.output; assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=workdir)


# --- studies that ran -----------------------------------------------------------------------

SECTION = {"max_seeds": 4, "futility": 0}  # looks at 3 and 4 seeds; no stop for futility


@pytest.fixture(scope="module")
def seq(tmp_path_factory) -> dict:
    """a (the reference), b (lr 0.0101: a difference inside the seed noise) and masked
    (97% of pixels zeroed: far worse), at most 4 seeds per group."""
    folder = tmp_path_factory.mktemp("seq")
    spec = write(folder, {**study_spec("seq", {**SMALL, "masked": LARGE["masked"]}), "sequential": SECTION})
    out, body = train_json(spec, runs=folder / "runs")
    assert out.exit_code == 0, out.stderr
    by_label = {c["group"].split("-")[1]: c for c in body["comparisons"]}
    return {"spec": spec, "runs": folder / "runs", "body": body, "stderr": out.stderr, "by": by_label}


def test_a_large_effect_stops_at_the_first_look_and_its_variant_stops_consuming_seeds(seq):
    c, body = seq["by"]["masked"], seq["body"]
    assert (c["verdict"], c["decided_at"], c["interval"]) == (
        "worse",
        "look 1 (3 seeds)",
        "repeated-t (obrien-fleming)",
    )
    assert "p" not in c and "p_adj" not in c  # never the fixed-n p
    stats = {g["group"].split("-")[1]: g["stats"]["test_acc"] for g in body["groups"]}
    a, masked = ({int(s): v for s, v in stats[k]["values"].items()} for k in ("a", "masked"))
    assert sorted(masked) == [0, 1, 2] and sorted(a) == [0, 1, 2, 3]
    assert c["diff"] == pytest.approx(sum(masked.values()) / 3 - sum(a[s] for s in masked) / 3)
    assert c["ci"][0] < c["diff"] < c["ci"][1] < 0
    names = run_names(seq["runs"])
    assert [n.rsplit("-s", 1)[1] for n in names if n.startswith("seq-masked-")] == ["0", "1", "2"]
    assert len(names) == 11  # a and b: 4 seeds; masked: 3
    assert "  masked vs a (test_acc): worse  diff " in seq["stderr"]
    assert "  settled, no more seeds: masked" in seq["stderr"]


def test_a_comparison_that_cannot_settle_runs_to_the_budget(seq):
    c = seq["by"]["b"]
    assert (c["verdict"], c["decided_at"]) == ("inconclusive", "look 2 (4 seeds)")
    assert c["ci"][0] < 0 < c["ci"][1]
    assert "  b vs a (test_acc): continue  diff " in seq["stderr"]
    assert "  b vs a (test_acc): inconclusive  diff " in seq["stderr"]


def test_the_record_holds_the_design_and_every_looks_decisions(seq):
    rec, groups = record(seq["runs"], "seq"), [g["group"] for g in seq["body"]["groups"]]
    assert (rec["kind"], rec["status"], rec["groups"], rec["metrics"]) == (
        "masklab sequential study",
        "done",
        groups,
        ["test_acc"],
    )
    assert rec["design"] == {
        "looks": [3, 4],
        "alpha": 0.05,
        "boundary": "obrien-fleming",
        "min_effect": 0.0,
        "comparisons": 2,
        "multiplicity": "holm",
        "futility": 0,
    }
    assert [(look["seeds"], look["groups"], look["decisions"]) for look in rec["looks"]] == [
        (3, groups, {f"{groups[1]} test_acc": "continue", f"{groups[2]} test_acc": "worse"}),
        (4, groups[:2], {f"{groups[1]} test_acc": "inconclusive"}),
    ]
    assert rec["spent"] == {"runs": 11, "fixed_design_runs": 12}
    assert (seq["body"]["sequential"]["runs_spent"], seq["body"]["sequential"]["fixed_design_runs"]) == (11, 12)
    assert (
        "11 runs in the sequence (11 trained by this command); a fixed design with 4 seeds per group trains 12"
        in seq["stderr"]
    )
    assert "\n[9/9] seq-masked-" in seq["stderr"] and "\n[2/2] seq-b-" in seq["stderr"]  # counted per look


def test_running_it_again_trains_nothing_and_prints_the_same_verdicts(seq, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(seq["runs"], runs)
    out, body = train_json(seq["spec"], runs=runs)
    assert out.exit_code == 0, out.stderr
    assert decisions(body) == decisions(seq["body"])
    assert "0 trained by this command" in out.stderr and ": done  test_acc" not in out.stderr
    assert record(runs, "seq")["looks"] == record(seq["runs"], "seq")["looks"]  # the same looks, no new one


@pytest.mark.slow
def test_futility_stops_a_difference_the_budget_cannot_settle(tmp_path):
    spec = write(tmp_path, study_spec("three", {**SMALL, "masked": LARGE["masked"]}))
    out, body = train_json(spec, "--until", "decided", "--max-seeds", "5", runs=tmp_path / "runs")
    assert out.exit_code == 0, out.stderr
    verdicts = [(c["verdict"], c["decided_at"]) for c in body["comparisons"]]
    assert verdicts == [("futile", "look 1 (3 seeds)"), ("worse", "look 1 (3 seeds)")]
    assert "predictive power of a verdict by 5 seeds" in body["comparisons"][0]["why"]
    assert len(run_names(tmp_path / "runs")) == 9  # 3 groups x 3 seeds: nobody trains look 2


# --- the record ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, says",
    [
        (["--max-seeds", "10"], "with max_seeds 4 (looks 3, 4), this command 10 (looks 3, 5, 10)"),
        (["--min-effect", "0.01"], "with min_effect 0.0, this command 0.01"),
        (["--set", "train.lr=0.02"], "with groups seq-a-"),
        (["--metric", "test_loss"], "with metrics test_acc, this command test_loss"),
        (["--variant", "a", "--variant", "b"], "with groups seq-a-"),
        (["--set", "sequential.boundary=pocock"], "with boundary obrien-fleming, this command pocock"),
    ],
)
def test_the_record_refuses_a_changed_study(seq, tmp_path, args, says):
    runs = tmp_path / "runs"
    shutil.copytree(seq["runs"], runs)
    before = (runs / "seq.sequential.json").read_bytes()
    for extra in ([], ["--dry-run"]):
        out = cli("train", seq["spec"], *args, *extra, "--runs-dir", runs)
        assert out.exit_code == 2, out.stderr
        assert out.stderr.startswith(f"Error: {runs / 'seq.sequential.json'} records study seq {says}")
        assert out.stderr.count("\n") == 1 and "remove seq.sequential.json to start over" in out.stderr
    assert (runs / "seq.sequential.json").read_bytes() == before
    assert run_names(runs) == run_names(seq["runs"])


@pytest.mark.parametrize(
    "content, says",
    [
        (b"{not json", "not valid JSON (a damaged record)"),
        (b"[1, 2]", "holds a JSON list, not a study's record"),
        (b'{"kind": "something else"}', "not a sequential study's record"),
    ],
)
def test_a_damaged_record_is_a_one_line_refusal(seq, tmp_path, content, says):
    runs = tmp_path / "runs"
    shutil.copytree(seq["runs"], runs)
    (runs / "seq.sequential.json").write_bytes(content)
    out = cli("train", seq["spec"], "--runs-dir", runs)
    assert out.exit_code == 1 and out.stderr.count("\n") == 1, out.stderr
    assert says in out.stderr and f"remove {runs / 'seq.sequential.json'} to start the study over" in out.stderr
    assert (runs / "seq.sequential.json").read_bytes() == content
    out = cli("compare", "seq", "--runs-dir", runs)
    assert out.exit_code == 1 and says in out.stderr


def test_a_link_planted_as_the_record_is_refused_and_never_written_through(seq, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(seq["runs"], runs)
    outside = tmp_path / "outside.json"
    outside.write_bytes((runs / "seq.sequential.json").read_bytes())
    (runs / "seq.sequential.json").unlink()
    (runs / "seq.sequential.json").symlink_to(outside)
    before = outside.read_bytes()
    out = cli("train", seq["spec"], "--runs-dir", runs)
    assert out.exit_code == 1 and "is a symbolic link" in out.stderr, out.stderr
    assert outside.read_bytes() == before


def test_runs_that_no_longer_give_the_recorded_decisions_are_refused(seq, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(seq["runs"], runs)
    [masked_s0] = [p for p in runs.iterdir() if p.name.startswith("seq-masked-") and p.name.endswith("-s0")]
    summary = json.loads((masked_s0 / "summary.json").read_text())
    (masked_s0 / "summary.json").write_text(json.dumps({**summary, "test_acc": 0.8}))  # as if retrained otherwise
    out = cli("train", seq["spec"], "--runs-dir", runs)
    assert out.exit_code == 1, out.stderr
    group = seq["body"]["groups"][2]["group"]
    assert f"look 1 recorded {group} test_acc: worse; the runs now give continue (a run was retrained" in out.stderr
    assert out.stderr.strip().splitlines()[-1].endswith("remove seq.sequential.json to start the study over")
    shown = cli("compare", "seq", "--runs-dir", runs)
    assert shown.exit_code == 0 and f"warning: {runs / 'seq.sequential.json'}: look 1 recorded" in shown.stderr


def test_a_metric_the_runs_do_not_have_names_the_record_in_its_fix(seq, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(seq["runs"], runs)
    (runs / "seq.sequential.json").unlink()
    out = cli("train", seq["spec"], "--metric", "acc@patch(rate=0.5)", "-q", "--runs-dir", runs)
    last = out.stderr.strip().splitlines()[-1]
    assert out.exit_code == 2 and out.stderr.count("Error:") == 1, out.stderr
    assert last.startswith("Error: --metric acc@patch(rate=0.5): group seq-a-")
    assert last.endswith(f"remove {runs / 'seq.sequential.json'} and run again with another --metric")


def test_a_second_driver_of_the_same_study_is_refused(seq, tmp_path):
    from masklab.store import study_record

    runs = tmp_path / "runs"
    shutil.copytree(seq["runs"], runs)
    with study_record.driving(runs, "seq"):
        out = cli("train", seq["spec"], "--runs-dir", runs)
    assert out.exit_code == 1, out.stderr
    assert "Error: another process is running sequential study seq" in out.stderr


def test_a_run_that_fails_stops_the_study_before_that_looks_decisions(tmp_path):
    spec = write(tmp_path, study_spec("broken", {"a": {}, "b": {"train.lr": 1.0e12}}))
    out = cli("train", spec, "--until", "decided", "--max-seeds", "5", "-q", "--runs-dir", tmp_path / "runs")
    assert out.exit_code == 1, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: 3 run(s) of look 1 did not finish, so the study stops before that look's decisions")
    assert out.stdout == ""
    assert record(tmp_path / "runs", "broken")["looks"] == []


# --- compare over a recorded study -----------------------------------------------------------


def test_compare_reports_the_sequential_verdict_and_never_a_fixed_n_p(seq, runs_from):
    runs_from(seq["runs"].parent)
    out = cli("compare", "seq", "-f", "json")
    assert out.exit_code == 0, out.stderr
    body = json.loads(out.stdout)
    assert decisions(body) == decisions(seq["body"])
    assert all("p" not in c and "p_adj" not in c for c in body["comparisons"])
    assert body["sequential"]["design"]["looks"] == [3, 4] and body["verdict_rules"]["futile"]
    assert "note: seq is a sequential study" in out.stderr and "no fixed-n p is shown" in out.stderr
    table = cli("compare", "seq")
    header = table.stdout.splitlines()[0].split()
    assert "decided_at" in header and "p" not in header and "p_adj" not in header
    assert "look 1 (3 seeds)" in table.stdout
    named = cli("compare", "seq-a", "seq-masked", "-f", "json")  # groups by name: their rows of the same sequence
    assert named.exit_code == 0 and decisions(json.loads(named.stdout)) == decisions(body)[1:]


def test_compare_fixed_n_shows_the_fixed_table_labelled(seq, runs_from):
    runs_from(seq["runs"].parent)
    out = cli("compare", "seq", "--fixed-n", "-f", "json")
    assert out.exit_code == 0, out.stderr
    comparisons = json.loads(out.stdout)["comparisons"]
    assert all(c["p"] is not None and c["interval"] != "repeated-t (obrien-fleming)" for c in comparisons)
    assert "note: seq is a sequential study" in out.stderr and "--fixed-n asks for them" in out.stderr
    assert "do not hold their stated level (exploratory)" in out.stderr


@pytest.mark.parametrize(
    "args, code, says",
    [
        (["--fail-if", "test_acc.ci_high < 0"], 3, "'test_acc.ci_high < 0' tripped: seq-masked-"),
        (["--fail-if", "test_acc.ci_low < -1"], 0, ""),
        (["--fail-if", "test_acc.p_adj < 0.05"], 2, "a sequential study has no fixed-n p"),
        (["--metric", "test_loss"], 2, "study seq's design compares test_acc"),
        (["--min-effect", "0.01"], 2, "study seq's design has min_effect 0"),
        (["--p-outperform"], 2, "fixed-n views; over a sequential study add --fixed-n"),
    ],
)
def test_compare_gates_and_options_over_a_sequential_study(seq, runs_from, args, code, says):
    runs_from(seq["runs"].parent)
    out = cli("compare", "seq", *args)
    assert out.exit_code == code, out.stderr
    assert says in out.stderr


def test_compare_refuses_a_reference_the_design_did_not_use(seq, runs_from):
    runs_from(seq["runs"].parent)
    out = cli("compare", "seq-masked", "seq-a")
    assert out.exit_code == 2 and "compares each group with seq-a-" in out.stderr, out.stderr


# --- the same sequence, however it is executed ------------------------------------------------


def runs_running(runs: Path) -> list[dict]:
    """Runs part-way through training (an epoch done), read from their run.json."""
    infos = []
    for path in runs.glob("*/run.json"):
        if not path.parent.name.startswith("."):
            infos.append(json.loads(path.read_text()))  # written whole by the store (a rename)
    return [i for i in infos if i["status"] == "running" and i.get("epochs_done", 0) >= 1]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_a_study_stopped_mid_look_resumes_into_the_same_decisions(tmp_path, sig):
    spec = write(
        tmp_path, {**study_spec("budget", SMALL, train={"epochs": 6}), "sequential": {"max_seeds": 4, "futility": 0}}
    )
    reference, body = train_json(spec, runs=tmp_path / "reference")
    assert reference.exit_code == 0, reference.stderr
    runs = tmp_path / "runs"
    proc = masklab_proc("train", spec, runs=runs)
    try:
        deadline = time.time() + 300
        started = runs / "budget.sequential.json"
        while not (started.is_file() and len(record(runs, "budget")["looks"]) == 1 and runs_running(runs)):
            assert time.time() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(sig)
        proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == (-9 if sig == signal.SIGKILL else 130)
    assert len(record(runs, "budget")["looks"]) == 1
    midway = cli("compare", "budget", "-f", "json", "--runs-dir", runs)
    assert [c["verdict"] for c in json.loads(midway.stdout)["comparisons"]] == ["continue"]
    again, resumed = train_json(spec, runs=runs)
    assert again.exit_code == 0, again.stderr
    assert decisions(resumed) == decisions(body)
    strip = lambda r: [{k: v for k, v in look.items() if k != "finished"} for look in r["looks"]]  # noqa: E731
    assert strip(record(runs, "budget")) == strip(record(tmp_path / "reference", "budget"))


@pytest.mark.slow
def test_jobs_2_and_seed_groups_give_the_in_process_sequence(seq, tmp_path):
    out, body = train_json(seq["spec"], "--jobs", "2", runs=tmp_path / "jobs")
    assert out.exit_code == 0, out.stderr
    assert decisions(body) == decisions(seq["body"])
    batched, body = train_json(seq["spec"], "--set", "train.seed_batch=2", runs=tmp_path / "batched")
    assert batched.exit_code == 0, batched.stderr
    assert [(c["verdict"], c["decided_at"]) for c in body["comparisons"]] == [
        (c["verdict"], c["decided_at"]) for c in seq["body"]["comparisons"]
    ]
    assert [c["diff"] for c in body["comparisons"]] == pytest.approx(
        [c["diff"] for c in seq["body"]["comparisons"]], abs=1e-9
    )


@pytest.mark.slow
def test_ray_gives_the_in_process_sequence(seq, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'masklab[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        out, body = train_json(seq["spec"], "--executor", "ray", runs=tmp_path / "ray")
    finally:
        ray.shutdown()
    assert out.exit_code == 0, out.stderr
    assert decisions(body) == decisions(seq["body"])
