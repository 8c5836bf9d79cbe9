"""Ensemble layers: E independent networks evaluated with one batched matmul.

Every parameter carries a leading member dimension E. Inputs are ``[E, *, in]`` (any number of
middle dimensions, e.g. ``[E, B, in]`` or ``[E, S, B, in]`` with S importance samples) and
outputs ``[E, *, out]``. Member e only ever touches slice e of the parameters and of the input,
so members share no computation, no gradient and no initialisation (see ``init_members``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
}


class EnsembleLinear(nn.Module):
    """Affine map per member: ``y[e] = x[e] @ weight[e] + bias[e]``.

    Parameters: ``weight`` ``[E, in, out]``, ``bias`` ``[E, 1, out]``.
    """

    def __init__(self, n_members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.n_members = n_members
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(n_members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(n_members, 1, out_features))
        with torch.no_grad():
            for member in range(n_members):
                self.init_member(member, generator=None)

    def init_member(self, member: int, generator: torch.Generator | None) -> None:
        """Initialise member ``member`` like ``nn.Linear`` does: U(-1/sqrt(in), 1/sqrt(in))."""
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
        self.weight[member].uniform_(-bound, bound, generator=generator)
        self.bias[member].uniform_(-bound, bound, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``[E, *, in]`` -> ``[E, *, out]``."""
        lead = x.shape[:-1]
        flat = x.reshape(self.n_members, -1, self.in_features)
        out = torch.baddbmm(self.bias, flat, self.weight)
        return out.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"members={self.n_members}, in={self.in_features}, out={self.out_features}"


class EnsembleMLP(nn.Sequential):
    """``in -> hidden[0] -> ... -> hidden[-1] (-> out)`` with an activation after every hidden layer.

    With ``out_features=None`` the MLP ends on the activation of the last hidden layer (a feature
    extractor); otherwise it ends on a plain linear layer. ``hidden=[]`` with an output is a single
    affine map; with no output it is the identity.
    """

    def __init__(
        self,
        n_members: int,
        in_features: int,
        hidden: Sequence[int],
        out_features: int | None = None,
        activation: str = "silu",
    ) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; known: {sorted(ACTIVATIONS)}")
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [EnsembleLinear(n_members, width, h), ACTIVATIONS[activation]()]
            width = h
        if out_features is not None:
            layers.append(EnsembleLinear(n_members, width, out_features))
            width = out_features
        super().__init__(*layers)
        self.out_features = width


def init_members(module: nn.Module, seeds: Sequence[int]) -> None:
    """Re-initialise every ``EnsembleLinear`` in ``module`` so member e depends only on ``seeds[e]``.

    Layers are visited in ``module.modules()`` order with one generator per member, so the member
    built from seed s has the same initial weights whatever the ensemble size or the other seeds.
    """
    linears = [m for m in module.modules() if isinstance(m, EnsembleLinear)]
    with torch.no_grad():
        for member, seed in enumerate(seeds):
            generator = torch.Generator().manual_seed(int(seed))
            for layer in linears:
                layer.init_member(member, generator)
