"""masklab noise: add keyed noise (or an MNIST-C transform) to a dataset split and write it to an .npz."""

from __future__ import annotations

from masklab.cli.materialize import op_command

noise = op_command(
    "noise",
    """Add keyed noise to a dataset split and write images and labels to an .npz.

    stdout gets, per op, overall and per class, the requested setting beside the quantity
    it names, measured on what was drawn: gaussian sigma -> the noise standard deviation
    before clipping to [0, 1] and the (smaller) one after; salt_pepper amount -> the
    fraction of pixels hit; speckle sigma -> the relative noise std; uniform width -> std
    x sqrt 12; shot c -> mean / variance; the MNIST-C transforms -> the mean |change|.
    The file trains as `data.dataset: npz:FILE`.

    Examples:

      masklab noise --dataset mnist-mini --op gaussian --sigma 0.2 \\
          --out noisy.npz --preview noisy.png

      masklab noise --dataset mnist-mini --op salt_pepper:amount=0.1 \\
          --out sp.npz

      masklab noise --dataset mnist-mini --op 'shot:severity=3' --split test \\
          --out shot-test.npz
    """,
)
