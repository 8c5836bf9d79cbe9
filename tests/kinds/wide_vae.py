"""A toy model kind for tests/test_model_kinds.py: a VAE whose hidden widths are multiplied by
its own setting ``width_factor``. The file a new kind needs besides its registry entry."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from models import VAE, ModelConfig
from models.registry import option


class WideVAE(VAE):
    def __init__(self, config: ModelConfig, seeds: Sequence[int]) -> None:
        factor = option(config, "width_factor")
        hidden = tuple(tuple(w * factor for w in block) for block in config.hidden)
        super().__init__(dataclasses.replace(config, hidden=hidden), seeds)
