"""`compare --fail-if` never passes by accident, and a metric name means one computation.
Runs are written by hand (no training): exact values, exact exit codes."""

from __future__ import annotations

import json

import pytest

from masklab.analysis import compare as cmp, gates
from masklab.errors import UsageError
from masklab.store.runs import Run

from conftest import cli, fake_run

SPREAD = [0.90, 0.91, 0.92]


def groups(root, candidate: list[float | None] = SPREAD, **candidate_runs) -> None:
    """Group ref (3 seeds, test_acc 0.90..0.92) and group cand (its values, None: no test_acc)."""
    for seed, value in enumerate(SPREAD):
        fake_run(root, name="ref", seed=seed, group_hash="aaaaaaaa", summary={"test_acc": value})
    for seed, value in enumerate(candidate):
        summary = {"test_acc": value} if value is not None else {"test_macro_f1": 0.5}
        fake_run(
            root, name="cand", seed=seed, group_hash="bbbbbbbb", summary=summary, **candidate_runs.get(str(seed), {})
        )


@pytest.mark.parametrize(
    ("text", "metric", "field", "op", "threshold"),
    [
        ("test_acc < -0.005", "test_acc", "diff", "<", -0.005),
        ("acc.ci_high<=0", "test_acc", "ci_high", "<=", 0.0),
        ("acc@gaussian(sigma=0.2) < -0.01", "acc@gaussian(sigma=0.2)", "diff", "<", -0.01),
        ("acc@gaussian(sigma=0.2).mean >= 0.9", "acc@gaussian(sigma=0.2)", "mean", ">=", 0.9),
        ("acc@patch(rate=0.5,size=4)[seed=3].p<0.05", "acc@patch(rate=0.5,size=4)[seed=3]", "p", "<", 0.05),
        ("robust_acc@grid-1a2b3c4d != 1e-3", "robust_acc@grid-1a2b3c4d", "diff", "!=", 0.001),
        ("test_acc.foo < 1", "test_acc.foo", "diff", "<", 1.0),  # not a field: part of the name
    ],
)
def test_gates_parse_every_metric_name_compare_shows(text, metric, field, op, threshold):
    g = gates.parse_gate(text)
    assert (g.metric, g.field, g.op, g.threshold) == (metric, field, op, threshold)


@pytest.mark.parametrize(
    "bad", ["test_acc", "test_acc < lots", "< 3", "test_acc < nan", "test_acc > inf", "a b < 1", "x = 1"]
)
def test_a_gate_that_cannot_mean_anything_is_a_usage_error(bad):
    with pytest.raises(UsageError):
        gates.parse_gate(bad)


def test_an_advertised_cell_name_works_in_fail_if(workdir):
    for name, h, acc in (("ref", "aaaaaaaa", 0.8), ("cand", "bbbbbbbb", 0.7)):
        for seed in range(3):
            fake_run(
                workdir / "runs",
                name=name,
                seed=seed,
                group_hash=h,
                summary={"test_acc": 0.9, "acc@gaussian(sigma=0.2)": acc + seed / 100},
            )
    trips = cli("compare", "ref", "cand", "--fail-if", "acc@gaussian(sigma=0.2) < -0.05")
    assert trips.exit_code == 3, trips.stderr
    assert "'acc@gaussian(sigma=0.2) < -0.05' tripped: cand-bbbbbbbb vs ref-aaaaaaaa" in trips.stderr
    assert cli("compare", "ref", "cand", "--fail-if", "acc@gaussian(sigma=0.2) < -0.2").exit_code == 0


@pytest.mark.parametrize(
    ("status", "error"),
    [("failed", "loss became non-finite at epoch 1"), ("interrupted", "interrupted"), ("running", None)],
)
def test_a_failed_or_interrupted_candidate_fails_the_gate(workdir, status, error):
    groups(workdir / "runs", candidate=[0.95, 0.95, 0.95], **{"2": {"status": status, "error": error}})
    result = cli("compare", "ref", "cand", "--fail-if", "test_acc < -0.5")
    assert result.exit_code == 3 and result.stdout  # the table of what could be compared still prints
    shown = "stale" if status == "running" else status
    assert f"--fail-if cannot be evaluated: run cand-bbbbbbbb-s2 is {shown}" in result.stderr
    opted_out = cli("compare", "ref", "cand", "--fail-if", "test_acc < -0.5", "--allow-missing")
    assert opted_out.exit_code == 0 and "warning: --fail-if cannot be evaluated" in opted_out.stderr


