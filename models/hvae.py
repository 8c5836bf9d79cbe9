"""Hierarchical VAE with LadderVAE-style top-down inference (Sønderby et al. 2016), and the VAE.

Layers are numbered bottom-up: z1 is nearest the data, zL is the top.

Inference: a deterministic bottom-up path d_l = MLP_l(d_{l-1}) (d_0 = x) gives each layer a
Gaussian q^(x)_l from d_l. The top-down pass then samples zL ~ q(zL|x) = q^_L, and for
l = L-1..1 combines q^_l with the conditional prior p(z_l | z_{l+1}) by precision weighting:
q(z_l | z_{l+1}, x) proportional to q^_l * p(z_l | z_{l+1}), so each posterior is conditioned on
the layer above.

Generation: zL ~ N(0, I); z_l ~ p(z_l | z_{l+1}) = N(mu(z_{l+1}), sigma(z_{l+1})), a Gaussian
conditional prior; x ~ p(x | z1).

Widths mirror: block l of ``hidden`` is the bottom-up MLP of layer l, and reversed it is the
top-down MLP into layer l (for z1: the decoder to x). A 1-layer model with hidden [64, 64, 32, 32]
is x-64-64-32-32-z and z-32-32-64-64-x.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

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
from .distributions import DiagonalGaussian, precision_weighted
from .ensemble import EnsembleMLP
from .networks import hvae_networks


class HVAE(LatentVariableModel):
    """L stochastic layers, top-down inference, an ensemble of ``len(seeds)`` members."""

    def __init__(self, config: ModelConfig, seeds: Sequence[int]) -> None:
        super().__init__(config, seeds)
        E, act, floor = self.n_members, config.activation, config.latent_min_std
        nets = hvae_networks(config)  # the shapes, in the order the weights are initialised
        self.up = nn.ModuleList(EnsembleMLP.of(E, n, act) for n in nets["up"])
        self.q_heads = nn.ModuleList(GaussianHead.of(E, n, act, floor) for n in nets["q_heads"])
        # p_heads[l] is p(z_l | z_{l+1}) for l = 0..L-2 (0-indexed, bottom first).
        self.p_heads = nn.ModuleList(GaussianHead.of(E, n, act, floor) for n in nets["p_heads"])
        self.decoder = EnsembleMLP.of(E, nets["decoder"][0], act)
        self._finish_init()

    def _top_prior(self, like: Tensor) -> DiagonalGaussian:
        d = self.config.latents[-1]
        zeros = like.new_zeros(1, 1, 1, d)
        return DiagonalGaussian(zeros, torch.ones_like(zeros))

    def forward(
        self,
        x: Tensor,
        n_samples: int = 1,
        kl: KLEstimator = "analytic",
        prior_layers: int = 0,
        use_mean: bool = False,
        units: bool = False,
    ) -> ForwardPass:
        """Encode and decode ``x`` (``[B, D]`` or ``[E, B, D]``) with ``n_samples`` per point.

        prior_layers: k >= 0; the k lowest layers take the mean of their conditional prior
            p(z_l | z_{l+1}) instead of a posterior sample and contribute no KL term (Havtorn et
            al. 2021's L>k). 0 is the ordinary pass.
        use_mean: take posterior means instead of samples (deterministic; for embeddings).
        units: also return the per-unit closed-form KL of every layer (``kl_units``).
        """
        L = self.config.n_layers
        if not 0 <= prior_layers <= L:
            raise ValueError(f"prior_layers must be in 0..{L}, got {prior_layers}")
        x = self.ensemble_input(x)
        E, B = x.shape[0], x.shape[1]
        h, q_hat = x, []
        for block, head in zip(self.up, self.q_heads):
            h = block(h)
            g = head(h)
            q_hat.append(DiagonalGaussian(g.mean.unsqueeze(1), g.std.unsqueeze(1)))  # [E,1,B,d]

        kls: list[Tensor] = [x.new_zeros(0)] * L
        zs: list[Tensor] = [x.new_zeros(0)] * L
        per_unit: list[Tensor] = [x.new_zeros(0)] * L
        # the noise of every sampled layer, [E, S, B, d_l] each: one draw per member
        sampled = [] if use_mean else list(range(prior_layers, L))
        eps = dict(zip(sampled, self.randn(*[(n_samples, B, self.config.latents[l])
                                             for l in sampled])))
        z_above: Tensor | None = None
        for l in reversed(range(L)):
            shape = (E, n_samples, B, self.config.latents[l])
            prior = self._top_prior(x) if z_above is None else self.p_heads[l](z_above)
            if l < prior_layers:
                z = prior.mean.expand(shape)
                kls[l] = x.new_zeros(shape[:-1])
                per_unit[l] = x.new_zeros(shape)
            else:
                q = q_hat[l] if l == L - 1 else precision_weighted(q_hat[l], prior)
                z = q.mean.expand(shape) if use_mean else q.rsample(shape, eps[l])
                kls[l] = kl_term(q, prior, z, kl)
                if units:
                    per_unit[l] = kl_units(q, prior, z)
            zs[l] = z
            z_above = z

        px_params = self.decoder(zs[0])
        log_px_z = self.likelihood.log_prob(x.unsqueeze(1), px_params)
        return ForwardPass(log_px_z, kls, zs, px_params, list(self.layer_names),
                           per_unit if units else None)

    def top_posterior(self, x: Tensor) -> DiagonalGaussian:
        """q(zL | x) of the top layer, mean and std ``[E, B, d_L]`` (the bottom-up path only)."""
        h = self.ensemble_input(x)
        for block in self.up:
            h = block(h)
        return self.q_heads[-1](h)

    def sample(self, n: int) -> GenerativeSample:
        """``n`` ancestral samples per member from zL ~ N(0, I) down to x (each member's
        draws from its own stream)."""
        eps = self.randn(*[(n, d) for d in reversed(self.config.latents)])  # top first
        z = eps[0]
        zs = [z]
        for l, e in zip(reversed(range(self.config.n_layers - 1)), eps[1:]):
            z = self.p_heads[l](z).rsample(eps=e)
            zs.insert(0, z)
        params = self.decoder(z)
        return GenerativeSample(zs, self.likelihood.mean(params),
                                self.likelihood.sample(params, self.noise))

    def posterior_means(self, x: Tensor) -> list[Tensor]:
        """Per layer (bottom first) the posterior mean ``[E, B, d_l]``, each layer conditioned on
        the posterior means of the layers above."""
        fp = self.forward(x, n_samples=1, use_mean=True)
        return [z.squeeze(1) for z in fp.z]


class VAE(HVAE):
    """One stochastic layer: q(z|x) from an MLP encoder, z ~ N(0, I), p(x|z) from an MLP
    decoder; its layer is named ``z`` (registered as the kind ``vae``)."""
