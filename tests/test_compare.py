"""compare: seed groups, statistics with exact values, gates, curves, plots, studies."""

from __future__ import annotations

import csv
import io
import json
import shutil

import numpy as np
import pytest
import yaml
from scipy import stats as sps

from masklab.analysis import gates, stats
from masklab.errors import UsageError

from conftest import cli, tiny_spec, trained_once


def test_describe_exact():
    d = stats.describe([0.90, 0.92, 0.94, 0.96])
    assert (d.n, d.min, d.max) == (4, 0.90, 0.96)
    assert d.mean == pytest.approx(0.93) and d.std == pytest.approx(np.std([0.90, 0.92, 0.94, 0.96], ddof=1))
    assert stats.describe([0.5]).std is None


def test_paired_difference_is_scipys_paired_t():
    ref = {0: 0.900, 1: 0.910, 2: 0.905, 3: 0.915, 4: 0.908}
    other = {0: 0.906, 1: 0.914, 2: 0.913, 3: 0.919, 4: 0.915}
    d = stats.compare_values(ref, other)
    a, b = np.array(list(other.values())), np.array(list(ref.values()))
    scipy_t = sps.ttest_rel(a, b)
    assert d.paired and d.interval == "paired-t" and d.n == (5, 5)
    assert d.diff == pytest.approx(a.mean() - b.mean())
    assert d.p == pytest.approx(scipy_t.pvalue, rel=1e-12) and d.p_adj == d.p  # a family of one
    assert d.ci == pytest.approx(tuple(scipy_t.confidence_interval(0.95)), rel=1e-12)
    assert d.verdict == "better" and d.why.startswith(
        "+0.0058: the 95% CI [+0.003579, +0.008021] lies above 0; p=0.00192"
    )
    assert d.p_outperform == 1.0 and d.p_outperform_ci == pytest.approx((0.025 ** (1 / 5), 1.0))  # 5 of 5 seeds


def test_unpaired_difference_is_welchs_interval_with_seeds_for_power():
    d = stats.compare_values({0: 0.9, 1: 0.91, 2: 0.92}, {5: 0.905, 6: 0.915, 7: 0.925})
    welch = sps.ttest_ind([0.905, 0.915, 0.925], [0.9, 0.91, 0.92], equal_var=False)
    assert not d.paired and d.interval == "welch-t" and d.df == 2.0  # Hsu's df below 5 seeds: min(n) - 1
    assert d.p == pytest.approx(2 * sps.t.sf(welch.statistic, 2))
    assert d.ci == pytest.approx((0.005 - sps.t.ppf(0.975, 2) * d.se, 0.005 + sps.t.ppf(0.975, 2) * d.se))
    assert d.se == pytest.approx(0.005 / welch.statistic)
    assert d.verdict == "inconclusive" and d.seeds_for_power == 64
    assert d.why == (
        "+0.005: the 95% CI [-0.03013, +0.04013] includes 0 (p=0.603); "
        "about 64 seeds per group (now 3) would give 80% power for +0.005 at this spread"
    )
    # the noncentral-t power at 64 seeds per group clears 0.8, at 63 it does not
    for n, above in ((64, True), (63, False)):
        se, df = np.sqrt(2e-4 / n), 2 * n - 2
        power = sps.nct.sf(sps.t.ppf(0.975, df), df, 0.005 / se)
        assert (power >= 0.8) == above


def test_two_seeds_can_decide_one_cannot_and_loss_is_lower_is_better():
    two = stats.compare_values({0: 0.90, 1: 0.91}, {0: 0.95, 1: 0.9605})
    assert two.verdict == "better" and two.p == pytest.approx(sps.ttest_rel([0.95, 0.9605], [0.90, 0.91]).pvalue)
    one = stats.compare_values({0: 0.9}, {0: 0.95})
    assert (one.verdict, one.p, one.ci) == ("too few seeds", None, None) and one.why.startswith("n=1: one run")
    loss = stats.compare_values({0: 0.5, 1: 0.52, 2: 0.51}, {0: 0.40, 1: 0.41, 2: 0.42}, higher_is_better=False)
    assert loss.verdict == "better" and loss.diff < 0
    assert loss.p_outperform == 1.0  # lower loss wins every seed pair