def test_a_candidate_with_every_run_failed_fails_the_gate(workdir):
    groups(workdir / "runs", candidate=[0.95], **{"0": {"status": "failed", "error": "boom"}})
    result = cli("compare", "ref", "cand", "--fail-if", "test_acc < -0.5")
    assert result.exit_code == 3 and "run cand-bbbbbbbb-s0 is failed (boom)" in result.stderr
    assert "needs a second group" in result.stderr


def test_a_nan_or_missing_gated_value_fails_the_gate(workdir):
    groups(workdir / "runs", candidate=[0.95, None, 0.95])
    run = Run(workdir / "runs" / "cand-bbbbbbbb-s0")
    (run.path / "summary.json").write_text('{"test_acc": NaN}')  # as masklab wrote it before nulls
    result = cli("compare", "ref", "cand", "--fail-if", "test_acc < -0.5")
    assert result.exit_code == 3
    assert "run cand-bbbbbbbb-s0: test_acc is not a finite number (nan)" in result.stderr
    assert "run cand-bbbbbbbb-s1: test_acc is missing" in result.stderr
    (run.path / "summary.json").write_text('{"test_acc": null, "non_finite": ["test_acc"]}')
    assert (
        "test_acc is null (NaN or infinite when written)"
        in cli("compare", "ref", "cand", "--fail-if", "test_acc < -0.5").stderr
    )


def test_a_statistic_that_does_not_exist_fails_the_gate(workdir):
    groups(workdir / "runs", candidate=[0.95])
    for text in ("test_acc.p < 0.05", "test_acc.ci_high < 0"):
        result = cli("compare", "ref", "cand", "--fail-if", text)
        assert result.exit_code == 3, text
        assert "does not exist with n=1 run per group; train more seeds" in result.stderr
    assert cli("compare", "ref", "cand", "--fail-if", "test_acc < -0.5").exit_code == 0  # a diff exists


def test_a_gate_with_nothing_to_compare_against_fails(workdir):
    groups(workdir / "runs")
    alone = cli("compare", "cand", "--fail-if", "test_acc < 0")
    assert alone.exit_code == 3 and "needs a second group to compare with cand-bbbbbbbb" in alone.stderr
    assert cli("compare", "cand", "--fail-if", "test_acc.mean < 0.5").exit_code == 0  # a mean needs no reference
    assert cli("compare", "cand", "--fail-if", "test_acc.mean < 0.95").exit_code == 3


def test_an_unknown_gated_metric_is_a_usage_error_not_a_pass(workdir):
    groups(workdir / "runs")
    result = cli("compare", "ref", "cand", "--fail-if", "tst_acc < 0")
    assert result.exit_code == 2 and "did you mean 'test_acc'?" in result.stderr
    field = cli("compare", "ref", "cand", "--fail-if", "test_acc.foo < 1")  # an unknown field
    assert field.exit_code == 2 and "--metric test_acc.foo: group ref-aaaaaaaa has no such metric" in field.stderr


def test_robust_acc_means_the_spec_grid_and_an_eval_gets_its_own_name(tmp_path):
    folder = fake_run(tmp_path, summary={"test_acc": 0.9, "robust_acc": 0.6, "acc@gaussian(sigma=0.2)": 0.7})
    (folder / "eval").mkdir()
    body = {"name": "grid-deadbeef", "created": "2026", "metrics": {"test_acc": 0.1, "robust_acc": 0.2, "acc@x": 0.3}}
    (folder / "eval" / "grid-deadbeef.json").write_text(json.dumps(body))
    flat = cmp.run_metrics(Run(folder))
    assert flat["robust_acc"] == 0.6 and flat["test_acc"] == 0.9  # the summary's names are never replaced
    assert flat["robust_acc@grid-deadbeef"] == 0.2 and flat["acc@x"] == 0.3


def test_a_grid_summary_names_its_mean_and_its_seed():
    from masklab.evaluation.robustness import grid_name, grid_summary

    cells = [
        {"name": "gaussian(sigma=0.2)", "op": {"op": "gaussian", "sigma": 0.2}, "acc": 0.5},
        {"name": "patch(rate=0.5)", "op": {"op": "patch", "rate": 0.5}, "acc": 0.7},
    ]
    assert grid_summary(cells) == {"acc@gaussian(sigma=0.2)": 0.5, "acc@patch(rate=0.5)": 0.7, "robust_acc": 0.6}
    named = grid_summary(cells, seed=3, mean_name="robust_acc@mnist-c-seed3")
    assert set(named) == {"acc@gaussian(sigma=0.2)[seed=3]", "acc@patch(rate=0.5)[seed=3]", "robust_acc@mnist-c-seed3"}
    ops = [{"op": "gaussian", "sigma": [0.2]}]
    assert grid_name(ops, None, 0) == grid_name(ops, None, 0) != grid_name(ops, None, 1)
    suite = [{**c, "op": {**c["op"], "suite": "mnist-c"}} for c in cells]
    assert grid_summary(suite, seed=3)["acc@mnist-c[seed=3]"] == 0.6  # a suite's mean carries the seed too
    assert grid_name([], "mnist-c", 0) == "mnist-c"


