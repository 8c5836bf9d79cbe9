"""Adam for ensembles: every parameter is ``[E, ...]`` and member e steps with its own learning
rate ``lr[e]``.

The update is Adam's (Kingma & Ba 2015, as ``torch.optim.Adam`` without weight decay or
AMSGrad): PyTorch's fused Adam kernel (``torch._fused_adam_``, what ``Adam(fused=True)`` calls)
when every member has the same learning rate, else PyTorch's multi-tensor
(``torch._foreach_*``) kernels with the step size scaled per member. Members share no state:
member e's moments and update are slices e of per-parameter tensors, so a member steps as it
would alone. A member whose gradients and
moments are zero does not move (the update is 0 / (0 + eps)): the trainer freezes a stopped
member that way.

Why not ``torch.optim.Adam``: a learning rate per member (configurations that share shapes
train as one ensemble, each with its own learning rate), and start-up: the first
``torch.optim.Optimizer`` of a process imports ``torch._dynamo`` (2.4 s of CPU on this machine),
which every Ray worker paid before its first epoch.

``state_dict`` / ``load_state_dict`` use ``torch.optim.Adam``'s layout (``state``: per parameter
index ``step``, ``exp_avg``, ``exp_avg_sq``; ``param_groups``), so checkpoints written by either
load in either.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor


class MemberAdam:
    """Adam over ``params`` (each ``[E, ...]``) with learning rates ``lr`` (one float for every
    member, or E of them); ``betas`` and ``eps`` as in ``torch.optim.Adam``."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float | Sequence[float],
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = list(params)
        if not self.params:
            raise ValueError("MemberAdam needs at least one parameter")
        self.n_members = self.params[0].shape[0]
        self.betas, self.eps = betas, eps
        self.set_lr(lr)
        #: per parameter: ``step`` (0-d float), ``exp_avg`` and ``exp_avg_sq`` (its shape)
        self.state: dict[torch.nn.Parameter, dict[str, Tensor]] = {
            p: {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
            for p in self.params}

    def set_lr(self, lr: float | Sequence[float] | Tensor) -> None:
        """The learning rate of every member (a float) or of each (``[E]``)."""
        device = self.params[0].device
        lr = torch.as_tensor(lr, dtype=torch.float32, device=device)
        if lr.dim() == 0:
            lr = lr.expand(self.n_members)
        if lr.shape != (self.n_members,):
            raise ValueError(f"{lr.numel()} learning rates for {self.n_members} members")
        self.lr = lr.clone()
        #: the one learning rate of every member, or None (then the multi-tensor path)
        self._shared = float(self.lr[0]) if bool((self.lr == self.lr[0]).all()) else None
        # one view per parameter, [E, 1, ...], for the per-member step size
        self._lr_views = [self.lr.view(-1, *[1] * (p.dim() - 1)).to(p.dtype) for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One Adam step of every parameter with a gradient."""
        chosen = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not chosen:
            return
        params = [self.params[i] for i in chosen]
        grads = [p.grad for p in params]
        states = [self.state[p] for p in params]
        exp_avg = [s["exp_avg"] for s in states]
        exp_avg_sq = [s["exp_avg_sq"] for s in states]
        beta1, beta2 = self.betas
        steps = [s["step"] for s in states]
        torch._foreach_add_(steps, 1)
        if self._shared is not None:
            torch._fused_adam_(params, grads, exp_avg, exp_avg_sq, [], steps, lr=self._shared,
                               beta1=beta1, beta2=beta2, weight_decay=0.0, eps=self.eps,
                               amsgrad=False, maximize=False)
            return
        t = float(steps[0])
        torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, value=1 - beta2)
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denom, math.sqrt(1 - beta2**t))
        torch._foreach_add_(denom, self.eps)
        update = torch._foreach_div(exp_avg, denom)
        torch._foreach_mul_(update, [self._lr_views[i] for i in chosen])
        torch._foreach_add_(params, update, alpha=-1 / (1 - beta1**t))

    def state_dict(self) -> dict:
        """``torch.optim.Adam``'s layout (see the module docstring)."""
        return {
            "state": {i: dict(self.state[p]) for i, p in enumerate(self.params)},
            "param_groups": [{"lr": float(self.lr[0]), "betas": self.betas, "eps": self.eps,
                              "weight_decay": 0.0, "amsgrad": False,
                              "params": list(range(len(self.params)))}],
        }

    def load_state_dict(self, state: dict) -> None:
        """Moments and step counts from ``state_dict`` (this class's or ``torch.optim.Adam``'s);
        the learning rates stay this optimizer's own (the trainer sets them every epoch)."""
        saved = state["state"]
        for i, p in enumerate(self.params):
            if i not in saved:  # torch's Adam before its first step: no state yet
                continue
            mine = self.state[p]
            for key in ("exp_avg", "exp_avg_sq"):
                mine[key] = saved[i][key].to(p.device, p.dtype).clone()
            step = torch.as_tensor(saved[i]["step"], dtype=torch.float32)
            mine["step"] = step.to(p.device).clone()