def test_min_effect_gives_equivalent_and_raises_the_bar_for_better():
    ref = {0: 0.9, 1: 0.91, 2: 0.92, 3: 0.915}
    close = {0: 0.9001, 1: 0.9102, 2: 0.9199, 3: 0.9151}
    d = stats.compare_values(ref, close, min_effect=0.002)
    assert d.verdict == "equivalent" and d.ci[0] > -0.002 and d.ci[1] < 0.002
    # TOST x 2: p_equiv < 0.05 exactly when the 95% interval is inside the band
    diffs = np.array(list(close.values())) - np.array(list(ref.values()))
    tost = max(
        sps.ttest_1samp(diffs, -0.002, alternative="greater").pvalue,
        sps.ttest_1samp(diffs, 0.002, alternative="less").pvalue,
    )
    assert d.p_equiv == pytest.approx(2 * tost)
    gain = {0: 0.903, 1: 0.9132, 2: 0.9228, 3: 0.9181}  # +0.003 +- 0.0002: clears 0, not +-0.003
    assert stats.compare_values(ref, gain).verdict == "better"
    small = stats.compare_values(ref, gain, min_effect=0.003)
    assert small.verdict == "inconclusive" and "neither clears +-0.003 nor lies inside it" in small.why
    assert stats.compare_values(ref, gain, min_effect=0.002).verdict == "better"


def test_holm_over_the_family_decides():
    assert stats.holm([0.01, 0.04, 0.03, None, 0.5]) == pytest.approx([0.04, 0.09, 0.09, None, 0.5])
    assert stats.holm([0.001, 0.001]) == pytest.approx([0.002, 0.002])
    rng = np.random.default_rng(0)
    pairs = []
    for shift in (0.004, 0.0, 0.0015):
        base = rng.normal(0.9, 0.002, 4)
        pairs.append(stats.Pair(dict(enumerate(base)), dict(enumerate(base + shift + rng.normal(0, 0.001, 4)))))
    family = stats.compare_family(pairs)
    single = [stats.compare_family([p])[0] for p in pairs]
    assert [d.p for d in family] == [d.p for d in single]
    assert [d.p_adj for d in family] == pytest.approx(stats.holm([d.p for d in single]))
    assert [d.verdict for d in single] == ["better", "inconclusive", "better"]
    assert [d.verdict for d in family] == ["better", "inconclusive", "inconclusive"]
    assert "but not after Holm over 3 tests" in family[2].why


def test_bca_bootstrap_from_forty_seeds():
    rng = np.random.default_rng(1)
    ref = dict(enumerate(rng.normal(0.9, 0.002, 40)))
    other = {s: v + 0.001 + rng.normal(0, 0.002) for s, v in ref.items()}
    d = stats.compare_values(ref, other)
    diffs = np.array([other[s] - ref[s] for s in sorted(ref)])
    boot = sps.bootstrap((diffs,), np.mean, method="BCa", n_resamples=9999, rng=np.random.default_rng(0))
    assert d.interval == "bca" and d.ci == (boot.confidence_interval.low, boot.confidence_interval.high)
    shared = stats.compare_values(dict(list(ref.items())[:39]), other)  # paired on the 39 seeds both have
    assert shared.interval == "paired-t" and shared.paired_on == 39 and shared.n == (39, 40)


def test_mcnemar_for_two_single_runs():
    rng = np.random.default_rng(2)
    a = (rng.random(1000) < 0.9).astype(float)
    b = a.copy()
    b[np.nonzero(a == 0)[0][:30]] = 1.0  # b right where a was wrong, 30 times
    b[np.nonzero(a == 1)[0][:12]] = 0.0  # and wrong where a was right, 12 times
    (d,) = stats.compare_family([stats.Pair({0: a.mean()}, {1: b.mean()}, ref_examples={0: a}, other_examples={1: b})])
    assert d.verdict == "too few seeds" and d.interval == "mcnemar-exact"
    assert d.p == pytest.approx(sps.binomtest(30, 42, 0.5).pvalue)
    assert "the models disagree on 42 examples, 30 right only in this run and 12 only in the reference" in d.why


def test_gate_parsing():
    g = gates.parse_gate("test_acc < -0.005")
    assert (g.metric, g.field, g.op, g.threshold) == ("test_acc", "diff", "<", -0.005)
    g = gates.parse_gate("acc.ci_high<=0")
    assert (g.metric, g.field, g.op, g.threshold) == ("test_acc", "ci_high", "<=", 0.0)
    for bad in ("test_acc", "test_acc < lots", "< 3"):
        with pytest.raises(UsageError):
            gates.parse_gate(bad)


