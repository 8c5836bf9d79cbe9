"""Adam for ensembles: every parameter is ``[E, ...]`` and member e steps with its own learning
rate ``lr[e]``.

The update is Adam's (Kingma & Ba 2015, as ``torch.optim.Adam`` without weight decay or
AMSGrad): PyTorch's fused Adam kernel (``torch._fused_adam_``, what ``Adam(fused=True)`` calls),
once for every run of consecutive members that share a learning rate (all members at once
when they all do; a pack's configuration otherwise), on those members' rows of each tensor.
Members share no state: member e's moments and update are slices e of per-parameter tensors,
and the kernel is element-wise, so a member steps bit for bit as it would alone. A member
whose gradients and moments are zero does not move (the update is 0 / (0 + eps)): the trainer
freezes a stopped member that way; a run with learning rate 0 is skipped (the trainer's
members that no longer train).

Why not ``torch.optim.Adam``: a learning rate per member (configurations that share shapes
train as one ensemble, each with its own learning rate), and start-up: the first
``torch.optim.Optimizer`` of a process imports ``torch._dynamo`` (2.4 s of CPU on this machine),
which every Ray worker paid before its first epoch.

``state_dict`` / ``load_state_dict`` use ``torch.optim.Adam``'s layout (``state``: per parameter
index ``step``, ``exp_avg``, ``exp_avg_sq``; ``param_groups``), so checkpoints written by either
load in either.
"""

from __future__ import annotations

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
        #: runs of consecutive members with one learning rate: (first, end, lr); a pack's
        #: configurations are consecutive, so a run is a configuration (or several)
        values = self.lr.cpu().tolist()
        self._runs: list[tuple[int, int, float]] = []
        start = 0
        for e in range(1, len(values) + 1):
            if e == len(values) or values[e] != values[start]:
                self._runs.append((start, e, values[start]))
                start = e

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
        torch._foreach_add_(steps, 1)  # the fused kernel reads the step counts, never adds
        whole = len(self._runs) == 1
        for first, end, lr in self._runs:
            if lr == 0.0 and not whole:  # members held still (the trainer's idle ones)
                continue

            def rows(ts: list[Tensor]) -> list[Tensor]:
                return ts if whole else [t[first:end] for t in ts]

            torch._fused_adam_(rows(params), rows(grads), rows(exp_avg), rows(exp_avg_sq), [],
                               steps, lr=lr, beta1=beta1, beta2=beta2, weight_decay=0.0,
                               eps=self.eps, amsgrad=False, maximize=False)

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
