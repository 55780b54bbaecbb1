"""compare: seed groups, statistics with exact values, gates, curves, plots, studies."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from scipy import stats as sps

from masklab.analysis import compare as cmp, stats
from masklab.errors import UsageError

from conftest import cli, tiny_spec


def test_describe_exact():
    d = stats.describe([0.90, 0.92, 0.94, 0.96])
    assert (d.n, d.min, d.max) == (4, 0.90, 0.96)
    assert d.mean == pytest.approx(0.93) and d.std == pytest.approx(np.std([0.90, 0.92, 0.94, 0.96], ddof=1))
    assert stats.describe([0.5]).std is None


def test_paired_difference_uses_the_paired_tests():
    ref = {0: 0.900, 1: 0.910, 2: 0.905, 3: 0.915, 4: 0.908}
    other = {0: 0.906, 1: 0.914, 2: 0.913, 3: 0.919, 4: 0.915}
    d = stats.compare_values(ref, other)
    a, b = np.array(list(other.values())), np.array(list(ref.values()))
    assert d.paired and d.test == "paired-t" and d.n == (5, 5)
    assert d.diff == pytest.approx(a.mean() - b.mean())
    assert d.p == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert d.p_wilcoxon == pytest.approx(sps.wilcoxon(a, b).pvalue)
    assert d.ci[0] > 0 and d.ci[0] < d.diff < d.ci[1]
    assert d.verdict.startswith("higher (better): the 95% CI excludes 0 and p=")
    assert stats.compare_values(ref, other).ci == d.ci  # the bootstrap is seeded: stable output


def test_unpaired_small_and_single_runs():
    d = stats.compare_values({0: 0.9, 1: 0.91, 2: 0.92}, {5: 0.905, 6: 0.915, 7: 0.925})
    assert not d.paired and d.test == "welch-t"
    assert d.p == pytest.approx(sps.ttest_ind([0.905, 0.915, 0.925], [0.9, 0.91, 0.92], equal_var=False).pvalue)
    assert d.verdict.startswith("no clear difference: the 95% CI includes 0 (p=")
    two = stats.compare_values({0: 0.9, 1: 0.91}, {0: 0.95, 1: 0.96})
    assert two.verdict.startswith("inconclusive: n=2 is too few seeds")
    one = stats.compare_values({0: 0.9}, {0: 0.95})
    assert one.p is None and one.ci is None and "n=1" in one.verdict
    loss = stats.compare_values({0: 0.5, 1: 0.52, 2: 0.51}, {0: 0.40, 1: 0.41, 2: 0.42}, higher_is_better=False)
    assert loss.verdict.startswith("lower (better)") and "only 3 seeds" in loss.verdict
    mixed = stats.verdict(0.001, (0.0002, 0.002), 0.16, (3, 3), True)
    assert mixed.startswith("suggestive, higher: the bootstrap CI and the test disagree (p=0.16)")


def test_gate_parsing():
    g = cmp.parse_gate("test_acc < -0.005")
    assert (g.metric, g.field, g.op, g.threshold) == ("test_acc", "diff", "<", -0.005)
    g = cmp.parse_gate("acc.ci_high<=0")
    assert (g.metric, g.field, g.op, g.threshold) == ("test_acc", "ci_high", "<=", 0.0)
    for bad in ("test_acc", "test_acc < lots", "< 3"):
        with pytest.raises(UsageError):
            cmp.parse_gate(bad)


@pytest.fixture
def two_groups(workdir, write_spec):
    """Two groups of 4 seeds on mnist-mini: static vs dynamic patch masking."""
    for mode in ("static", "dynamic"):
        body = tiny_spec(
            name=f"g-{mode}", seeds=[0, 1, 2, 3], train_ops=[{"op": "patch", "rate": 0.25, "size": 7, "mode": mode}]
        )
        assert cli("train", write_spec(body, f"{mode}.yaml"), "-q").exit_code == 0
    return workdir


def test_compare_groups_json_matches_the_runs(two_groups):
    result = cli("compare", "g-static", "g-dynamic", "--format", "json")
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["schema_version"] == 1 and body["metrics"] == ["test_acc"]
    assert body["keys"] == ["name", "train_ops[0].mode"]
    groups = {g["group"].rsplit("-", 1)[0]: g for g in body["groups"]}
    for name, group in groups.items():
        runs = sorted((two_groups / "runs").glob(f"{name}-*"))
        accs = [json.loads((r / "summary.json").read_text())["test_acc"] for r in runs]
        s = group["stats"]["test_acc"]
        assert s["n"] == 4 and group["seeds"] == [0, 1, 2, 3]
        assert s["mean"] == pytest.approx(np.mean(accs)) and s["std"] == pytest.approx(np.std(accs, ddof=1))
        assert (s["min"], s["max"]) == (min(accs), max(accs))
    (c,) = body["comparisons"]
    assert c["paired"] is True and c["test"] == "paired-t" and len(c["ci"]) == 2 and 0 <= c["p"] <= 1
    assert c["diff"] == pytest.approx(
        groups["g-dynamic"]["stats"]["test_acc"]["mean"] - groups["g-static"]["stats"]["test_acc"]["mean"]
    )


def test_fail_if_gate_exit_codes(two_groups):
    body = json.loads(cli("compare", "g-static", "g-dynamic", "-f", "json").stdout)
    diff = body["comparisons"][0]["diff"]
    trips = cli("compare", "g-static", "g-dynamic", "--fail-if", f"test_acc < {diff + 0.001}")
    assert trips.exit_code == 3
    assert "tripped" in trips.stderr and "g-dynamic" in trips.stderr and trips.stdout  # the table still prints
    holds = cli("compare", "g-static", "g-dynamic", "--fail-if", f"test_acc < {diff - 0.001}", "-f", "csv")
    assert holds.exit_code == 0, holds.stderr
    assert [r["group"].rsplit("-", 1)[0] for r in csv.DictReader(io.StringIO(holds.stdout))] == [
        "g-static",
        "g-dynamic",
    ]


def test_curves_plots_and_formats(two_groups):
    result = cli("compare", "g-static", "g-dynamic", "--curve", "val_acc", "--plot", two_groups / "curves.png")
    assert result.exit_code == 0, result.stderr
    assert "val_acc per epoch" in result.stdout and (two_groups / "curves.png").read_bytes()[:4] == b"\x89PNG"
    body = json.loads(cli("compare", "g-static", "g-dynamic", "--curve", "val_acc", "-f", "json").stdout)
    curve = body["curves"]["groups"]
    assert all(len(c["mean"]) == 2 and c["epoch"] == [1, 2] for c in curve.values())
    md = cli("compare", "g-static", "g-dynamic", "-f", "md").stdout
    assert md.startswith("| group |") and md.count("\n") == 4
    lines = cli("compare", "g-static", "g-dynamic", "-f", "jsonl").stdout.splitlines()
    assert [json.loads(x)["n"] for x in lines] == [4, 4]
    unknown = cli("compare", "g-static", "g-dynamic", "--metric", "test_acc_")
    assert unknown.exit_code == 2 and "did you mean 'test_acc'?" in unknown.stderr


def test_compare_warns_when_runs_are_not_comparable(workdir, write_spec):
    assert cli("train", write_spec(tiny_spec(name="a"), "a.yaml"), "-q").exit_code == 0
    assert (
        cli(
            "train",
            write_spec(
                tiny_spec(name="b", data={"dataset": "digits", "train_limit": None, "test_limit": None}), "b.yaml"
            ),
            "-q",
        ).exit_code
        == 0
    )
    result = cli("compare", "a", "b")
    assert (
        result.exit_code == 0
        and "different datasets" in result.stderr
        and "different data fingerprints" in result.stderr
    )


def test_a_study_trains_its_variants_and_compares_by_name(workdir, write_spec):
    body = tiny_spec(name="study", seeds=[0, 1], train_ops=[{"op": "pixel", "rate": 0.3}])
    body["variants"] = {"static": {"train_ops[0].mode": "static"}, "dynamic": {"train_ops[0].mode": "dynamic"}}
    out = cli("train", write_spec(body), "-q", "-f", "json")
    assert out.exit_code == 0, out.stderr
    assert [r["run"].rsplit("-", 2)[0] for r in json.loads(out.stdout)["rows"]] == ["study-static"] * 2 + [
        "study-dynamic"
    ] * 2
    cmp_body = json.loads(cli("compare", "study", "-f", "json").stdout)
    assert [g["group"].rsplit("-", 1)[0] for g in cmp_body["groups"]] == ["study-static", "study-dynamic"]
    only = cli("train", write_spec(body), "-q", "--variant", "dynamc")
    assert only.exit_code == 2 and "did you mean 'dynamic'?" in only.stderr
    body["variants"]["bad"] = {"train_ops[0].rate": 2}
    bad = cli("train", write_spec(body, "bad.yaml"), "-q", "--set", "name=study2")
    assert bad.exit_code == 2 and "variants.bad: train_ops[0].rate: must be in [0, 1], got 2" in bad.stderr
    assert not list((workdir / "runs").glob("study2-*"))  # no variant trained when one is invalid
