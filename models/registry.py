"""Model kinds by name, known without importing PyTorch.

A new kind is one file defining a ``LatentVariableModel`` subclass and one registration line in
``KINDS`` below: its class (``module:Class``, imported when a model is built) and what the rest
of the project needs to know about it before any model exists (the trial configuration checks
``max_layers``; evaluation computes Havtorn et al.'s LLR>k only for ``hierarchical`` kinds;
metric names use ``layer_names``), and the settings of its own (``settings``: each becomes a
trial setting, a ``python -m study.train`` flag and a Parquet ``config.`` column, and reaches the
model as ``option(config, name)``); optionally its networks' shapes (``networks``,
``models.networks``), so that it is sized without PyTorch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import ModelConfig


@dataclass(frozen=True)
class KindSetting:
    """A setting of one model kind: its type (``int``, ``float``, ``str`` or ``bool``;
    ``optional``: None allowed, meaning "the model's own choice"), default, one line of help
    and bounds (``ge``, ``gt``, ``le``, ``lt``, as for a trial setting)."""

    type: type
    default: Any
    help: str
    optional: bool = False
    bounds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelKind:
    """What a model kind is. ``cls``: ``"module:Class"``; ``max_layers``: stochastic layers it
    can have; ``hierarchical``: ``forward(prior_layers=k)`` (L>k) is defined for 0 <= k < layers
    (a 1-layer model of such a kind has only k = 0, the ELBO);
    ``single_layer_name``: the name of its only layer when it has one (else z1..zL);
    ``networks``: ``"module:function"``, its networks' shapes from a ``ModelConfig`` without
    PyTorch (``models.networks``: what ``models.size`` counts; None: sized on the ``meta``
    device, which imports PyTorch)."""

    cls: str
    max_layers: int
    hierarchical: bool
    extra_layers: tuple[str, ...] = ()
    single_layer_name: str | None = None
    settings: dict[str, KindSetting] = field(default_factory=dict)
    networks: str | None = None

    def layer_names(self, n_layers: int) -> list[str]:
        """The layers' names, bottom first, as metric names use them (e.g. ``kl_z2``)."""
        base = [self.single_layer_name] if self.single_layer_name and n_layers == 1 else \
            [f"z{i + 1}" for i in range(n_layers)]
        return base + list(self.extra_layers)


KINDS: dict[str, ModelKind] = {
    "vae": ModelKind("models.hvae:VAE", max_layers=1, hierarchical=True, single_layer_name="z",
                     networks="models.networks:hvae_networks"),
    "hvae": ModelKind("models.hvae:HVAE", max_layers=8, hierarchical=True,
                      networks="models.networks:hvae_networks"),
    "avae": ModelKind("models.avae:AVAE", max_layers=1, hierarchical=False, extra_layers=("a",),
                      single_layer_name="z", settings={"aux_latents": KindSetting(
                          int, None, "AVAE: auxiliary variable size (unset: as z)", optional=True,
                          bounds={"ge": 1})}, networks="models.networks:avae_networks"),
}


def model_kinds() -> tuple[str, ...]:
    return tuple(KINDS)


def load(where: str) -> Any:
    """What ``"module:name"`` names (a kind's ``cls`` or ``networks``), its module imported."""
    module, name = where.split(":")
    return getattr(importlib.import_module(module), name)


def model_kind(kind: str) -> ModelKind:
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(KINDS)}") from None


def kind_settings() -> dict[str, tuple[str, KindSetting]]:
    """Every kind's own settings: name -> (the kind, the setting). A name is one kind's only."""
    out: dict[str, tuple[str, KindSetting]] = {}
    for kind, info in KINDS.items():
        for name, setting in info.settings.items():
            if name in out:
                raise ValueError(f"model kinds {out[name][0]} and {kind} both declare a setting "
                                 f"{name!r}; give each its own name")
            out[name] = (kind, setting)
    return out


def option(config: ModelConfig, name: str) -> Any:
    """The kind's own setting ``name`` of ``config``: as given, else its declared default."""
    given = dict(config.options)
    if name in given:
        return given[name]
    declared = model_kind(config.kind).settings
    if name not in declared:
        raise KeyError(f"a {config.kind} has no setting {name!r}; it has: "
                       f"{', '.join(declared) or 'none'}")
    return declared[name].default


def check_config(config: ModelConfig) -> None:
    """Raise ``ValueError`` if the kind's model cannot be built from ``config``."""
    info = model_kind(config.kind)
    if config.n_layers > info.max_layers:
        layers = "one stochastic layer" if info.max_layers == 1 else \
            f"at most {info.max_layers} stochastic layers"
        raise ValueError(f"a {config.kind} has {layers}, got latents={list(config.latents)}")