def one_group(root, name: str, group_hash: str, values: list[float]) -> None:
    for seed, value in enumerate(values):
        fake_run(root, name=name, seed=seed, group_hash=group_hash, summary={"test_acc": value})


# accuracies are multiples of 1/n (here n = 200): a mean or a difference that is exactly
# the threshold in arithmetic is often a float next to it (0.7 is 0.7000000000000001)
@pytest.mark.parametrize(
    ("values", "at"),
    [([0.745, 0.75, 0.755], 0.75), ([0.6, 0.605, 0.895], 0.7), ([0.6, 0.605, 0.82], 0.675)],
    ids=["exact-float", "a-float-above", "a-float-below"],
)
def test_a_mean_equal_to_the_threshold_trips_le_ge_and_eq_only(workdir, values, at):
    one_group(workdir / "runs", "cand", "bbbbbbbb", values)
    mean = json.loads(cli("compare", "cand", "-f", "json").stdout)["groups"][0]["stats"]["test_acc"]["mean"]
    assert mean == pytest.approx(at, abs=1e-15)
    for op, trips in (("<=", True), (">=", True), ("==", True), ("<", False), (">", False), ("!=", False)):
        out = cli("compare", "cand", "--fail-if", f"test_acc.mean {op} {at}")
        assert out.exit_code == (3 if trips else 0), (op, mean, out.stderr)
        if trips:
            assert f"'test_acc.mean {op} {at}' tripped: cand-bbbbbbbb: test_acc mean = +{at:.6g}" in out.stderr


@pytest.mark.parametrize(
    ("ref", "cand"),
    [([0.715, 0.725, 0.735], [0.71, 0.72, 0.73]), ([0.7, 0.71, 0.72], [0.695, 0.705, 0.715])],
    ids=["a-float-above", "a-float-below"],
)
def test_a_difference_equal_to_the_threshold_trips_le_and_ge(workdir, ref, cand):
    one_group(workdir / "runs", "ref", "aaaaaaaa", ref)
    one_group(workdir / "runs", "cand", "bbbbbbbb", cand)
    diff = json.loads(cli("compare", "ref", "cand", "-f", "json").stdout)["comparisons"][0]["diff"]
    assert diff == pytest.approx(-0.005, abs=1e-15)
    for op, trips in (("<=", True), (">=", True), ("<", False), (">", False)):
        assert cli("compare", "ref", "cand", "--fail-if", f"test_acc {op} -0.005").exit_code == (3 if trips else 0), op
    assert cli("compare", "ref", "cand", "--fail-if", "test_acc < -0.004").exit_code == 3  # a real margin still counts
    assert cli("compare", "ref", "cand", "--fail-if", "test_acc > -0.006").exit_code == 3


def test_no_difference_at_all_is_zero_to_a_gate(workdir):
    """The same accuracies on other seeds: the difference is 0 in arithmetic, 2e-16 in floats,
    and compare reports (and gates on) 0."""
    for seed, value in enumerate([0.55, 0.555, 0.57]):
        fake_run(workdir / "runs", name="ref", seed=seed, group_hash="aaaaaaaa", summary={"test_acc": value})
    for seed, value in zip((3, 4, 5), [0.57, 0.55, 0.555]):
        fake_run(workdir / "runs", name="cand", seed=seed, group_hash="bbbbbbbb", summary={"test_acc": value})
    (c,) = json.loads(cli("compare", "ref", "cand", "-f", "json").stdout)["comparisons"]
    assert c["paired"] is False and c["diff"] == 0
    for op, trips in (("<=", True), (">=", True), ("==", True), ("<", False), (">", False), ("!=", False)):
        assert cli("compare", "ref", "cand", "--fail-if", f"test_acc {op} 0").exit_code == (3 if trips else 0), op


