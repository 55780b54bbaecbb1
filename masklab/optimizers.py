"""AdamW and Nesterov SGD, the two updates masklab trains with, written on torch's
fused and multi-tensor kernels.

Why not torch.optim: every `torch.optim.Optimizer` imports `torch._dynamo` on its first
`add_param_group` and `step` (they are wrapped to be skipped by the compiler), and that
import costs 1.1-1.2 s per process on a 2-core CPU, more than the training of a
quickstart epoch. These classes run the same kernels with the same arguments
(`torch._fused_adamw_`, `torch._foreach_*`), so the updates are bit-identical to
`torch.optim.AdamW(fused=True)` and `torch.optim.SGD(nesterov=True)` (tests check it),
and their `state_dict()` has torch's layout, so checkpoints load either way.

The kernels are torch internals (`torch._fused_adamw_`, `torch._foreach_*`): where a
torch build lacks one (older releases have no fused AdamW on CPU), `make` falls back to
torch.optim's own classes, which give the same updates at the cost of the import.

They work on any parameter shapes, including a seed group's stacked parameters
(leading seed axis): both updates are element-wise.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

# the param_group keys torch.optim writes, so a state_dict loads into torch.optim too
_ADAMW_FLAGS = {
    "amsgrad": False,
    "foreach": None,
    "maximize": False,
    "capturable": False,
    "differentiable": False,
    "fused": True,
    "decoupled_weight_decay": True,
}
_SGD_FLAGS = {"dampening": 0, "maximize": False, "foreach": None, "differentiable": False, "fused": None}


class _Optimizer:
    """Param groups, zero_grad and a torch-compatible state_dict."""

    defaults: dict

    def __init__(self, groups: Iterable[dict], defaults: dict) -> None:
        self.defaults = defaults
        self.param_groups = [{**defaults, **group, "params": list(group["params"])} for group in groups]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()

    def state_dict(self) -> dict:
        index, groups = {}, []
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                index.setdefault(p, len(index))
                ids.append(index[p])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        state = {index[p]: dict(s) for p, s in self.state.items() if p in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, body: dict) -> None:
        """Load a state_dict written by this class or by the matching torch.optim class."""
        saved = body["param_groups"]
        if len(saved) != len(self.param_groups) or any(
            len(a["params"]) != len(b["params"]) for a, b in zip(saved, self.param_groups)
        ):
            raise ValueError("optimizer state does not match the model's parameter groups")
        self.state = {}
        for theirs, mine in zip(saved, self.param_groups):
            mine.update({k: v for k, v in theirs.items() if k != "params"})
            for i, p in zip(theirs["params"], mine["params"]):
                if i in body["state"]:
                    self.state[p] = {k: v.to(p.device) for k, v in body["state"][i].items()}


def _by_device_and_dtype(*lists: list[torch.Tensor]) -> list[tuple[list[torch.Tensor], ...]]:
    """Split parallel lists of tensors by (device, dtype): a fused kernel takes one of each."""
    buckets: dict[tuple, tuple[list[torch.Tensor], ...]] = {}
    for items in zip(*lists):
        bucket = buckets.setdefault((items[0].device, items[0].dtype), tuple([] for _ in lists))
        for into, item in zip(bucket, items):
            into.append(item)
    return list(buckets.values())


class AdamW(_Optimizer):
    """torch.optim.AdamW(fused=True): decoupled weight decay, bias-corrected moments."""

    def __init__(
        self,
        groups: Iterable[dict],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(groups, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, **_ADAMW_FLAGS})

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                if p not in self.state:
                    # a float32 step on the parameter's device, as torch's fused path keeps it
                    self.state[p] = {
                        "step": torch.zeros((), dtype=torch.float32, device=p.device),
                        "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                        "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                    }
            states = [self.state[p] for p in params]
            lists = [params, [p.grad for p in params]] + [[s[k] for s in states] for k in ("exp_avg", "exp_avg_sq")]
            lists.append([s["step"] for s in states])
            beta1, beta2 = group["betas"]
            for ps, grads, avgs, sqs, steps in _by_device_and_dtype(*lists):
                torch._foreach_add_(steps, 1)
                torch._fused_adamw_(
                    ps,
                    grads,
                    avgs,
                    sqs,
                    [],
                    steps,
                    amsgrad=False,
                    lr=group["lr"],
                    beta1=beta1,
                    beta2=beta2,
                    weight_decay=group["weight_decay"],
                    eps=group["eps"],
                    maximize=False,
                    grad_scale=None,
                    found_inf=None,
                )


class SGD(_Optimizer):
    """torch.optim.SGD with momentum (Nesterov when nesterov=True) and L2 weight decay."""

    def __init__(
        self,
        groups: Iterable[dict],
        lr: float,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(
            groups, {"lr": lr, "momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay, **_SGD_FLAGS}
        )

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for ps in _by_device_and_dtype(params):
                self._update(ps[0], group)

    def _update(self, params: list[torch.Tensor], group: dict) -> None:
        grads = [p.grad for p in params]
        if group["weight_decay"]:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        momentum = group["momentum"]
        if momentum:
            if all(p in self.state for p in params):
                bufs = [self.state[p]["momentum_buffer"] for p in params]
                torch._foreach_mul_(bufs, momentum)
                torch._foreach_add_(bufs, grads, alpha=1 - group["dampening"])
            else:  # a parameter's first step: its buffer starts as its gradient
                bufs = []
                for p, g in zip(params, grads):
                    if p in self.state:
                        self.state[p]["momentum_buffer"].mul_(momentum).add_(g, alpha=1 - group["dampening"])
                    else:
                        self.state[p] = {"momentum_buffer": g.detach().clone()}
                    bufs.append(self.state[p]["momentum_buffer"])
            grads = torch._foreach_add(grads, bufs, alpha=momentum) if group["nesterov"] else bufs
        torch._foreach_add_(params, grads, alpha=-group["lr"])


_KERNELS = ("_fused_adamw_", "_foreach_add_", "_foreach_add", "_foreach_mul_")


def kernels_available() -> bool:
    """Whether this torch has the internal kernels the classes above call."""
    return all(hasattr(torch, name) for name in _KERNELS)


def make(kind: str, groups: list[dict], lr: float, **kw):
    """An AdamW or SGD on torch's kernels, or torch.optim's class where they are missing."""
    if kernels_available():
        return (AdamW if kind == "adamw" else SGD)(groups, lr=lr, **kw)
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=lr, **kw)
    return torch.optim.SGD(groups, lr=lr, **kw)
