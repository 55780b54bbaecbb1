"""Pictures: per-epoch curves (text for the terminal, PNG with matplotlib), robustness
plots and image grids. matplotlib is imported only when a PNG is asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MARKS = "*o+x#@%&"


def text_curves(curves: dict[str, dict[str, list[float]]], metric: str, width: int = 64, height: int = 14) -> str:
    """Group means as marks, their min..max band as dots, on a character grid."""
    lows = [v for c in curves.values() for v in c["min"]]
    highs = [v for c in curves.values() for v in c["max"]]
    lo, hi = min(lows), max(highs)
    if hi - lo < 1e-12:
        hi = lo + 1e-12
    epochs = max(len(c["epoch"]) for c in curves.values())
    grid = [[" "] * width for _ in range(height)]

    def col(i: int) -> int:
        return 0 if epochs == 1 else round(i * (width - 1) / (epochs - 1))

    def row(v: float) -> int:
        return height - 1 - round((v - lo) / (hi - lo) * (height - 1))

    for c in curves.values():
        for i, (a, b) in enumerate(zip(c["min"], c["max"])):
            for r in range(row(b), row(a) + 1):
                if grid[r][col(i)] == " ":
                    grid[r][col(i)] = "."
    drawn = list(zip(MARKS, curves.values()))
    for mark, c in drawn[1:] + drawn[:1]:  # the reference (first) last: on top where curves meet
        for i, v in enumerate(c["mean"]):
            grid[row(v)][col(i)] = mark
    lines = [f"{metric} per epoch (mean; dots: min..max over seeds; the reference drawn on top)"]
    for r, cells in enumerate(grid):
        label = f"{hi:8.4f} |" if r == 0 else (f"{lo:8.4f} |" if r == height - 1 else " " * 9 + "|")
        lines.append(label + "".join(cells))
    lines.append(" " * 9 + "+" + "-" * width)
    lines.append(" " * 10 + f"epoch 1{' ' * (width - 14)}epoch {epochs}")
    for i, (mark, key) in enumerate(zip(MARKS, curves)):
        lines.append(f"  {mark} {key}" + (" (reference)" if i == 0 else ""))
    return "\n".join(lines) + "\n"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves_png(curves: dict[str, dict[str, list[float]]], metric: str, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for key, c in curves.items():
        mean, std = np.array(c["mean"]), np.array(c["std"])
        (line,) = ax.plot(c["epoch"], mean, label=key, marker="o", markersize=3)
        ax.fill_between(c["epoch"], mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: mean ± std over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def bars_png(rows: list[dict], metric: str, path: Path) -> None:
    """Group means with their seed range, and the reference's mean as a line."""
    plt = _pyplot()
    rows = [r for r in rows if r["metric"] == metric]
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(rows) + 2), 4.5), dpi=120)
    x = np.arange(len(rows))
    means = np.array([r["mean"] for r in rows])
    err = np.array([[r["mean"] - r["min"] for r in rows], [r["max"] - r["mean"] for r in rows]])
    ax.bar(x, means, yerr=err, capsize=4, color="#4c72b0")
    ax.axhline(means[0], color="gray", linestyle="--", linewidth=1)
    ax.set_xticks(x, [r["group"] for r in rows], rotation=20, ha="right", fontsize=8)
    pad = max(1e-3, float(np.ptp(np.concatenate([means - err[0], means + err[1]]))))
    ax.set_ylim(float((means - err[0]).min() - pad), float((means + err[1]).max() + pad))
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: mean, min..max over seeds")
    _save(fig, path)


def axis_png(p, path: Path) -> None:
    """A metric against the --by value: one line per --split value, means with markers
    and their interval as a band (a single seed has none)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p.rows)
    xs = {v: (v if numeric else i) for i, v in enumerate(p.rows)}
    for column in p.columns:
        rows = [row for r in p.rows if (row := p.row(r, column))]
        x = np.array([xs[r[p.by]] for r in rows], dtype=float)
        mean = np.array([r["mean"] for r in rows])
        label = str(column) if p.split else p.metric
        (line,) = ax.plot(x, mean, marker="o", markersize=4, label=label)
        banded = [i for i, r in enumerate(rows) if r["ci_low"] is not None]
        if banded:
            lo = np.array([rows[i]["ci_low"] for i in banded])
            hi = np.array([rows[i]["ci_high"] for i in banded])
            if _is_fraction(p.metric):  # an accuracy cannot leave [0, 1]: neither may its band
                lo, hi = np.clip(lo, 0, 1), np.clip(hi, 0, 1)
            ax.fill_between(x[banded], lo, hi, color=line.get_color(), alpha=0.18, linewidth=0)
    if not numeric or len(p.rows) <= 12:  # ticks at the values the study ran, as papers draw them
        ax.set_xticks(list(xs.values()), [str(v) for v in p.rows])
    ns = sorted({row["n"] for row in p.cell_rows()})
    n_text = f"n={ns[0]}" if len(ns) == 1 else f"n={ns[0]}-{ns[-1]}"
    ax.set_xlabel(p.by)
    ax.set_ylabel(p.metric)
    ax.set_title(
        f"{p.metric} against {_short(p.by)}: mean and 95% t-interval over seeds ({n_text} per point)", fontsize=9
    )
    ax.grid(alpha=0.3)
    if p.split:
        ax.legend(fontsize=8, title=p.split, title_fontsize=8)
    _save(fig, path)


def _is_fraction(metric: str) -> bool:
    return any(word in metric for word in ("acc", "f1", "recall"))


def _short(key: str | None) -> str:
    return (key or "").rsplit(".", 1)[-1]


def robustness_plot(bodies: list[dict], path: Path) -> None:
    """Accuracy against strength: one panel per corruption, one line per run."""
    from masklab.ops import registry

    plt = _pyplot()
    ops = sorted({c["op"]["op"] for b in bodies for c in b["cells"]})
    if not ops:
        from masklab.errors import UsageError

        raise UsageError("--plot needs a corruption grid (--op, --ops or --suite)")
    fig, axes = plt.subplots(1, len(ops), figsize=(4 * len(ops), 3.6), dpi=120, squeeze=False)
    for ax, op in zip(axes[0], ops):
        strength = registry.OPS[op].strength or next(iter(registry.OPS[op].params))
        for b in bodies:
            cells = [c for c in b["cells"] if c["op"]["op"] == op]
            xs = [c["op"].get("severity") or c["op"].get(strength) for c in cells]
            if not all(isinstance(v, (int, float)) for v in xs):
                xs = list(range(1, len(cells) + 1))
            ax.plot(
                [0] + xs, [b["clean"]["acc"]] + [c["acc"] for c in cells], marker="o", markersize=3, label=b["run_id"]
            )
        ax.set_title(op)
        ax.set_xlabel("severity" if cells and cells[0]["op"].get("severity") else strength)
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    _save(fig, path)


FORMATS = ("png", "pdf", "svg")


def check_plot_path(path: Path, option: str = "--plot") -> None:
    """Refuse, before any work, a picture path that is a folder or not an image file name."""
    from masklab.errors import UsageError

    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder; name the file to write, e.g. {option} {path / 'plot.png'}")
    if path.suffix and path.suffix[1:].lower() not in FORMATS:
        raise UsageError(f"{option} {path}: write a .png, .pdf or .svg file")


def _save(fig, path: Path) -> None:
    """Write exactly `path` (matplotlib would add .png to a name without a suffix)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    check_plot_path(path, "the picture")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format=path.suffix[1:].lower() or "png")
    plt.close(fig)
