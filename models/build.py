"""A model from its configuration: the kind's class (``models.registry``) imported and built."""

from __future__ import annotations

from collections.abc import Sequence

from .base import LatentVariableModel
from .config import ModelConfig
from .registry import check_config, load, model_kind


def model_class(kind: str) -> type[LatentVariableModel]:
    return load(model_kind(kind).cls)


def build_model(config: ModelConfig, seeds: Sequence[int]) -> LatentVariableModel:
    """The model ``config`` describes, with one ensemble member per seed (E = len(seeds))."""
    check_config(config)
    return model_class(config.kind)(config, seeds)
