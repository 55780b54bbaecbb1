"""The numpy code that replaced scikit-learn on the training path gives scikit-learn's
results exactly: stratified splits (the same RandomState draws) and clean metrics."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, recall_score
from sklearn.model_selection import train_test_split

from masklab.data.stratified import stratified_subset, validation_split
from masklab.evaluation.metrics import Predictions, classification_metrics

from conftest import tiny_spec


def label_cases(count: int, seed: int = 0):
    """Label arrays of many shapes: balanced, skewed, with a rare class, unused class ids."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n, k = int(rng.integers(20, 400)), int(rng.integers(2, 12))
        labels = rng.integers(0, k, n) if rng.random() < 0.5 else np.minimum(rng.geometric(0.3, n) - 1, k - 1)
        if rng.random() < 0.3:
            labels[: int(rng.integers(1, 4))] = k + 1  # a class with 1-3 members, id k unused
        yield labels.astype(np.int64), rng


def test_validation_split_matches_scikit_learn():
    stratified = plain = 0
    for labels, rng in label_cases(300):
        fraction = float(rng.choice([0.05, 0.1, 0.2, 0.33, 0.5]))
        seed = int(rng.integers(0, 2**31 - 1))
        counts = np.bincount(labels)
        n_val, classes = int(np.ceil(fraction * len(labels))), len(np.unique(labels))
        can = counts[counts > 0].min() >= 2 and classes <= n_val <= len(labels) - classes
        stratified, plain = stratified + can, plain + (not can)
        tr, va = train_test_split(
            np.arange(len(labels)), test_size=fraction, stratify=labels if can else None, random_state=seed
        )
        ours = validation_split(labels, fraction, seed)
        assert np.array_equal(ours[0], np.sort(tr)) and np.array_equal(ours[1], np.sort(va))
    assert stratified > 100 and plain > 20  # both paths were exercised


def test_stratified_subset_matches_scikit_learn():
    for labels, rng in label_cases(200, seed=1):
        counts = np.bincount(labels)
        size = int(rng.integers(len(counts), len(labels)))
        if counts[counts > 0].min() < 2 or len(labels) - size < len(np.unique(labels)) or size < len(np.unique(labels)):
            continue
        seed = int(rng.integers(0, 1000))
        keep, _ = train_test_split(np.arange(len(labels)), train_size=size, stratify=labels, random_state=seed)
        assert np.array_equal(stratified_subset(labels, size, seed), np.sort(keep))


def test_clean_metrics_match_scikit_learn_exactly():
    rng = np.random.default_rng(2)
    for _ in range(300):
        k, n = int(rng.integers(2, 12)), int(rng.integers(1, 300))
        labels = rng.integers(0, k, n)
        predicted = np.where(rng.random(n) < rng.random(), labels, rng.integers(0, k, n))
        ours = classification_metrics(Predictions(labels, predicted, 0.5), [str(c) for c in range(k)])
        every = list(range(k))
        assert ours["acc"] == accuracy_score(labels, predicted)
        assert ours["macro_f1"] == f1_score(labels, predicted, labels=every, average="macro", zero_division=0)
        recall = recall_score(labels, predicted, labels=every, average=None, zero_division=0)
        assert list(ours["per_class_recall"].values()) == list(recall)
        assert ours["loss"] == 0.5


def test_training_imports_no_sklearn_matplotlib_or_dynamo(tmp_path, write_spec):
    """What a quickstart-sized `masklab train` loads: the fixed cost is imports first."""
    spec = write_spec(tiny_spec(eval={"ops": [{"op": "gaussian", "sigma": [0.1, 0.2]}]}))
    probe = textwrap.dedent(
        f"""
        import sys
        from masklab.cli import app
        try:
            app(["train", {str(spec)!r}, "-q", "--format", "json"])
        except SystemExit as exc:
            assert exc.code == 0, exc.code
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "matplotlib", "scipy") or m == "torch._dynamo")
        print(",".join(heavy) or "none", file=sys.stderr)
        """
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip().splitlines()[-1] == "none"
