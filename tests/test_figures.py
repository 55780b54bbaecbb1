"""The figures a finished run folder holds, and what they are drawn from."""

from __future__ import annotations

import csv
import io
import json

import matplotlib.image
import numpy as np
import pytest

from conftest import cli, run_dirs, tiny_spec

OPS = [{"op": "patch", "rate": 0.5, "size": 7, "mode": "static", "copies": 2}]


def test_a_finished_run_holds_its_figures_and_their_numbers(figures, workdir, write_spec):
    result = cli("train", write_spec(tiny_spec(train_ops=OPS, train={"epochs": 3})), "-q")
    assert result.exit_code == 0, result.stderr
    (folder,) = run_dirs(workdir)
    for name in ("curves.png", "confusion.png", "recall.png", "ops.png"):
        pixels = matplotlib.image.imread(folder / name)
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300, name
        assert pixels[..., :3].std() > 0.05, f"{name} is blank"
    summary = json.loads((folder / "summary.json").read_text())
    confusion = np.array(summary["test_confusion"]["matrix"])
    assert summary["test_confusion"]["classes"] == [str(i) for i in range(10)]
    assert confusion.sum() == 200 and np.trace(confusion) / 200 == summary["test_acc"]
    recall = np.diag(confusion) / confusion.sum(1)
    assert np.allclose(recall, list(summary["per_class_recall"].values()))
    shown = cli("show", folder.name).stdout
    assert "figures" in shown and "ops.png" in shown


def test_the_ops_preview_shows_the_runs_own_draws(workdir, write_spec):
    """Static with 2 copies: epoch 3 repeats epoch 1's masks, epoch 2 differs."""
    import torch

    from masklab.data.materialize import draw_views
    from masklab.data.registry import load
    from masklab.data.splits import build_data
    from masklab.ops.pipeline import OpPipeline
    from masklab.spec import load_spec

    spec = load_spec(write_spec(tiny_spec(train_ops=OPS)))
    data = build_data(load("mnist-mini"), 0.2, 0, torch.device("cpu"))
    pipeline = OpPipeline(spec.train_ops, 0, data.shape)
    pos, originals, changed, masks = draw_views(data.train, pipeline, [0, 1, 2])
    labels = data.train.y.numpy()[pos]
    assert list(labels) == list(range(8))  # one image per class, in class order
    assert originals.shape == (8, 1, 28, 28) and changed.shape == (3, 8, 1, 28, 28) and masks.shape == (3, 8, 28, 28)
    assert np.array_equal(masks[0], masks[2]) and not np.array_equal(masks[0], masks[1])
    assert (masks.mean((2, 3)) == 0.5).all()  # 8 of 16 patches of 7x7, exactly, in every image and view
    assert (changed[:, :, 0][masks] == 0).all()  # zero fill where masked


def test_a_figure_that_fails_never_costs_the_run(figures, workdir, write_spec, monkeypatch):
    from masklab.study import run_figures

    def broken(*args, **kwargs):
        raise RuntimeError("no display")

    monkeypatch.setattr(run_figures, "write_run_figures", broken)
    result = cli("train", write_spec(tiny_spec()), "-q")
    assert result.exit_code == 0
    (folder,) = run_dirs(workdir)
    assert json.loads((folder / "run.json").read_text())["status"] == "done"
    assert "figures not drawn: RuntimeError: no display" in result.stderr


def test_a_figure_is_never_written_through_a_planted_link(tmp_path):
    """Figures go into run folders: a link planted at a figure's name is replaced, and
    the file it points to (outside the runs dir) is left as it was."""
    from masklab.analysis.figures import curves_png

    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "curves.png").symlink_to(outside)
    rows = [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.5, "lr": 0.01} for e in (1, 2)]
    curves_png(rows, folder / "curves.png", "run")
    assert outside.read_text() == "precious"
    assert not (folder / "curves.png").is_symlink() and matplotlib.image.imread(folder / "curves.png").size
    assert sorted(p.name for p in folder.iterdir()) == ["curves.png"]  # no temporary file left


# --- issue 25: figures that do not mislead --------------------------------------------

