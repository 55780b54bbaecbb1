"""masklab mask: draw masks over a dataset split and write them to an .npz."""

from __future__ import annotations

from masklab.cli.materialize import op_command

mask = op_command(
    "mask",
    """Draw masks over a dataset split and write images, masks and labels to an .npz.

    The masks are the keyed ones training draws: copy k (counted from 0) equals what a
    run with this seed draws in epoch k + 1 (epochs count from 1, as in metrics.jsonl). stdout gets requested vs realized rates, overall and per class.
    --preview draws 8 images and every copy, masked pixels in orange. The file trains as
    `data.dataset: npz:FILE` (with --copies K, an epoch then passes over all K copies).

    Examples:

      masklab mask --dataset mnist-mini --op patch --rate 0.5 --size 4 \\
          --out patch.npz --preview patch.png

      masklab mask --dataset mnist-mini --op rect:area=0.1,0.3 --copies 3 \\
          --out rect.npz --preview rect.png

      masklab mask experiments/quickstart.yaml --out quickstart-masks.npz
    """,
)
