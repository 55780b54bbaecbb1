"""masklab noise: add keyed noise to a dataset split and write it to an .npz."""

from __future__ import annotations

from typing import Annotated

import typer

from masklab.cli import materialize as m
from masklab.cli.common import Format, FormatOption, cli_command

Text = str | None


@cli_command
def noise(
    spec: m.SpecArg = None,
    dataset: m.DatasetOption = None,
    op: m.OpOption = None,
    sigma: Annotated[
        Text, typer.Option("--sigma", help="gaussian/speckle: standard deviation, or a range lo,hi.")
    ] = None,
    mean: Annotated[Text, typer.Option("--mean", help="gaussian: mean of the noise.")] = None,
    amount: Annotated[Text, typer.Option("--amount", help="salt_pepper: fraction of pixels hit.")] = None,
    salt_ratio: Annotated[Text, typer.Option("--salt-ratio", help="salt_pepper: share set to 1.")] = None,
    count: Annotated[
        Text, typer.Option("--count", help="salt_pepper: exact (round(amount x pixels) hits) or bernoulli.")
    ] = None,
    c: Annotated[Text, typer.Option("--c", help="shot: photons per unit intensity (smaller is noisier).")] = None,
    width: Annotated[Text, typer.Option("--width", help="uniform: width of the interval.")] = None,
    severity: Annotated[
        Text, typer.Option("--severity", help="1..5: the ImageNet-C strength instead of a value.")
    ] = None,
    clip: Annotated[Text, typer.Option("--clip", help="true or false: clip to [0, 1].")] = None,
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
    """Add keyed noise to a dataset split and write images and labels to an .npz.

    stdout gets, per op, overall and per class, the requested setting beside the quantity
    it names, measured on what was drawn: gaussian sigma -> the noise standard deviation
    before clipping to [0, 1] and the (smaller) one after; salt_pepper amount -> the
    fraction of pixels hit; speckle sigma -> the relative noise std; uniform width -> std
    x sqrt 12; shot c -> mean / variance. The file trains as `data.dataset: npz:FILE`.

    Examples:

      masklab noise --dataset mnist-mini --op gaussian --sigma 0.2 \\
          --out noisy.npz --preview noisy.png

      masklab noise --dataset mnist-mini --op salt_pepper --amount 0.1 \\
          --out sp.npz

      masklab noise --dataset mnist-mini --op 'shot:severity=3' --split test \\
          --out shot-test.npz
    """
    params = {
        "sigma": sigma,
        "mean": mean,
        "amount": amount,
        "salt_ratio": salt_ratio,
        "count": count,
        "c": c,
        "width": width,
        "severity": severity,
        "clip": clip,
        "p": p,
        "mode": mode,
    }
    m.materialize("noise", spec, dataset, op, params, seed, copies, split, batch_size, limit, out, preview, device, fmt)
