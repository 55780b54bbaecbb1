"""Pictures: per-epoch curves (text for the terminal, PNG with matplotlib), robustness
plots and image grids. matplotlib is imported only when a PNG is asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np

MARKS = "*o+x#@%&"


BAND = "min..max over seeds"  # what the band of a --curve is, in the terminal and in the PNG


def text_curves(
    curves: dict[str, dict[str, list[float]]],
    metric: str,
    names: dict[str, str] | None = None,
    width: int = 64,
    height: int = 14,
) -> str:
    """Group means as marks, their min..max band over seeds as dots, on a character grid."""
    names = names or {}
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
    lines = [f"{metric} per epoch (mean over seeds; dots: {BAND}, {seeds_text(curves)}; the reference drawn on top)"]
    for r, cells in enumerate(grid):
        label = f"{hi:8.4f} |" if r == 0 else (f"{lo:8.4f} |" if r == height - 1 else " " * 9 + "|")
        lines.append(label + "".join(cells))
    lines.append(" " * 9 + "+" + "-" * width)
    lines.append(" " * 10 + f"epoch 1{' ' * (width - 14)}epoch {epochs}")
    for i, (mark, key) in enumerate(zip(MARKS, curves)):
        lines.append(f"  {mark} {names.get(key, key)}" + (" (reference)" if i == 0 else ""))
    return "\n".join(lines) + "\n"


def seeds_text(curves: dict[str, dict]) -> str:
    ns = sorted({c.get("n", 0) for c in curves.values()})
    return f"n={ns[0]} seeds" if len(ns) == 1 else f"n={ns[0]}-{ns[-1]} seeds"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves_png(
    curves: dict[str, dict[str, list[float]]], metric: str, path: Path, names: dict[str, str] | None = None
) -> None:
    """Group means per epoch, each with its min..max band over seeds (as the terminal's --curve)."""
    plt = _pyplot()
    names = names or {}
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for i, (key, c) in enumerate(curves.items()):
        label = names.get(key, key) + (" (reference)" if i == 0 else "")
        (line,) = ax.plot(c["epoch"], c["mean"], label=label, marker="o", markersize=3)
        ax.fill_between(c["epoch"], c["min"], c["max"], color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"{metric} per epoch: mean over seeds, band {BAND} ({seeds_text(curves)})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def differences_png(rows: list[dict], metrics: list[str], path: Path, names: dict[str, str] | None = None) -> None:
    """What compare concludes, drawn: per metric, each group's difference from the
    reference with the 95% interval compare's table prints, a zero line (the reference)
    and the verdict beside it. The y-axis is in the metric's units and always holds 0."""
    plt = _pyplot()
    names = names or {}
    fig, axes = plt.subplots(
        1,
        len(metrics),
        figsize=(max(4.5, 1.4 * len(rows) / len(metrics) + 3) * len(metrics), 4.8),
        dpi=120,
        squeeze=False,
    )
    for ax, metric in zip(axes[0], metrics):
        mine = [r for r in rows if r["metric"] == metric]
        reference, others = mine[0], mine[1:]
        x = np.arange(len(others))
        ax.axhline(0, color="gray", linewidth=1)
        ax.text(
            1.0,
            0,
            f" reference: {names.get(reference['group'], reference['group'])}\n mean {reference['mean']:.4f}",
            transform=ax.get_yaxis_transform(),
            va="center",
            ha="left",
            fontsize=7,
            color="gray",
        )
        span = [0.0]
        for i, r in enumerate(others):
            has_ci = r.get("ci_low") is not None and r.get("ci_high") is not None
            if has_ci:
                err = [[r["diff"] - r["ci_low"]], [r["ci_high"] - r["diff"]]]
                ax.errorbar([i], [r["diff"]], yerr=err, fmt="o", color="#4c72b0", capsize=5, markersize=5)
                span += [r["ci_low"], r["ci_high"]]
            else:
                ax.plot([i], [r["diff"]], "o", color="#4c72b0", markersize=5)
                span.append(r["diff"])
            numbers = (
                f"{r['diff']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]"
                if has_ci
                else f"{r['diff']:+.4f}, no interval"
            )
            ax.annotate(
                f"{r['verdict']}\n{numbers}",
                (i, r["diff"]),
                xytext=(8, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
            )
        lo, hi = min(span), max(span)
        pad = 0.15 * (hi - lo) if hi > lo else max(1e-3, abs(hi) * 0.5)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlim(-0.5, max(len(others), 1) + 0.3)  # room on the right of each point for its words
        ax.set_xticks(x, [names.get(r["group"], r["group"]) for r in others], rotation=20, ha="right", fontsize=8)
        ax.yaxis.set_major_formatter(lambda v, _: f"{v:+.4f}" if v else "0")
        kinds = sorted({r["interval"] for r in others if r.get("interval")})
        ax.set_ylabel(f"{metric}\ngroup mean minus reference mean", fontsize=8)
        ax.set_title(
            f"{metric}: difference from the reference\n95% interval ({', '.join(kinds) or 'none'}), as compare prints",
            fontsize=9,
        )
        ax.grid(alpha=0.3, axis="y")
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
