"""masklab mask: draw masks over a dataset split and write them to an .npz."""

from __future__ import annotations

from typing import Annotated

import typer

from masklab.cli import materialize as m
from masklab.cli.common import Format, FormatOption, cli_command

Text = str | None


@cli_command
def mask(
    spec: m.SpecArg = None,
    dataset: m.DatasetOption = None,
    op: m.OpOption = None,
    rate: Annotated[Text, typer.Option("--rate", help="Fraction of units masked, or a per-image range lo,hi.")] = None,
    size: Annotated[Text, typer.Option("--size", help="patch/block: patch side in pixels.")] = None,
    count: Annotated[Text, typer.Option("--count", help="pixel: exact or bernoulli.")] = None,
    area: Annotated[Text, typer.Option("--area", help="rect: box area range lo,hi (fraction of the image).")] = None,
    aspect: Annotated[Text, typer.Option("--aspect", help="rect/block: aspect range lo,hi.")] = None,
    n: Annotated[Text, typer.Option("--n", help="rect: boxes per image.")] = None,
    axis: Annotated[Text, typer.Option("--axis", help="stripes: rows, cols or both.")] = None,
    max_width: Annotated[Text, typer.Option("--max-width", help="stripes: widest band.")] = None,
    min_patches: Annotated[Text, typer.Option("--min-patches", help="block: smallest block in patches.")] = None,
    box: Annotated[Text, typer.Option("--box", help="region: top,left,height,width.")] = None,
    fill: Annotated[Text, typer.Option("--fill", help="zero, mean, uniform, gaussian or a number.")] = None,
    p: m.POption = None,
    mode: m.ModeOption = None,
    seed: m.SeedOption = 0,
    copies: m.CopiesOption = 1,
    split: m.SplitOption = "train",
    batch_size: m.BatchOption = 1024,
    limit: m.LimitOption = None,
    out: m.OutOption = ...,
    preview: m.PreviewOption = None,
    device: m.DeviceOption = "cpu",
    fmt: FormatOption = Format.table,
) -> None:
    """Draw masks over a dataset split and write images, masks and labels to an .npz.

    The masks are the keyed ones training draws: copy k equals what a run with this
    seed draws in epoch k. stdout gets requested vs realized rates, overall and per class.
    --preview draws 8 images and every copy, masked pixels in orange. The file trains as
    `data.dataset: npz:FILE` (with --copies K, an epoch then passes over all K copies).

    Examples:

      masklab mask --dataset mnist-mini --op patch --rate 0.5 --size 4 \\
          --out patch.npz --preview patch.png

      masklab mask --dataset mnist-mini --op rect --area 0.1,0.3 --copies 3 \\
          --out rect.npz --preview rect.png

      masklab mask experiments/quickstart.yaml --out quickstart-masks.npz
    """
    params = {
        "rate": rate,
        "size": size,
        "count": count,
        "area": area,
        "aspect": aspect,
        "n": n,
        "axis": axis,
        "max_width": max_width,
        "min_patches": min_patches,
        "box": box,
        "fill": fill,
        "p": p,
        "mode": mode,
    }
    m.materialize("mask", spec, dataset, op, params, seed, copies, split, batch_size, limit, out, preview, device, fmt)
