"""Pure-PyTorch hierarchical VAEs as seed ensembles: VAE, HVAE (LadderVAE-style), AVAE.

Nothing here imports Ray, Optuna or MLflow. Shapes: E members, S samples, B points, D dims.
"""

from .avae import AVAE
from .base import ForwardPass, KLEstimator, LatentVariableModel
from .config import ModelConfig, build_model, normalize_hidden
from .hvae import HVAE, VAE, GenerativeSample
from .likelihoods import BernoulliLikelihood, GaussianLikelihood, Likelihood
from .objectives import (
    LikelihoodEstimate,
    TrainingTerms,
    beta_schedule,
    elbo,
    estimate_log_likelihood,
    hierarchical_bound,
    iw_bound,
    likelihood_ratio,
    training_objective,
)

__all__ = [
    "AVAE", "HVAE", "VAE", "BernoulliLikelihood", "ForwardPass", "GaussianLikelihood",
    "GenerativeSample", "KLEstimator", "LatentVariableModel", "Likelihood", "LikelihoodEstimate",
    "ModelConfig", "TrainingTerms", "beta_schedule", "build_model", "elbo",
    "estimate_log_likelihood", "hierarchical_bound", "iw_bound", "likelihood_ratio",
    "normalize_hidden", "training_objective",
]
