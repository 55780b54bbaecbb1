"""compare pairs runs by seed and test examples by test set, whatever order the runs
were made in. Runs are written by hand (no training): exact values, exact p-values."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from scipy import stats as sps

from conftest import cli, fake_run

REF = {5: 0.80, 6: 0.85, 7: 0.90}
CAND = {5: 0.82, 6: 0.86, 7: 0.93}  # better by 0.02, 0.01, 0.03 on the same seeds


def write_group(root, name: str, group_hash: str, values: dict[int, float], order: list[int], minute: int) -> None:
    """Runs of one group, created in `order` (as --jobs or Ray finish them), a second apart."""
    for i, seed in enumerate(order):
        fake_run(
            root,
            name=name,
            seed=seed,
            group_hash=group_hash,
            summary={"test_acc": values[seed]},
            created=f"2026-01-01T00:{minute:02d}:{i:02d}",
        )


def comparison(*names: str, extra: tuple = ()) -> dict:
    out = cli("compare", *names, "-f", "json", *extra)
    assert out.exit_code == 0, out.stderr
    return json.loads(out.stdout)


def test_seeds_created_out_of_order_are_paired_by_seed(workdir):
    write_group(workdir / "runs", "ref", "aaaaaaaa", REF, [5, 6, 7], minute=0)
    write_group(workdir / "runs", "cand", "bbbbbbbb", CAND, [7, 5, 6], minute=1)
    body = comparison("ref", "cand")
    assert [g["runs"][0] for g in body["groups"]] == ["ref-aaaaaaaa-s5", "cand-bbbbbbbb-s7"]  # made out of order
    assert body["groups"][1]["stats"]["test_acc"]["values"] == {"5": 0.82, "6": 0.86, "7": 0.93}
    (c,) = body["comparisons"]
    paired = sps.ttest_rel([CAND[s] for s in (5, 6, 7)], [REF[s] for s in (5, 6, 7)]).pvalue
    by_position = sps.ttest_rel([CAND[s] for s in (7, 5, 6)], [REF[s] for s in (5, 6, 7)]).pvalue
    assert (round(paired, 3), round(by_position, 3)) == (0.074, 0.751)  # what pairing by position would say
    assert c["paired"] is True and c["interval"] == "paired-t"
    assert c["p"] == pytest.approx(paired, rel=1e-9) and c["diff"] == pytest.approx(0.02)


def test_groups_without_common_seeds_are_not_paired(workdir):
    write_group(workdir / "runs", "ref", "aaaaaaaa", REF, [5, 6, 7], minute=0)
    other = {1: 0.82, 2: 0.86, 3: 0.93}
    write_group(workdir / "runs", "cand", "bbbbbbbb", other, [1, 2, 3], minute=1)
    (c,) = comparison("ref", "cand")["comparisons"]
    welch = sps.ttest_ind(list(other.values()), list(REF.values()), equal_var=False)
    hsu = 2 * sps.t.sf(abs(welch.statistic), df=2)  # Welch's t with Hsu's df, min(n) - 1, below 5 seeds
    assert c["paired"] is False and c["p"] == pytest.approx(hsu, rel=1e-9)


def write_predictions(folder, labels: np.ndarray, right: int) -> float:
    """predictions.npz as training writes it: the first `right` examples predicted right.
    Returns the test accuracy they give (written to summary.json)."""
    predicted = labels.copy()
    predicted[right:] = (labels[right:] + 1) % 10
    buf = io.BytesIO()
    empty = np.array([], dtype=str)
    np.savez_compressed(
        buf,
        labels=labels.astype(np.uint8),
        predicted=predicted.astype(np.uint8),
        cell_names=empty,
        cell_suites=empty,
        cells=np.zeros((0, 0), np.uint8),
    )
    (folder / "predictions.npz").write_bytes(buf.getvalue())
    acc = right / len(labels)
    (folder / "summary.json").write_text(json.dumps({"test_acc": acc}))
    return acc


def groups_with_predictions(root, cand_labels: np.ndarray) -> None:
    """ref and cand, seeds 0-2, 40 test examples each; ref's labels 0..9 repeated."""
    ref_labels = np.arange(40) % 10
    for name, group_hash, labels, rights in (
        ("ref", "aaaaaaaa", ref_labels, (28, 30, 31)),
        ("cand", "bbbbbbbb", cand_labels, (31, 32, 35)),
    ):
        for seed, right in enumerate(rights):
            write_predictions(fake_run(root, name=name, seed=seed, group_hash=group_hash), labels, right)


@pytest.mark.parametrize(
    "cand_labels",
    [np.arange(40)[::-1] % 10, (np.arange(40) + 1) % 10, np.arange(41) % 10],
    ids=["same-size-reordered", "same-size-shifted", "one-more-example"],
)
def test_groups_tested_on_different_test_sets_compare_on_seeds_only(workdir, cand_labels):
    groups_with_predictions(workdir / "runs", cand_labels)
    out = cli("compare", "ref", "cand", "-f", "json")
    assert out.exit_code == 0, out.stderr
    (c,) = json.loads(out.stdout)["comparisons"]
    note = "cand-bbbbbbbb and ref-aaaaaaaa were tested on different test sets: test_acc compared on seeds only"
    assert f"note: {note}" in out.stderr
    assert c["interval"] == "paired-t"  # no example-by-example pairing
    seeds_only = comparison("ref", "cand", extra=("--seeds-only",))["comparisons"][0]
    assert (c["p"], c["ci"]) == (seeds_only["p"], seeds_only["ci"])


def test_groups_tested_on_one_test_set_are_paired_example_by_example(workdir):
    groups_with_predictions(workdir / "runs", np.arange(40) % 10)
    out = cli("compare", "ref", "cand", "-f", "json")
    assert out.exit_code == 0 and "different test sets" not in out.stderr
    (c,) = json.loads(out.stdout)["comparisons"]
    assert c["interval"] == "paired-t x examples"
    assert c["p"] != comparison("ref", "cand", extra=("--seeds-only",))["comparisons"][0]["p"]