TEXT = {
    "seeds": [0],
    "data": {"dataset": "kjv-mini", "train_limit": 300, "test_limit": 100, "val_fraction": 0.2},
    "model": {"arch": "bert", "dim": 32, "depth": 1, "heads": 2, "vocab_size": 400, "max_len": 32},
    "train": {"epochs": 1, "batch_size": 32, "lr": 0.003},
    "train_ops": [{"op": "tokens", "rate": 0.15, "action": "mlm"}],
}


def test_which_runs_get_which_figures_as_readme_says(figures, write_spec):
    """An image classifier with train ops: four; a text classifier: no ops.png (word
    pieces have no picture); a masked language model: curves.png alone."""
    assert cli("train", write_spec(tiny_spec(name="img", train_ops=OPS), "img.yaml"), "-q").exit_code == 0
    assert cli("train", write_spec({**TEXT, "name": "txt"}, "txt.yaml"), "-q").exit_code == 0
    mlm = {**TEXT, "name": "mlm", "train": {**TEXT["train"], "objective": "masked-modeling"}}
    assert cli("train", write_spec(mlm, "mlm.yaml"), "-q").exit_code == 0
    drawn = {p.name.split("-")[0]: sorted(f.name for f in p.glob("*.png")) for p in run_dirs(figures)}
    assert drawn == {
        "img": ["confusion.png", "curves.png", "ops.png", "recall.png"],
        "txt": ["confusion.png", "curves.png", "recall.png"],
        "mlm": ["curves.png"],
    }


def test_curves_say_how_train_and_validation_were_measured():
    """Training loss under label smoothing cannot reach 0: the note gives its floor, which
    is torch's cross-entropy when the prediction is the smoothed target itself."""
    import torch
    import torch.nn.functional as F

    from masklab.analysis.figures import curve_panels
    from masklab.spec import resolve
    from masklab.study.run_figures import curves_note, smoothed_loss_floor

    target = torch.full((1, 10), 0.1 / 10)
    target[0, 3] += 0.9
    exact = F.cross_entropy(target.log(), torch.tensor([3]), label_smoothing=0.1).item()
    assert smoothed_loss_floor(0.1, 10) == pytest.approx(exact, rel=1e-6) and f"{exact:.2f}" == "0.50"
    spec = resolve(tiny_spec(train_ops=[{"op": "patch", "rate": 0.25, "size": 4}], train={"label_smoothing": 0.1}))
    assert curves_note(spec, 10) == (
        "train: averaged over the epoch's steps while the weights changed, on inputs after the train ops "
        "(patch(rate=0.25)), loss with label smoothing 0.1 (never below 0.50).\n"
        "validation: after each epoch, on clean inputs, plain cross-entropy."
    )
    rows = [{"epoch": 1, "train_loss": 6.5, "val_loss": 6.3, "val_mlm_acc": 0.02, "lr": 0.001}]
    assert [(name, [s[0] for s in series]) for name, _, series in curve_panels(rows)] == [
        ("loss", ["train_loss", "val_loss"]),
        ("masked-token accuracy", ["val_mlm_acc"]),
    ]


@pytest.fixture
def two_groups(workdir, write_spec):
    """Two groups of three seeds that differ in the learning rate."""
    for name, lr in (("slow", 0.003), ("fast", 0.01)):
        spec = tiny_spec(name=name, seeds=[0, 1, 2], train={"lr": lr})
        assert cli("train", write_spec(spec, f"{name}.yaml"), "-q").exit_code == 0
    return workdir


