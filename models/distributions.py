"""Closed-form densities and KL divergences for diagonal Gaussians and Bernoullis, in nats.

All functions broadcast over leading dimensions and sum over the last (event) dimension, so
``[E, S, B, D]`` inputs give ``[E, S, B]`` outputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class DiagonalGaussian:
    """N(mean, diag(std^2)); ``mean`` and ``std`` broadcast to ``[..., D]``."""

    mean: Tensor
    std: Tensor

    def rsample(self, shape: Sequence[int] | None = None, eps: Tensor | None = None) -> Tensor:
        """Reparameterised sample ``mean + std * eps``, of the parameters' shape or broadcast to
        ``shape``. ``eps``: the standard normal noise to use (an ensemble model passes its
        members' own draws, ``MemberNoise.normal``); None: drawn from torch's global generator."""
        base = torch.broadcast_shapes(self.mean.shape, self.std.shape)
        shape = base if shape is None else torch.broadcast_shapes(base, tuple(shape))
        if eps is None:
            eps = torch.randn(shape, dtype=self.mean.dtype, device=self.mean.device)
        elif torch.broadcast_shapes(shape, eps.shape) != torch.Size(shape):
            raise ValueError(f"noise of shape {tuple(eps.shape)} for a sample of {tuple(shape)}")
        return self.mean + self.std * eps

    def log_prob(self, x: Tensor) -> Tensor:
        """log N(x; mean, std^2) summed over the last dimension (nats)."""
        return gaussian_log_prob(x, self.mean, self.std)


def gaussian_log_prob(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """sum_d log N(x_d; mean_d, std_d^2) in nats; shapes broadcast, last dim summed."""
    z = (x - mean) / std
    return (-0.5 * (z * z + LOG_2PI) - torch.log(std)).sum(-1)


def precision_weighted(a: DiagonalGaussian, b: DiagonalGaussian) -> DiagonalGaussian:
    """The normalised product of two Gaussians (LadderVAE's posterior combination)."""
    prec_a, prec_b = a.std.pow(-2), b.std.pow(-2)
    var = 1.0 / (prec_a + prec_b)
    return DiagonalGaussian((a.mean * prec_a + b.mean * prec_b) * var, var.sqrt())


def gaussian_kl_units(q: DiagonalGaussian, p: DiagonalGaussian) -> Tensor:
    """KL(q || p) of each dimension of diagonal Gaussians (nats, the last dimension kept)."""
    var_ratio = (q.std / p.std) ** 2
    mean_term = ((q.mean - p.mean) / p.std) ** 2
    return 0.5 * (var_ratio + mean_term - 1.0 - torch.log(var_ratio))


def gaussian_kl(q: DiagonalGaussian, p: DiagonalGaussian) -> Tensor:
    """KL(q || p) for diagonal Gaussians, summed over the last dimension (nats)."""
    return gaussian_kl_units(q, p).sum(-1)


def bernoulli_log_prob(x: Tensor, logits: Tensor) -> Tensor:
    """sum_d log Bernoulli(x_d; sigmoid(logits_d)) in nats, for x in [0, 1]."""
    logits, x = torch.broadcast_tensors(logits, x)
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def positive_std(raw: Tensor, floor: float | Tensor) -> Tensor:
    """Map an unconstrained network output to a standard deviation ``floor + softplus(raw)``."""
    return floor + F.softplus(raw)


def inverse_positive_std(std: Tensor | float, floor: float) -> Tensor:
    """The raw value that ``positive_std`` maps to ``std`` (for initialisation and tests)."""
    s = torch.as_tensor(std, dtype=torch.get_default_dtype()) - floor
    return s + torch.log(-torch.expm1(-s))


def log_mean_exp(x: Tensor, dim: int) -> Tensor:
    """log(mean(exp(x))) along ``dim``, computed stably."""
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])
