"""Several seeds' copies of one network, trained at once as one batched model.

Every parameter and buffer of the template network gets a leading seed axis
(S, ...); the forward pass takes one batch per seed, (S, B, C, H, W), and returns
(S, B, classes). Seeds never mix: convolutions run as grouped convolutions (seed s
owns channel group s), GroupNorm(G, C) becomes GroupNorm(S*G, S*C), BatchNorm keeps
per-channel statistics anyway, and linear layers become batched matrix products.
One grouped convolution or bmm per layer instead of S small ones is what makes a
seed group cost little more than one run on a CPU, where small ops are bound by
per-call overhead rather than arithmetic.

This is an interpreter of the template's layers in registration order, which is
their forward order for masklab's CNN and MLP (tests compare the logits with the
separate models'); any other layer type is refused.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from masklab.models.build import Standardize

SUPPORTED = (Standardize, nn.Conv2d, nn.GroupNorm, nn.BatchNorm2d, nn.ReLU, nn.Dropout, nn.Flatten, nn.Linear)


def layers(template: nn.Module) -> list[tuple[str, nn.Module]]:
    """The leaf layers of a network in registration order (its forward order)."""
    leaves = [(name, m) for name, m in template.named_modules() if not list(m.children())]
    return [(name, m) for name, m in leaves if not isinstance(m, nn.Identity)]


def can_stack(template: nn.Module) -> bool:
    return all(isinstance(m, SUPPORTED) for _, m in layers(template))


class Stacked:
    """S copies of a network with stacked tensors; `parameters()` are leaf tensors (S, ...)."""

    def __init__(self, models: list[nn.Module]) -> None:
        self.template = models[0]
        if not can_stack(self.template):
            kinds = sorted({type(m).__name__ for _, m in layers(self.template) if not isinstance(m, SUPPORTED)})
            raise ValueError(f"cannot batch seeds of a network with {', '.join(kinds)} layers")
        self.seeds = len(models)
        states = [m.state_dict() for m in models]
        trainable = {name for name, p in self.template.named_parameters() if p.requires_grad}
        self.tensors = {
            name: torch.stack([s[name].detach() for s in states]).requires_grad_(name in trainable)
            for name in states[0]
        }
        self.layers = layers(self.template)
        self.by_layer: dict[str, dict[str, torch.Tensor]] = {name: {} for name, _ in self.layers}
        for key, tensor in self.tensors.items():
            owner, attr = key.rsplit(".", 1)
            self.by_layer.setdefault(owner, {})[attr] = tensor
        self.training = True

    def parameters(self) -> list[torch.Tensor]:
        """The stacked parameters, in the template's parameter order."""
        return [self.tensors[name] for name, _ in self.template.named_parameters()]

    def train(self, mode: bool = True) -> Stacked:
        self.training = mode
        return self

    def eval(self) -> Stacked:
        return self.train(False)

    def state_dict(self, seed: int) -> dict[str, torch.Tensor]:
        """Seed `seed`'s slice, with the template's keys: loads into a separate model."""
        return {name: t[seed].detach().clone() for name, t in self.tensors.items()}

    def load_state_dict(self, seed: int, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, t in self.tensors.items():
                t[seed].copy_(state[name])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(S, B, C, H, W) or (S, B, F) images -> (S, B, classes) logits."""
        h, grouped = x, False  # grouped: (B, S*C, H, W) between convolutions, else (S, B, ...)
        for name, layer in self.layers:
            if isinstance(layer, (nn.Conv2d, nn.GroupNorm, nn.BatchNorm2d)) and not grouped:
                h, grouped = to_grouped(h), True
            elif isinstance(layer, (nn.Flatten, nn.Linear)) and grouped:
                h, grouped = from_grouped(h, self.seeds), False
            h = self._apply(name, layer, h)
        return h

    def _apply(self, name: str, layer: nn.Module, h: torch.Tensor) -> torch.Tensor:
        t, s = self.by_layer[name], self.seeds
        if isinstance(layer, Standardize):
            shape = (s,) + (1,) * (h.dim() - 1)
            return (h - t["mean"].view(shape)) / t["std"].view(shape)
        if isinstance(layer, nn.Conv2d):
            weight = t["weight"].flatten(0, 1)  # (S*C_out, C_in/groups, k, k)
            bias = t["bias"].flatten() if "bias" in t else None
            return F.conv2d(h, weight, bias, layer.stride, layer.padding, layer.dilation, layer.groups * s)
        if isinstance(layer, nn.GroupNorm):
            return F.group_norm(h, layer.num_groups * s, t["weight"].flatten(), t["bias"].flatten(), layer.eps)
        if isinstance(layer, nn.BatchNorm2d):
            return self._batch_norm(layer, t, h)
        if isinstance(layer, nn.ReLU):
            return F.relu(h, inplace=layer.inplace)
        if isinstance(layer, nn.Dropout):
            return F.dropout(h, layer.p, self.training)
        if isinstance(layer, nn.Flatten):
            return h.flatten(2)  # (S, B, F)
        return BatchedLinear.apply(h, t["weight"], t.get("bias"))  # nn.Linear

    def _batch_norm(self, layer: nn.BatchNorm2d, t: dict, h: torch.Tensor) -> torch.Tensor:
        track = "running_mean" in t
        if self.training and track:
            t["num_batches_tracked"].add_(1)
        return F.batch_norm(
            h,
            t["running_mean"].view(-1) if track else None,  # views: the update lands in the stacked buffer
            t["running_var"].view(-1) if track else None,
            t["weight"].flatten() if "weight" in t else None,
            t["bias"].flatten() if "bias" in t else None,
            self.training or not track,
            layer.momentum if layer.momentum is not None else 0.1,
            layer.eps,
        )


class BatchedLinear(torch.autograd.Function):
    """(S, B, in) @ (S, out, in)^T + (S, out) -> (S, B, out). Written out so the weight's
    gradient comes out as (S, out, in) directly: through bmm's own backward it arrives
    transposed and costs a copy of every weight per step."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        if bias is None:
            return torch.bmm(x, weight.transpose(1, 2))
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        grad_w = torch.bmm(grad.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(1) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def to_grouped(x: torch.Tensor) -> torch.Tensor:
    """(S, B, C, H, W) -> (B, S*C, H, W), channels_last as masklab's CNN runs its convolutions."""
    s, b, c, height, width = x.shape
    return x.transpose(0, 1).reshape(b, s * c, height, width).contiguous(memory_format=torch.channels_last)


def from_grouped(x: torch.Tensor, seeds: int) -> torch.Tensor:
    """(B, S*C, H, W) -> (S, B, C, H, W)."""
    b, sc, height, width = x.shape
    return x.reshape(b, seeds, sc // seeds, height, width).transpose(0, 1)
