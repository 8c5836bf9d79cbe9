"""Output likelihoods p(x | z): Gaussian (learned or fixed std) and Bernoulli.

A decoder emits ``models.networks.output_params`` numbers per data point; the likelihood turns
them into a distribution over x. ``log_prob`` is in nats, summed over the D data dimensions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from .distributions import bernoulli_log_prob, gaussian_log_prob, positive_std
from .ensemble import MemberNoise

VarianceMode = Literal["learned", "fixed"]

class Likelihood:
    """Interface: parameters ``[..., P]`` (``P = models.networks.output_params(config)``) ->
    distribution over ``x`` ``[..., D]``."""

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        """log p(x | params) summed over the last dimension (nats); shapes broadcast."""
        raise NotImplementedError

    def mean(self, params: Tensor) -> Tensor:
        raise NotImplementedError

    def sample(self, params: Tensor, noise: MemberNoise | None = None) -> Tensor:
        """A draw of x ``[..., D]``. ``noise``: the ensemble's per-member streams (``params``
        then ``[E, ...]``); None: torch's global generator."""
        raise NotImplementedError

    def std(self, params: Tensor) -> Tensor | None:
        """The learned output std ``[..., D]`` where there is one, else None."""
        return None


class GaussianLikelihood(Likelihood):
    """Diagonal Gaussian. ``variance="learned"``: std = ``min_output_std + softplus(raw)`` from the
    decoder; ``variance="fixed"``: std = ``output_std`` everywhere (e.g. 0.01 or 1.0)."""

    def __init__(self, variance: VarianceMode, output_std: float, min_output_std: float) -> None:
        if variance not in ("learned", "fixed"):
            raise ValueError(f"variance must be 'learned' or 'fixed', got {variance!r}")
        if output_std <= 0 or min_output_std < 0:
            raise ValueError(f"need output_std > 0 and min_output_std >= 0, got {output_std}, "
                             f"{min_output_std}")
        self.variance = variance
        self.output_std: float | Tensor = float(output_std)
        self.min_std: float | Tensor = float(min_output_std)
        #: the members a forward pass computes (``LatentVariableModel.only``); None: all
        self.active: Tensor | None = None

    def set_members(self, output_std: Sequence[float], min_output_std: Sequence[float],
                    device: torch.device | str = "cpu") -> None:
        """One fixed std and one floor per member (``[E]`` each, a pack of configurations):
        member e's rows use ``output_std[e]`` / ``min_output_std[e]``."""
        self.output_std = torch.as_tensor(output_std, dtype=torch.float32, device=device)
        self.min_std = torch.as_tensor(min_output_std, dtype=torch.float32, device=device)

    def _per_member(self, value: float | Tensor, like: Tensor) -> float | Tensor:
        """A setting for the rows of ``like`` (``[E, ...]``): the float, or the active
        members' values shaped ``[E, 1, ...]``."""
        if not torch.is_tensor(value):
            return value
        v = value if self.active is None else value[self.active]
        return v.to(like.dtype).view(-1, *[1] * (like.dim() - 1))

    def _mean_std(self, params: Tensor) -> tuple[Tensor, Tensor]:
        if self.variance == "learned":
            mean, raw = params.chunk(2, dim=-1)
            return mean, positive_std(raw, self._per_member(self.min_std, raw))
        std = self._per_member(self.output_std, params)
        if torch.is_tensor(std):
            return params, std.expand_as(params)
        return params, torch.full_like(params, std)

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        mean, std = self._mean_std(params)
        return gaussian_log_prob(x, mean, std)

    def mean(self, params: Tensor) -> Tensor:
        return self._mean_std(params)[0]

    def sample(self, params: Tensor, noise: MemberNoise | None = None) -> Tensor:
        mean, std = self._mean_std(params)
        eps = torch.randn_like(mean) if noise is None else \
            noise.normal([mean.shape[1:]], mean.dtype)[0]
        return mean + std * eps

    def std(self, params: Tensor) -> Tensor | None:
        return self._mean_std(params)[1] if self.variance == "learned" else None


class BernoulliLikelihood(Likelihood):
    """Independent Bernoulli per dimension, parameterised by logits (binarised images)."""

    def log_prob(self, x: Tensor, params: Tensor) -> Tensor:
        return bernoulli_log_prob(x, params)

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params)

    def sample(self, params: Tensor, noise: MemberNoise | None = None) -> Tensor:
        p = torch.sigmoid(params)
        if noise is None:
            return torch.bernoulli(p)
        return (noise.uniform([p.shape[1:]], p.dtype)[0] < p).to(p.dtype)


def make_likelihood(config) -> Likelihood:
    """The output likelihood a ``ModelConfig`` names."""
    if config.likelihood == "bernoulli":
        return BernoulliLikelihood()
    return GaussianLikelihood(config.variance, config.output_std, config.min_output_std)
