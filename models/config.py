"""Model configuration in the experiment log's notation, and ``build_model``.

The log writes a model as latent sizes per stochastic layer and hidden widths per layer, e.g. a
1-layer VAE ``z=[2] h=[64, 64, 32, 32]`` or a 2-layer HVAE ``z=[2, 2] h=[[64, 64], [32, 32]]``.
``hidden`` may be nested (one block per stochastic layer) or, where unambiguous, flat: a flat
list is the single block of a 1-layer model, and for L > 1 layers it is split into L equal
blocks (``z=[2, 2] h=[64, 64, 32, 32]`` means ``[[64, 64], [32, 32]]``, as in the log's
``[64, 64, 2, 32, 32, 2]``); a flat list whose length L does not divide is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

MAX_LAYERS = 8


def normalize_hidden(latents: Sequence[int], hidden: Sequence) -> tuple[tuple[int, ...], ...]:
    """Hidden widths as one tuple per stochastic layer; accepts the nested or the flat form."""
    n_layers = len(latents)
    hidden = list(hidden)
    if all(isinstance(h, (list, tuple)) for h in hidden) and hidden:
        blocks = [tuple(int(w) for w in block) for block in hidden]
        if len(blocks) != n_layers:
            raise ValueError(
                f"hidden has {len(blocks)} blocks but latents has {n_layers} layers: {hidden!r}"
            )
    elif all(isinstance(h, int) and not isinstance(h, bool) for h in hidden):
        if n_layers == 1:
            blocks = [tuple(hidden)]
        elif len(hidden) % n_layers == 0 and hidden:
            size = len(hidden) // n_layers
            blocks = [tuple(hidden[i * size : (i + 1) * size]) for i in range(n_layers)]
        else:
            raise ValueError(
                f"flat hidden {hidden!r} is ambiguous for {n_layers} stochastic layers; "
                "give one list of widths per layer, e.g. [[64, 64], [32, 32]]"
            )
    else:
        raise ValueError(f"hidden must be a list of ints or a list of lists of ints: {hidden!r}")
    for block in blocks:
        if any(w <= 0 for w in block):
            raise ValueError(f"hidden widths must be positive: {hidden!r}")
    return tuple(blocks)


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a model's architecture (not its training). The trial
    configuration (``study.spec.config.TrialConfig``) holds the defaults; this is derived from it.

    x_dim: data dimensions D.
    kind: a registered model kind (``models.registry.KINDS``): ``vae`` (one stochastic layer),
        ``hvae`` (LadderVAE-style, 1..8 layers), ``avae`` (auxiliary VAE).
    latents: latent size per stochastic layer, bottom (nearest x) first.
    hidden: hidden widths per layer (see module docstring).
    likelihood: ``gaussian`` (continuous data) or ``bernoulli`` (binarised images).
    variance: Gaussian output std ``learned`` (floored at ``min_output_std``) or ``fixed`` at
        ``output_std`` (data units).
    activation: the hidden layers' nonlinearity (``models.ensemble.ACTIVATIONS``).
    options: the kind's own settings (``models.registry.ModelKind.settings``) as (name, value)
        pairs; a model reads them with ``models.registry.option(config, name)``.
    latent_min_std: floor of every latent Gaussian's std (numerical safety, not a setting).
    """

    x_dim: int
    kind: str
    latents: tuple[int, ...]
    hidden: tuple[tuple[int, ...], ...]
    likelihood: Literal["gaussian", "bernoulli"]
    variance: Literal["learned", "fixed"]
    output_std: float
    min_output_std: float
    activation: str
    options: tuple[tuple[str, Any], ...] = ()
    latent_min_std: float = field(default=1e-4)

    def __post_init__(self) -> None:
        object.__setattr__(self, "latents", tuple(int(z) for z in self.latents))
        object.__setattr__(self, "hidden", normalize_hidden(self.latents, self.hidden))
        if self.x_dim <= 0:
            raise ValueError(f"x_dim must be positive, got {self.x_dim}")
        if not 1 <= len(self.latents) <= MAX_LAYERS or any(z <= 0 for z in self.latents):
            raise ValueError(f"latents must be 1..{MAX_LAYERS} positive sizes, got {self.latents}")
        if self.likelihood not in ("gaussian", "bernoulli"):
            raise ValueError(f"unknown likelihood {self.likelihood!r}; known: gaussian, bernoulli")

    @property
    def n_layers(self) -> int:
        return len(self.latents)
