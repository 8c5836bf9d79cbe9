"""Auxiliary VAE: the unsupervised auxiliary deep generative model of Maaløe et al. (2016).

Generative model: z ~ N(0, I), x ~ p(x | z), a ~ p(a | x, z).
Inference model:  a ~ q(a | x), z ~ q(z | a, x).

The auxiliary variable a leaves the marginal p(x) unchanged but makes the marginal posterior
q(z | x) = integral q(a|x) q(z|a,x) da a non-Gaussian mixture. The bound is

    ELBO = E_q[ log p(x|z) + log p(z) + log p(a|x,z) - log q(a|x) - log q(z|a,x) ],

reported as two layers: ``z`` (KL(q(z|a,x) || p(z)), analytic or sampled) and ``a``
(log q(a|x) - log p(a|x,z) at the sample; it has no closed form, so it is always sampled).
All four networks use the block ``hidden[0]`` (the decoder reversed).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import (
    ForwardPass,
    GaussianHead,
    GenerativeSample,
    KLEstimator,
    LatentVariableModel,
    kl_term,
    kl_units,
)
from .config import ModelConfig
from .distributions import DiagonalGaussian
from .ensemble import EnsembleMLP
from .networks import avae_networks


class AVAE(LatentVariableModel):
    """One stochastic layer z (``latents[0]`` dims) and an auxiliary a (its setting
    ``aux_latents`` dims, registered in ``models.registry``)."""

    def __init__(self, config: ModelConfig, seeds: Sequence[int]) -> None:
        super().__init__(config, seeds)
        E, act, floor = self.n_members, config.activation, config.latent_min_std
        nets = avae_networks(config)  # the shapes, in the order the weights are initialised
        self.q_a = GaussianHead.of(E, nets["q_a"][0], act, floor)
        self.q_z = GaussianHead.of(E, nets["q_z"][0], act, floor)
        self.p_a = GaussianHead.of(E, nets["p_a"][0], act, floor)
        self.decoder = EnsembleMLP.of(E, nets["decoder"][0], act)
        self.aux_dim = nets["q_a"][0].width // 2
        self._finish_init()

    def forward(
        self,
        x: Tensor,
        n_samples: int = 1,
        kl: KLEstimator = "analytic",
        prior_layers: int = 0,
        use_mean: bool = False,
        units: bool = False,
    ) -> ForwardPass:
        """As ``HVAE.forward``; ``prior_layers`` must be 0 (an AVAE has no latent hierarchy).
        The per-unit KL of ``a`` is KL(q(a|x) || p(a|x,z)) at the sampled z."""
        if prior_layers != 0:
            raise ValueError("an AVAE has no latent hierarchy: prior_layers must be 0")
        x = self.ensemble_input(x)
        E, B, D = x.shape
        S = n_samples
        qa_x = self.q_a(x)
        qa = DiagonalGaussian(qa_x.mean.unsqueeze(1), qa_x.std.unsqueeze(1))  # [E,1,B,da]
        # the noise of a and z, [E, S, B, d] each: one draw per member
        eps_a, eps_z = (None, None) if use_mean else \
            self.randn((S, B, self.aux_dim), (S, B, self.config.latents[0]))
        a = qa.mean.expand(E, S, B, self.aux_dim) if use_mean else \
            qa.rsample((E, S, B, self.aux_dim), eps_a)
        xs = x.unsqueeze(1).expand(E, S, B, D)
        qz = self.q_z(torch.cat([xs, a], dim=-1))
        z = qz.mean if use_mean else qz.rsample(eps=eps_z)
        prior = DiagonalGaussian(z.new_zeros(1, 1, 1, z.shape[-1]), z.new_ones(1, 1, 1, z.shape[-1]))
        kl_z = kl_term(qz, prior, z, kl)
        pa = self.p_a(torch.cat([xs, z], dim=-1))
        kl_a = qa.log_prob(a) - pa.log_prob(a)
        px_params = self.decoder(z)
        log_px_z = self.likelihood.log_prob(x.unsqueeze(1), px_params)
        per_unit = [kl_units(qz, prior, z), kl_units(qa, pa, a)] if units else None
        return ForwardPass(log_px_z, [kl_z, kl_a], [z, a], px_params, list(self.layer_names),
                           per_unit)

    def top_posterior(self, x: Tensor) -> DiagonalGaussian:
        """q(z | a, x) at a = E[a | x], mean and std ``[E, B, d_z]``."""
        x = self.ensemble_input(x)
        return self.q_z(torch.cat([x, self.q_a(x).mean], dim=-1))

    def sample(self, n: int) -> GenerativeSample:
        """``n`` samples per member: z ~ N(0, I), x ~ p(x|z), a ~ p(a|x,z); z listed as [z, a]
        (each member's draws from its own stream)."""
        z, eps_a = self.randn((n, self.config.latents[0]), (n, self.aux_dim))
        params = self.decoder(z)
        x = self.likelihood.sample(params, self.noise)
        a = self.p_a(torch.cat([x, z], dim=-1)).rsample(eps=eps_a)
        return GenerativeSample([z, a], self.likelihood.mean(params), x)

    def posterior_means(self, x: Tensor) -> list[Tensor]:
        """``[E, B, d]`` means of q(z | a=E[a|x], x) and of q(a | x)."""
        fp = self.forward(x, n_samples=1, use_mean=True)
        return [v.squeeze(1) for v in fp.z]
