"""The figures a finished run folder holds, and what they are drawn from."""

from __future__ import annotations

import json

import matplotlib.image
import numpy as np

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
