"""What every latent-variable model returns, and the behaviour all of them share.

Shapes: E ensemble members, S samples per data point (importance samples), B data points,
D data dimensions, d_l latent dimensions of layer l. All log-densities are in nats.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from .config import ModelConfig
from .distributions import DiagonalGaussian, gaussian_kl, gaussian_kl_units, positive_std
from .ensemble import EnsembleLinear, EnsembleMLP, MemberNoise, init_members
from .likelihoods import make_likelihood
from .networks import Network
from .registry import check_config, model_kind

KLEstimator = Literal["analytic", "sampled"]


@dataclass
class GenerativeSample:
    """Ancestral samples: ``z`` per layer ``[E, n, d_l]`` (bottom first), ``x_mean`` and
    ``x`` ``[E, n, D]`` (the likelihood's mean and a draw from it)."""

    z: list[Tensor]
    x_mean: Tensor
    x: Tensor


@dataclass
class ForwardPass:
    """One pass of S samples per data point through an ensemble model.

    log_px_z: ``[E, S, B]`` log p(x | z) at each sample.
    kl: per stochastic layer ``[E, S, B]``: the closed-form KL (``analytic``) or
        log q - log p at the sample (``sampled``); layers in ``layer_names`` order, bottom first.
        ``log_px_z - sum(kl)`` is the log importance weight (exactly so for ``sampled``).
    z: per layer, the latent sample ``[E, S, B, d_l]``.
    px_params: ``[E, S, B, P]`` the output likelihood's parameters
        (``models.networks.output_params``).
    kl_units: with ``forward(..., units=True)``: per layer, the closed-form KL of each latent
        unit ``[E, S, B, d_l]`` (nats) between the layer's posterior and its prior given the
        samples of the layers above; zero for layers taken from the prior (``prior_layers``).
    """

    log_px_z: Tensor
    kl: list[Tensor]
    z: list[Tensor]
    px_params: Tensor
    layer_names: list[str]
    kl_units: list[Tensor] | None = None

    @property
    def kl_total(self) -> Tensor:
        """``[E, S, B]`` sum of the per-layer KL terms."""
        return torch.stack(self.kl).sum(0)

    @property
    def log_weight(self) -> Tensor:
        """``[E, S, B]`` log p(x | z) - KL."""
        return self.log_px_z - self.kl_total


def kl_units(q: DiagonalGaussian, p: DiagonalGaussian, z: Tensor) -> Tensor:
    """Closed-form per-unit KL(q || p) broadcast to the samples' shape ``[E, S, B, d]``."""
    return gaussian_kl_units(q, p).expand(z.shape)


def kl_term(
    q: DiagonalGaussian, p: DiagonalGaussian, z: Tensor, estimator: KLEstimator
) -> Tensor:
    """KL(q || p) per sample ``[E, S, B]``: closed form, or log q(z) - log p(z) at ``z``."""
    if estimator == "analytic":
        return gaussian_kl(q, p).expand(z.shape[:-1])
    if estimator == "sampled":
        return q.log_prob(z) - p.log_prob(z)
    raise ValueError(f"unknown KL estimator {estimator!r}; known: analytic, sampled")


class GaussianHead(nn.Module):
    """Features ``[E, *, in]`` -> DiagonalGaussian over ``d`` dims (std floored at ``min_std``)."""

    def __init__(self, n_members: int, in_features: int, hidden: Sequence[int], d: int,
                 activation: str, min_std: float) -> None:
        super().__init__()
        self.net = EnsembleMLP(n_members, in_features, hidden, 2 * d, activation)
        self.min_std = min_std

    @classmethod
    def of(cls, n_members: int, net: Network, activation: str, min_std: float) -> GaussianHead:
        """The head ``net`` describes (``models.networks``: its output is a mean and a std per
        dimension), with ``n_members`` members."""
        if net.out_features is None or net.out_features % 2:
            raise ValueError(f"a Gaussian head emits a mean and a std per dimension: {net}")
        return cls(n_members, net.in_features, net.hidden, net.out_features // 2, activation,
                   min_std)

    def forward(self, h: Tensor) -> DiagonalGaussian:
        mean, raw = self.net(h).chunk(2, dim=-1)
        return DiagonalGaussian(mean, positive_std(raw, self.min_std))


class LatentVariableModel(nn.Module):
    """Base of every model kind: an ensemble of E members, one per seed.

    Subclasses implement ``forward(x, n_samples, kl, prior_layers, use_mean) -> ForwardPass``,
    ``sample(n)``, ``posterior_means(x)`` and ``top_posterior(x)``. What a kind is (how many
    layers it may have, whether it is hierarchical, its layers' names) is registered in
    ``models.registry.KINDS`` and available here as ``hierarchical`` and ``layer_names``.

    Randomness: every random number of a model (reparameterisation noise, prior draws, draws of
    x) comes from ``noise``, one generator per member seeded by that member's seed (``randn``),
    never from torch's global generator; so member e's draws, like its initial weights, are
    the same whatever the ensemble size or the other seeds. ``noise`` moves with the model
    (``.to(device)``); its state is not in ``state_dict`` (``noise.get_state`` /
    ``noise.set_state``: the trainer's checkpoints carry it).
    """

    def __init__(self, config: ModelConfig, seeds: Sequence[int]) -> None:
        super().__init__()
        if len(seeds) < 1:
            raise ValueError("an ensemble needs at least one seed")
        check_config(config)
        self.config = config
        kind = model_kind(config.kind)
        self.hierarchical = kind.hierarchical
        self.layer_names = kind.layer_names(config.n_layers)
        self.seeds = [int(s) for s in seeds]
        self._active: list[int] | None = None
        self.likelihood = make_likelihood(config)
        self.noise = MemberNoise(self.seeds)

    def _finish_init(self) -> None:
        init_members(self, self.seeds)
        self.noise.to(self.device)  # built under ``with torch.device(...)``: that device

    def _apply(self, fn, recurse: bool = True):
        """``.to()``, ``.cuda()``, ...: the noise streams follow the parameters' device."""
        out = super()._apply(fn, recurse)
        self.noise.to(self.device)
        return out

    @property
    def n_members(self) -> int:
        """E, the members a forward pass computes: every seed's, or those ``only`` selects."""
        return len(self.seeds) if self._active is None else len(self._active)

    @contextlib.contextmanager
    def only(self, members: Sequence[int] | None) -> Iterator[None]:
        """Inside the block the model is the ensemble of ``members`` (indices into ``seeds``,
        ascending): inputs and outputs are ``[len(members), ...]``, member ``members[i]``'s
        parameters and noise stream serve row i, and the other members are neither computed
        nor given a gradient, nor draw noise. A member's numbers are those it has in the full
        ensemble (the trainer computes only the members still training). ``None``: all."""
        if members is not None and list(members) == list(range(len(self.seeds))):
            members = None
        idx = None if members is None else \
            torch.as_tensor(list(members), dtype=torch.long, device=self.device)
        linears = [m for m in self.modules() if isinstance(m, EnsembleLinear)]
        saved = self._active, [m.active for m in linears]
        saved_lik = getattr(self.likelihood, "active", None)
        self._active = self.noise.active = None if members is None else [int(e) for e in members]
        for m in linears:
            m.active = idx
        self.likelihood.active = idx
        try:
            yield
        finally:
            self._active = self.noise.active = saved[0]
            for m, before in zip(linears, saved[1]):
                m.active = before
            self.likelihood.active = saved_lik

    def randn(self, *shapes: Sequence[int]) -> list[Tensor]:
        """Standard normal noise ``[E, *shape]`` for each of ``shapes`` (without E), in the
        parameters' dtype: member e's slice from member e's own stream, one draw per member
        for all the shapes together."""
        return self.noise.normal(shapes, next(self.parameters()).dtype)

    def ensemble_input(self, x: Tensor) -> Tensor:
        """``[B, D]`` (shared by all members) or ``[E, B, D]`` -> ``[E, B, D]``."""
        if x.dim() == 2:
            return x.unsqueeze(0).expand(self.n_members, *x.shape)
        if x.dim() == 3 and x.shape[0] == self.n_members:
            return x
        raise ValueError(
            f"expected x of shape [B, {self.config.x_dim}] or [{self.n_members}, B, "
            f"{self.config.x_dim}], got {tuple(x.shape)}"
        )

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def widest(self) -> int:
        """The widest activation per data point and sample (sizes memory-bounded chunks)."""
        widths = [self.config.x_dim * 2]
        for m in self.modules():
            if isinstance(m, EnsembleLinear):
                widths.append(m.out_features)
        return max(widths)

