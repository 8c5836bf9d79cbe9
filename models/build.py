"""A model from its configuration: the kind's class (``models.registry``) imported and built."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from .base import LatentVariableModel
from .config import ModelConfig
from .registry import check_config, model_kind


def model_class(kind: str) -> type[LatentVariableModel]:
    module, name = model_kind(kind).cls.split(":")
    return getattr(importlib.import_module(module), name)


def build_model(config: ModelConfig, seeds: Sequence[int]) -> LatentVariableModel:
    """The model ``config`` describes, with one ensemble member per seed (E = len(seeds))."""
    check_config(config)
    return model_class(config.kind)(config, seeds)