@pytest.fixture(scope="module")
def trained_groups(tmp_path_factory):
    """Two groups of 4 seeds on mnist-mini: static vs dynamic patch masking, trained once."""
    with trained_once(tmp_path_factory, "two-groups") as root:
        for mode in ("static", "dynamic"):
            body = tiny_spec(
                name=f"g-{mode}", seeds=[0, 1, 2, 3], train_ops=[{"op": "patch", "rate": 0.25, "size": 7, "mode": mode}]
            )
            (root / f"{mode}.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
            assert cli("train", root / f"{mode}.yaml", "-q").exit_code == 0
    return root


@pytest.fixture
def two_groups(trained_groups, runs_from):
    return runs_from(trained_groups)


def test_compare_groups_json_matches_the_runs(two_groups):
    result = cli("compare", "g-static", "g-dynamic", "--format", "json")
    assert result.exit_code == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["schema_version"] == 1 and body["metrics"] == ["test_acc"]
    assert body["keys"] == [
        "name",
        "train_ops[0].mode",
        "train_ops[0].share_views",
    ]  # static runs say they did not share
    groups = {g["group"].rsplit("-", 1)[0]: g for g in body["groups"]}
    for name, group in groups.items():
        runs = sorted((two_groups / "runs").glob(f"{name}-*"))
        accs = [json.loads((r / "summary.json").read_text())["test_acc"] for r in runs]
        s = group["stats"]["test_acc"]
        assert s["n"] == 4 and group["seeds"] == [0, 1, 2, 3]
        assert s["mean"] == pytest.approx(np.mean(accs)) and s["std"] == pytest.approx(np.std(accs, ddof=1))
        assert (s["min"], s["max"]) == (min(accs), max(accs))
    (c,) = body["comparisons"]
    assert c["paired"] is True and c["interval"] == "paired-t x examples" and len(c["ci"]) == 2 and 0 <= c["p"] <= 1
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


def test_compare_statistics_from_the_command_line(two_groups, workdir, monkeypatch):
    """Verdicts and reasons identical in every format; Holm over the call; --min-effect,
    --p-outperform, a p_adj gate; stored predictions used, and runs without them compare."""
    args = ("compare", "g-static", "g-dynamic", "-m", "test_acc", "-m", "val_acc", "-m", "test_loss")
    body = json.loads(cli(*args, "-f", "json").stdout)
    words = [(c["metric"], c["verdict"], c["why"]) for c in body["comparisons"]]
    assert all(w in stats.VERDICTS for _, w, _ in words)
    csv_rows = [r for r in csv.DictReader(io.StringIO(cli(*args, "-f", "csv").stdout)) if r["verdict"] != "reference"]
    assert [(r["metric"], r["verdict"], r["why"]) for r in csv_rows] == words
    jsonl = [json.loads(x) for x in cli(*args, "-f", "jsonl").stdout.splitlines()]
    assert [(r["metric"], r["verdict"], r["why"]) for r in jsonl if r["verdict"] != "reference"] == words
    md, table = cli(*args, "-f", "md").stdout, cli(*args).stdout
    for _, verdict, why in words:
        assert f"| {verdict} | {why} |" in md and f"\t{verdict}\t{why}\n" in table  # a pipe: tab-separated fields
    # Holm over the three metrics of the call: the adjusted p is what the JSON and the table show
    ps = [c["p"] for c in body["comparisons"]]
    assert [c["p_adj"] for c in body["comparisons"]] == pytest.approx(stats.holm(ps))
    assert body["verdict_rules"] == stats.VERDICT_RULES

    # min effect, P(outperform), a gate on the adjusted p
    out = cli("compare", "g-static", "g-dynamic", "--min-effect", "0.5", "--p-outperform", "-f", "csv")
    assert out.exit_code == 0, out.stderr
    (row,) = [r for r in csv.DictReader(io.StringIO(out.stdout)) if r["verdict"] != "reference"]
    assert row["verdict"] == "equivalent"  # any difference of these tiny models lies within +-50 points
    assert 0 <= float(row["p_outperform_low"]) <= float(row["p_outperform"]) <= float(row["p_outperform_high"]) <= 1
    assert "p_outperform" not in cli("compare", "g-static", "g-dynamic", "-f", "csv").stdout.splitlines()[0]
    assert cli("compare", "g-static", "g-dynamic", "--fail-if", "test_acc.p_adj <= 1").exit_code == 3
    assert cli("compare", "g-static", "g-dynamic", "--min-effect", "-1").exit_code == 2

    # per-example predictions are used; runs without them still compare, with a note
    first = json.loads(cli("compare", "g-static", "g-dynamic", "-f", "json").stdout)["comparisons"][0]
    assert first["interval"] == "paired-t x examples"
    shutil.copytree(two_groups / "runs", workdir / "runs")  # the module's runs stay as they are
    monkeypatch.setenv("MASKLAB_RUNS", str(workdir / "runs"))
    for path in (workdir / "runs").glob("g-static-*-s0/predictions.npz"):
        path.unlink()  # a run trained before masklab stored predictions
    old = cli("compare", "g-static", "g-dynamic", "-f", "json")
    assert old.exit_code == 0
    assert json.loads(old.stdout)["comparisons"][0]["interval"] == "paired-t"
    assert "note: test_acc: compared on seeds only, the test set taken as fixed: some runs have no stored" in old.stderr
    seeds_only = json.loads(cli("compare", "g-static", "g-dynamic", "--seeds-only", "-f", "json").stdout)
    assert seeds_only["comparisons"][0]["p"] == json.loads(old.stdout)["comparisons"][0]["p"]


def test_compare_reads_stored_predictions_without_importing_torch():
    import subprocess
    import sys

    code = "import sys, masklab.analysis.compare, masklab.evaluation.predictions; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
