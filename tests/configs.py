"""Model configurations for the model tests, with the trial configuration's defaults (the one
place defaults live) for every field a test leaves out."""

from __future__ import annotations

from models import ModelConfig
from study.spec.config import TrialConfig

_FROM_TRIAL = ("variance", "output_std", "min_output_std", "aux_latents", "activation")


def model_config(x_dim: int = 2, **fields) -> ModelConfig:
    defaults = {k: TrialConfig.model_fields[k].default for k in _FROM_TRIAL}
    defaults |= {"kind": "hvae", "likelihood": "gaussian"}
    return ModelConfig(x_dim=x_dim, **(defaults | fields))
