"""Pure-PyTorch hierarchical VAEs as seed ensembles: VAE, HVAE (LadderVAE-style), AVAE.

Nothing here imports Ray, Optuna or MLflow. Shapes: E members, S samples, B points, D dims.
Names are loaded on first use, so ``models.config`` and ``models.registry`` (what a trial
configuration needs to be validated) import without PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "AVAE": "avae", "HVAE": "hvae", "VAE": "hvae",
    "ForwardPass": "base", "GenerativeSample": "base", "KLEstimator": "base",
    "LatentVariableModel": "base",
    "ModelConfig": "config", "normalize_hidden": "config",
    "BernoulliLikelihood": "likelihoods", "GaussianLikelihood": "likelihoods",
    "Likelihood": "likelihoods",
    "LikelihoodEstimate": "objectives", "TrainingTerms": "objectives",
    "beta_schedule": "objectives", "elbo": "objectives", "estimate_log_likelihood": "objectives",
    "hierarchical_bound": "objectives", "iw_bound": "objectives",
    "likelihood_ratio": "objectives", "training_objective": "objectives",
    "KindSetting": "registry", "ModelKind": "registry", "kind_settings": "registry",
    "build_model": "build", "check_config": "registry",
    "model_class": "build", "model_kind": "registry", "model_kinds": "registry",
    "forward_flops": "size", "training_flops": "size", "parameter_count": "size",
    "layer_count": "size", "linear_shapes": "size",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value
