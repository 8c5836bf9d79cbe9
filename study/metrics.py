"""Metric functions with known answers (tested in tests/test_metrics.py). Pure numpy/sklearn.

Conventions: OOD detection treats out-of-distribution as the positive class and every score
as "higher = more anomalous" (so pass -log p(x), not log p(x)).
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from .data.synthetic import CurveDataset, distance_to_curve

#: Active units (Burda et al. 2015): Var_x E_q[z_u | x] above this.
ACTIVE_UNIT_THRESHOLD = 0.01
#: Latent pockets: prior mass where the aggregate posterior is below this fraction of the prior.
POCKET_DENSITY_RATIO = 0.1
#: Divergence jump: an epoch's training loss above the median of the previous
#: ``JUMP_WINDOW`` epochs by more than max(JUMP_MADS robust stds, JUMP_MIN_NATS).
JUMP_WINDOW, JUMP_MADS, JUMP_MIN_NATS = 10, 5.0, 1.0
#: Wrong samples: decoder means farther than this many noise stds from the curve
#: (the std is floored at WRONG_SAMPLE_MIN_SIGMA so noise-free data get a finite tolerance).
WRONG_SAMPLE_SIGMAS, WRONG_SAMPLE_MIN_SIGMA = 3.0, 0.01


def ood_metrics(score_in: np.ndarray, score_out: np.ndarray) -> dict[str, float]:
    """AUROC, AUPRC and the false-positive rate at 80% true-positive rate (OOD positive)."""
    y = np.r_[np.zeros(len(score_in)), np.ones(len(score_out))]
    s = np.r_[score_in, score_out].astype(float)
    if np.isnan(s).any():
        return {"auroc": float("nan"), "auprc": float("nan"), "fpr80": float("nan")}
    s = np.clip(s, -1e300, 1e300)  # infinite scores stay extreme but finite for sklearn
    fpr, tpr, _ = roc_curve(y, s)
    return {
        "auroc": float(roc_auc_score(y, s)),
        "auprc": float(average_precision_score(y, s)),
        "fpr80": float(fpr[np.searchsorted(tpr, 0.8, side="left")]),
    }


def active_units(posterior_means: np.ndarray, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Number of latent units whose posterior mean varies over x: Var_x > threshold.
    ``posterior_means``: ``[N, d]``."""
    return int((np.var(posterior_means, axis=0) > threshold).sum())


def class_separation(embedding: np.ndarray, labels: np.ndarray, k: int = 5, folds: int = 5,
                     seed: int = 0) -> float:
    """k-NN accuracy of ``labels`` from ``embedding`` ``[N, d]``, by stratified k-fold CV."""
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    if not np.isfinite(embedding).all():
        return float("nan")
    return float(cross_val_score(KNeighborsClassifier(k), embedding, labels, cv=cv).mean())


def pocket_mass(q_mean: np.ndarray, q_std: np.ndarray, n_prior: int = 4000,
                ratio: float = POCKET_DENSITY_RATIO, seed: int = 0) -> float:
    """Prior mass in holes of the aggregate posterior.

    The aggregate posterior q(z) = 1/N sum_n N(z; q_mean[n], q_std[n]^2) (``[N, d]`` inputs) is
    compared with the prior p(z) = N(0, I) at ``n_prior`` prior samples; the result is the
    fraction of prior samples where q(z) < ``ratio`` * p(z): 0 when the aggregate posterior
    covers the prior, near 1 when it occupies a small part of it.
    """
    rng = np.random.default_rng(seed)
    d = q_mean.shape[1]
    z = rng.standard_normal((n_prior, d))
    log_p = -0.5 * (z**2).sum(1) - 0.5 * d * np.log(2 * np.pi)
    log_q = np.empty(n_prior)
    for start in range(0, n_prior, 256):
        zz = z[start : start + 256, None, :]
        comp = -0.5 * (((zz - q_mean) / q_std) ** 2).sum(-1) - np.log(q_std).sum(-1) \
            - 0.5 * d * np.log(2 * np.pi)
        log_q[start : start + 256] = logsumexp(comp, axis=1) - np.log(len(q_mean))
    return float(np.mean(log_q < np.log(ratio) + log_p))


def wrong_sample_fraction(x: np.ndarray, curve: CurveDataset, sigma: float) -> float:
    """Fraction of points ``[N, 2]`` farther than 3 sigma (sigma floored at 0.01) from the curve."""
    tol = WRONG_SAMPLE_SIGMAS * max(sigma, WRONG_SAMPLE_MIN_SIGMA)
    return float(np.mean(distance_to_curve(x, curve) > tol))


def divergence_jumps(losses: np.ndarray, window: int = JUMP_WINDOW, mads: float = JUMP_MADS,
                     min_nats: float = JUMP_MIN_NATS) -> int:
    """Number of epochs whose training loss ``[T]`` jumps far above its running median."""
    losses = np.asarray(losses, dtype=float)
    count = 0
    for t in range(3, len(losses)):
        past = losses[max(0, t - window) : t]
        past = past[np.isfinite(past)]
        if len(past) < 3:
            continue
        med = np.median(past)
        robust_std = 1.4826 * np.median(np.abs(past - med))
        if not np.isfinite(losses[t]) or losses[t] - med > max(mads * robust_std, min_nats):
            count += 1
    return count
