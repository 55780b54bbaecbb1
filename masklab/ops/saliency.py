"""Where the model looks: per-example saliency at patch resolution, for masks placed by it.

`placement: salient` hides the cells the model relies on most (AttMask, Kakogeorgiou et
al., ECCV 2022, with a ViT's attention); `placement: background` hides the ones it relies
on least and keeps the object visible (KeepAugment, Gong et al., CVPR 2021). Saliency is

- CNN and MLP: the input-gradient magnitude |d loss / d x| summed over channels and
  averaged over each cell;
- ViT with a class token: the class token's attention to each patch in the last block,
  averaged over heads (a ViT pooling by mean falls back to the input gradient).

Two ways to keep it fresh (`refresh`):

- `batch`: before every step, one extra forward and backward pass of the clean batch
  (the model in eval mode, no parameter gradients): the saliency of the current model
  on the current image, at the price of that pass.
- `epoch`: taken from the training step itself: the gradient of the step's loss with
  respect to the (masked) images it trained on, or the class token's attention in that
  forward pass, cached per example at cell resolution on the device and used the next
  time the example is drawn, one epoch later. A cell the mask hid keeps its previous
  value. Nearly free; in the first epoch, before any example has been seen, every cell
  ties and the keyed order decides: the first epoch places at random.

The cache is part of the run's checkpoint, so a resumed run places masks exactly as an
uninterrupted one. Ties, and the order among equally salient cells, are broken by the
keyed hash (masks.ranked_units), so runs stay reproducible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cell_size(op: dict, height: int, width: int) -> int:
    """The side of a saliency cell for an op: its patch size, or for boxes the largest of
    4, 2, 1 pixels that divides the image."""
    if op["op"] == "patch":
        return op["size"]
    return next(c for c in (4, 2, 1) if height % c == 0 and width % c == 0)


def pool(pixels: torch.Tensor, cell: int) -> torch.Tensor:
    """(B, H, W) -> (B, H/cell, W/cell): the mean over each cell."""
    return F.avg_pool2d(pixels[:, None], cell)[:, 0] if cell > 1 else pixels


def uses_attention(model: torch.nn.Module) -> bool:
    """A ViT with a class token: saliency from its attention."""
    return getattr(model, "cls", None) is not None and hasattr(model, "blocks") and hasattr(model, "patch")


def input_gradient(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """|d loss / d x| summed over channels, on the clean batch, the model in eval mode
    (so dropout draws nothing and batch norm keeps its statistics). (B, H, W)"""
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            loss = F.cross_entropy(model(x).float(), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x)
    finally:
        model.train(was_training)
    return grad.abs().sum(1)


class AttentionProbe:
    """Catches the input of a ViT's last block during a forward pass, and turns it into
    the class token's attention to each patch. (B, H, W) at pixel resolution."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.armed = False  # catch only the passes that feed saliency
        self.caught: tuple | None = None
        model.blocks[-1].register_forward_pre_hook(self._catch)

    def _catch(self, module, args) -> None:
        if self.armed:
            self.caught = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)

    def attention(self, height: int, width: int) -> torch.Tensor | None:
        """The caught pass's class-token attention, or None when tokens were dropped."""
        if self.caught is None:
            return None
        tokens, mask = self.caught[0], self.caught[1] if len(self.caught) > 1 else None
        self.caught = None
        patch = self.model.patch
        gh, gw = height // patch, width // patch
        if tokens.shape[1] != gh * gw + 1:
            return None  # a tokens op dropped patches: no full map
        with torch.no_grad():
            weights = self.model.blocks[-1].attention_weights(tokens, mask)  # (B, heads, L, L)
        cls = weights[:, :, 0, 1:].mean(1).float().view(-1, gh, gw)  # (B, gh, gw)
        return cls.repeat_interleave(patch, 1).repeat_interleave(patch, 2)

    def fresh(self, x: torch.Tensor) -> torch.Tensor:
        """One forward pass of the clean batch in eval mode for its attention. (B, H, W)"""
        was_training = self.model.training
        self.model.eval()
        self.armed = True
        try:
            with torch.no_grad():
                self.model(x)
        finally:
            self.armed = False
            self.model.train(was_training)
        return self.attention(x.shape[-2], x.shape[-1])


class Saliency:
    """Saliency for the ops placed by it: fresh per batch, or cached per example."""

    def __init__(
        self, ops: list[dict], model: torch.nn.Module, shape: tuple[int, int, int], examples: int, device
    ) -> None:
        _, self.height, self.width = shape
        self.placed = [i for i, op in enumerate(ops) if op.get("placement", "random") != "random"]
        self.cells = {i: cell_size(ops[i], self.height, self.width) for i in self.placed}
        self.refresh = {i: ops[i]["refresh"] for i in self.placed}
        self.model = model
        self.probe = AttentionProbe(model) if uses_attention(model) else None
        # one cache per cell size among the ops refreshed per epoch: (N, H/cell, W/cell)
        self.cache = {
            c: torch.zeros(examples, self.height // c, self.width // c, device=device)
            for c in sorted({self.cells[i] for i in self.placed if self.refresh[i] == "epoch"})
        }

    @property
    def wants_input_grad(self) -> bool:
        """The training step must keep the gradient of its images (epoch refresh, no attention)."""
        return bool(self.cache) and self.probe is None

    def before_step(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> dict[int, torch.Tensor]:
        """Saliency per placed op for this batch: {op index: (B, H/cell, W/cell)}."""
        fresh = None
        out = {}
        for i in self.placed:
            if self.refresh[i] == "batch":
                if fresh is None:
                    fresh = self.probe.fresh(x) if self.probe else input_gradient(self.model, x, y)
                out[i] = pool(fresh, self.cells[i])
            else:
                out[i] = self.cache[self.cells[i]].index_select(0, index)
        if self.probe is not None:
            self.probe.armed = bool(self.cache)  # the training forward feeds the cache
        return out

    def after_step(self, index: torch.Tensor, images: torch.Tensor, hidden: torch.Tensor | None) -> None:
        """Update the cache from the training step: the gradient its images received, or
        the attention its forward pass caught. `hidden`: (B, H, W) pixels the ops masked."""
        if not self.cache:
            return
        if self.probe is not None:
            self.probe.armed = False
            pixels = self.probe.attention(self.height, self.width)
        else:
            pixels = images.grad.abs().sum(1) if images.grad is not None else None
        if pixels is None:
            return
        for c, cache in self.cache.items():
            new = pool(pixels.float(), c)
            if hidden is not None:  # a hidden cell says nothing about the image: keep its last value
                covered = pool(hidden.to(new.dtype), c) >= 0.5
                new = torch.where(covered, cache.index_select(0, index), new)
            cache.index_copy_(0, index, new)

    def state_dict(self) -> dict:
        return {str(c): t for c, t in self.cache.items()}

    def load_state_dict(self, state: dict) -> None:
        for c, t in self.cache.items():
            t.copy_(state[str(c)])