@pytest.mark.parametrize("field", ["diff", "ci_low", "ci_high", "p", "p_adj", "mean"])
def test_every_field_gates_on_the_value_compare_reports(workdir, field):
    groups(workdir / "runs", candidate=[0.95, 0.97, 0.96])
    body = json.loads(cli("compare", "ref", "cand", "-f", "json").stdout)
    (c,) = body["comparisons"]
    shown = {
        "diff": c["diff"],
        "ci_low": c["ci"][0],
        "ci_high": c["ci"][1],
        "p": c["p"],
        "p_adj": c["p_adj"],
        "mean": body["groups"][1]["stats"]["test_acc"]["mean"],
    }[field]
    assert shown is not None and c["ci"][0] < c["ci"][1]
    at = cli("compare", "ref", "cand", "--fail-if", f"test_acc.{field} <= {shown!r}")
    assert at.exit_code == 3, at.stderr
    assert f"tripped: cand-bbbbbbbb{'' if field == 'mean' else ' vs ref-aaaaaaaa'}: test_acc {field} = " in at.stderr
    assert cli("compare", "ref", "cand", "--fail-if", f"test_acc.{field} < {shown!r}").exit_code == 0


def test_a_statistic_missing_for_its_values_says_so_not_train_more_seeds(workdir):
    one_group(workdir / "runs", "ref", "aaaaaaaa", [0.90, 0.91])
    one_group(workdir / "runs", "cand", "bbbbbbbb", [0.92, 0.93])  # 0.02 better on both seeds: no spread
    out = cli("compare", "ref", "cand", "--fail-if", "test_acc.p < 0.05")
    assert out.exit_code == 3
    assert out.stderr.splitlines()[-1] == (
        "Error: 'test_acc.p < 0.05' cannot be evaluated: cand-bbbbbbbb vs ref-aaaaaaaa: "
        "p does not exist for these values (e.g. no variation between seeds)"
    )


def test_a_damaged_or_silent_run_is_named_with_what_is_known(workdir):
    groups(workdir / "runs", candidate=[0.95, 0.95, 0.95], **{"2": {"status": "running"}})
    (workdir / "runs" / "cand-bbbbbbbb-s1" / "summary.json").write_text("{")
    damage = Run(workdir / "runs" / "cand-bbbbbbbb-s1").damage()
    out = cli("compare", "ref", "cand", "--fail-if", "test_acc < -0.5")
    assert out.exit_code == 3 and damage
    lines = out.stderr.splitlines()
    assert f"--fail-if cannot be evaluated: run cand-bbbbbbbb-s1 is damaged ({damage})" in lines
    assert "--fail-if cannot be evaluated: run cand-bbbbbbbb-s2 is stale" in lines  # no error recorded: nothing more


def test_allow_missing_gates_on_the_finite_runs_only(workdir):
    groups(workdir / "runs", candidate=[0.80, 0.80, 0.79])
    (workdir / "runs" / "cand-bbbbbbbb-s1" / "summary.json").write_text('{"test_acc": NaN}')
    out = cli("compare", "ref", "cand", "--fail-if", "test_acc < -0.1", "--allow-missing", "-f", "json")
    assert out.exit_code == 3, out.stderr
    (c,) = json.loads(out.stdout)["comparisons"]
    assert c["diff"] == pytest.approx((0.80 + 0.79) / 2 - (0.90 + 0.91 + 0.92) / 3)  # seeds 0 and 2 only
    assert "warning: --fail-if cannot be evaluated: run cand-bbbbbbbb-s1: test_acc is not a finite number" in out.stderr
    assert "'test_acc < -0.1' tripped: cand-bbbbbbbb vs ref-aaaaaaaa: test_acc diff = -0.115" in out.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("test_acc", "expected METRIC[.diff|.ci_low|.ci_high|.p_adj|.p|.mean] OP NUMBER, "),
        ("test_acc < lots", "'lots' is not a number; "),
        ("test_acc < nan", "the threshold must be a finite number, got 'nan'"),
        ("a b < 1", "'a b' is not a metric name; "),
    ],
)
def test_a_gate_that_cannot_be_read_says_why_in_one_line(text, message):
    with pytest.raises(UsageError) as caught:
        gates.parse_gate(text)
    example = "e.g. 'test_acc < -0.005' or 'acc@gaussian(sigma=0.2).mean < 0.9'"
    assert str(caught.value) == f"--fail-if {text!r}: {message}" + (example if message.endswith(" ") else "")


@pytest.mark.parametrize(
    ("text", "metric", "field"),
    [
        ("recall[X-ray] < 0.5", "recall[X-ray]", "diff"),  # a class name is the user's: any letters
        ("acc@rect(size=[4,8]).mean >= 0.5", "acc@rect(size=[4,8])", "mean"),  # brackets inside brackets
        ("acc@g(a=(1<2)).p < 0.05", "acc@g(a=(1<2))", "p"),
    ],
)
def test_brackets_nest_and_hide_what_is_inside_them(text, metric, field):
    g = gates.parse_gate(text)
    assert (g.metric, g.field) == (metric, field)
