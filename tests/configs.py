"""Model configurations for the model tests, with the trial configuration's defaults (the one
place defaults live) for every field a test leaves out; a model kind's own settings (e.g.
``aux_latents``) go into ``options``, as ``TrialConfig.architecture`` puts them."""

from __future__ import annotations

from models import ModelConfig, kind_settings
from study.spec.config import TrialConfig

_FROM_TRIAL = ("variance", "output_std", "min_output_std", "activation")


def model_config(x_dim: int = 2, **fields) -> ModelConfig:
    defaults = {k: TrialConfig.model_fields[k].default for k in _FROM_TRIAL}
    defaults |= {"kind": "hvae", "likelihood": "gaussian"}
    own = tuple((k, fields.pop(k)) for k in list(fields) if k in kind_settings())
    return ModelConfig(x_dim=x_dim, **(defaults | fields), options=own)
