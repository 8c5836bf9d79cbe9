"""A model's networks as plain shapes, without PyTorch: what the built-in kinds are built from
(``models.hvae``, ``models.avae``) and what ``models.size`` counts (parameters, FLOPs,
training memory) without building a model, so a study's driver sizes its trials without
importing PyTorch.

A kind registers its plan as ``ModelKind.networks`` (``models.registry``): a function of the
``ModelConfig`` giving the kind's networks by attribute name (``"up"``, ``"decoder"``, ...),
in the order the model registers them, which is the order its members' weights are
initialised in (``models.ensemble.init_members``). A kind without a plan is sized on
PyTorch's ``meta`` device instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import ModelConfig


@dataclass(frozen=True)
class Network:
    """One ensemble MLP: ``in_features -> hidden[0] -> ... -> hidden[-1] (-> out_features)``,
    an activation after every hidden layer (``models.ensemble.EnsembleMLP``). ``out_features``
    None: it ends on its last hidden layer's activation. ``per_sample``: it runs once per
    importance sample (its input depends on a sampled latent), else once per data point."""

    in_features: int
    hidden: tuple[int, ...]
    out_features: int | None
    per_sample: bool

    @property
    def width(self) -> int:
        """Units of its output."""
        if self.out_features is not None:
            return self.out_features
        return self.hidden[-1] if self.hidden else self.in_features

    def linears(self) -> list[tuple[int, int]]:
        """(in, out) of each of its linear layers, input first."""
        widths = [self.in_features, *self.hidden]
        if self.out_features is not None:
            widths.append(self.out_features)
        return list(zip(widths[:-1], widths[1:]))


#: a kind's networks by the attribute they are built into, in the order the model registers them
Plan = dict[str, list[Network]]


def plan(config: ModelConfig) -> Plan | None:
    """The networks of ``config``'s kind (its registered ``networks``), None for a kind that
    registers none."""
    from .registry import load, model_kind

    where = model_kind(config.kind).networks
    return None if where is None else load(where)(config)


def output_params(config: ModelConfig) -> int:
    """Numbers the decoder emits per data point: a Gaussian with a learned std 2 per dimension
    (mean and std), otherwise 1 (the mean, or a Bernoulli's logit)."""
    learned = config.likelihood == "gaussian" and config.variance == "learned"
    return (2 if learned else 1) * config.x_dim


def hvae_networks(config: ModelConfig) -> Plan:
    """The HVAE's (and the VAE's) networks: per layer l, the bottom-up block ``hidden[l]`` and
    its Gaussian head ``q^_l`` (run once per point); the conditional priors ``p(z_l | z_{l+1})``
    through the block above reversed, and the decoder through ``hidden[0]`` reversed (once per
    sample). A Gaussian head emits a mean and a std per latent dimension."""
    up, heads, width = [], [], config.x_dim
    for d, block in zip(config.latents, config.hidden):
        up.append(Network(width, tuple(block), None, per_sample=False))
        width = up[-1].width
        heads.append(Network(width, (), 2 * d, per_sample=False))
    priors = [Network(config.latents[l + 1], tuple(reversed(config.hidden[l + 1])),
                      2 * config.latents[l], per_sample=True)
              for l in range(config.n_layers - 1)]
    decoder = Network(config.latents[0], tuple(reversed(config.hidden[0])),
                      output_params(config), per_sample=True)
    return {"up": up, "q_heads": heads, "p_heads": priors, "decoder": [decoder]}


def avae_networks(config: ModelConfig) -> Plan:
    """The AVAE's networks, each through ``hidden[0]`` (the decoder reversed): ``q(a|x)`` once
    per point; ``q(z|a,x)``, ``p(a|x,z)`` and the decoder once per sample. ``a`` has the kind's
    ``aux_latents`` dimensions (unset: as z)."""
    from .registry import option

    D, dz = config.x_dim, config.latents[0]
    da = option(config, "aux_latents") or dz
    block = tuple(config.hidden[0])
    return {"q_a": [Network(D, block, 2 * da, per_sample=False)],
            "q_z": [Network(D + da, block, 2 * dz, per_sample=True)],
            "p_a": [Network(D + dz, block, 2 * da, per_sample=True)],
            "decoder": [Network(dz, tuple(reversed(block)), output_params(config),
                                per_sample=True)]}