def drawn_figure(monkeypatch):
    """Keep the figure compare draws (instead of only its PNG) to read its numbers back."""
    from masklab.analysis import plots

    kept, save = [], plots._save

    def keep(fig, path):
        kept.append(fig)
        save(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    return kept


def test_compare_plot_draws_the_differences_and_intervals_the_table_prints(two_groups, monkeypatch):
    kept = drawn_figure(monkeypatch)
    result = cli("compare", "slow", "fast", "-m", "test_acc", "-m", "val_acc", "--plot", "diff.png", "-f", "csv")
    assert result.exit_code == 0, result.stderr
    rows = [r for r in csv.DictReader(io.StringIO(result.stdout)) if r["verdict"] != "reference"]
    (fig,) = kept
    assert len(fig.axes) == 2
    for ax, row in zip(fig.axes, rows):
        (cap_low, cap_high) = [line.get_ydata()[0] for line in ax.lines if line.get_marker() == "_"]
        point = next(line for line in ax.lines if line.get_marker() == "o")
        assert point.get_ydata()[0] == pytest.approx(float(row["diff"]))
        assert (cap_low, cap_high) == pytest.approx((float(row["ci_low"]), float(row["ci_high"])))
        assert any(list(line.get_ydata()) == [0, 0] for line in ax.lines)  # the reference's zero line
        low, high = ax.get_ylim()
        assert low < min(0.0, cap_low) and high > max(0.0, cap_high)  # 0 and the whole interval on the axis
        assert ax.get_ylabel() == f"{row['metric']}\ngroup mean minus reference mean"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["fast"]  # its name, not its hash
        assert f"95% interval ({row['interval']})" in ax.get_title()
        assert any(
            t.get_text()
            == f"{row['verdict']}\n{float(row['diff']):+.4f} [{float(row['ci_low']):+.4f}, {float(row['ci_high']):+.4f}]"
            for t in ax.texts
        )


def test_the_curve_band_is_min_to_max_in_the_terminal_and_the_png(two_groups, monkeypatch):
    kept = drawn_figure(monkeypatch)
    table = cli("compare", "slow", "fast", "--curve", "val_acc", "--plot", "val.png")
    assert table.exit_code == 0, table.stderr
    assert "val_acc per epoch (mean over seeds; dots: min..max over seeds, n=3 seeds;" in table.stdout
    assert "  * slow (reference)\n  o fast\n" in table.stdout  # names, not hashes
    rows = list(csv.DictReader(io.StringIO(cli("compare", "slow", "fast", "--curve", "val_acc", "-f", "csv").stdout)))
    (fig,) = kept
    (ax,) = fig.axes
    assert ax.get_title() == "val_acc per epoch: mean over seeds, band min..max over seeds (n=3 seeds)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["slow (reference)", "fast"]
    for band, group in zip(ax.collections, ("slow", "fast")):
        mine = [r for r in rows if r["group"].startswith(group + "-")]
        ys = band.get_paths()[0].vertices[:, 1]
        assert min(ys) == pytest.approx(min(float(r["min"]) for r in mine))
        assert max(ys) == pytest.approx(max(float(r["max"]) for r in mine))


def test_the_mask_preview_and_ops_png_count_epochs_alike(workdir, write_spec, monkeypatch):
    """Copy k of `masklab mask` (from 0, as the array's index) is what epoch k + 1 of a run
    draws, and ops.png counts epochs from 1, as metrics.jsonl does: both figures say so."""
    import torch

    from masklab.analysis import figures as figures_mod
    from masklab.data.registry import load
    from masklab.data.splits import build_data
    from masklab.ops.pipeline import OpPipeline
    from masklab.spec import load_spec
    from masklab.study.run_figures import ops_preview

    drawn = []
    monkeypatch.setattr(figures_mod, "preview_png", lambda preview, path: drawn.append(preview))
    args = ["mask", "--dataset", "mnist-mini", "--limit", "100", "--op", "patch", "--rate", "0.5", "--copies", "3"]
    assert cli(*args, "--out", "m.npz", "--preview", "m.png").exit_code == 0
    (mask,) = drawn
    assert mask.row_labels == ["copy 0 (epoch 1)", "copy 1 (epoch 2)", "copy 2 (epoch 3)"]
    assert "draws in epoch k + 1 (epochs count from 1, as in metrics.jsonl)" in mask.notes[0]
    spec = load_spec(write_spec(tiny_spec(train_ops=OPS, train={"epochs": 3})))
    data = build_data(load("mnist-mini"), 0.2, 0, torch.device("cpu"))
    run = ops_preview(spec, data, OpPipeline(spec.train_ops, 0, data.shape))
    assert run.row_labels == ["epoch 1", "epoch 2", "epoch 3"]
    assert run.notes == [
        "patch: static, 2 fixed draws per image (epoch e uses copy (e - 1) mod 2, copies counted from 0)"
    ]
