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

from study.data.synthetic import CurveDataset, distance_to_curve

#: Active units: a unit whose KL between posterior and prior, averaged over the data, exceeds
#: this many nats carries information about x (a collapsed unit has ~0).
ACTIVE_UNIT_KL = 0.01
#: Active units after Burda et al. (2015): Var_x E_q[z_u | x] above this (top layer only: below
#: it, the posterior mean inherits the x-dependence of the prior mean from the layers above).
ACTIVE_UNIT_THRESHOLD = 0.01
#: Latent pockets: prior mass where the aggregate posterior is below this fraction of the prior.
POCKET_DENSITY_RATIO = 0.1
#: Divergence jump: an epoch's training loss above the median of the previous
#: ``JUMP_WINDOW`` epochs by more than max(JUMP_MADS robust stds, JUMP_MIN_NATS).
JUMP_WINDOW, JUMP_MADS, JUMP_MIN_NATS = 10, 5.0, 1.0
#: Wrong samples and curve coverage (``sample_tolerance``): decoder means farther than this many
#: noise stds from the curve, and test points that far from every decoder mean (the std is
#: floored at WRONG_SAMPLE_MIN_SIGMA so noise-free data get a finite tolerance).
WRONG_SAMPLE_SIGMAS, WRONG_SAMPLE_MIN_SIGMA = 3.0, 0.01
#: Convergence (``val_gain_tail``): the gain over the last TAIL_FRACTION of the epochs, read off
#: the least-squares trend of the last TAIL_TREND_FRACTION. A difference of two epochs would be
#: decided by one epoch's noise (0.4-0.6 nats on 1,000 validation images, docs/quality.md).
TAIL_FRACTION, TAIL_TREND_FRACTION = 0.1, 0.2


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


def active_units_kl(unit_kl: np.ndarray, threshold: float = ACTIVE_UNIT_KL) -> int:
    """Units whose data-averaged KL ``[d]`` (nats) exceeds ``threshold``: 0 for a layer that
    carries no information, whatever the scale of its posterior means."""
    return int((np.asarray(unit_kl) > threshold).sum())


def active_units(posterior_means: np.ndarray, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Burda et al.'s active units: Var_x of the posterior mean ``[N, d]`` above ``threshold``.
    Meaningful for a layer whose prior does not depend on x (the top layer, or a VAE's)."""
    return int((np.var(posterior_means, axis=0) > threshold).sum())


def class_accuracy(samples: np.ndarray, labels: np.ndarray, k: int = 15, folds: int = 5,
                   seed: int = 0) -> float:
    """Held-out accuracy of a k-NN classifier of ``labels`` from posterior samples
    ``[N, d]`` (one z ~ q(z|x) per point), by stratified k-fold cross-validation.

    Samples, not means: a layer that carries I nats about x gives a classifier at most what I
    nats allow (Fano), while its posterior means can still be perfectly separable at a tiny
    scale that k-NN, being scale-free, would read as structure."""
    if not np.isfinite(samples).all():
        return float("nan")
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(cross_val_score(KNeighborsClassifier(k), samples, labels, cv=cv).mean())


def lit_pixels(x: np.ndarray) -> np.ndarray:
    """``[N]``: pixels above 0.5 per image ``[N, D]`` (a complexity score for image OOD)."""
    return (np.asarray(x) > 0.5).sum(axis=1).astype(np.float64)


def bernoulli_fit(x_train: np.ndarray, binarize: str) -> np.ndarray:
    """``[D]``: the pixel-independent Bernoulli model of the binary images a model trains on
    (maximum likelihood with one pseudo-count per outcome), from the training images ``[N, D]``.

    ``binarize="dynamic"``: ``x_train`` holds grey levels in [0, 1] and every epoch draws pixel d
    on with probability x[n, d], so the images trained on have pixel d on with frequency
    mean_n x[n, d]: the maximum-likelihood probability, not the frequency of x > 0.5 (they differ
    by ~3 nats per Fashion-MNIST image). Otherwise (``static``: already binary; ``none``: the
    scores threshold grey levels at 0.5) the frequency of x > 0.5.
    """
    x = np.asarray(x_train, dtype=np.float64)
    on = x if binarize == "dynamic" else (x > 0.5)
    return (on.sum(0) + 1.0) / (len(x) + 2.0)


def bernoulli_neg_ll(x: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """``[N]``: -log p(x) (nats) of binary images ``[N, D]`` under pixel-independent ``probs``."""
    on = np.asarray(x) > 0.5
    return -(on @ np.log(probs) + (~on) @ np.log1p(-probs))


def aggregate_log_density(z: np.ndarray, q_mean: np.ndarray, q_std: np.ndarray,
                          chunk: int = 256) -> np.ndarray:
    """``[M]``: log q(z) (nats) at points ``z`` ``[M, d]`` of the mixture q(z) = 1/N sum_n
    N(z; q_mean[n], q_std[n]^2) (``[N, d]``, diagonal Gaussians). Each component's log density
    is two float64 matmuls, sum_d (z - m)^2 / s^2 expanded: broadcasting z - m cost M x N x d
    element operations (18.8 s per member for 4,000 points against 10,000 MNIST test points of
    64 latents, 0.65 s this way). The expansion loses about 1e-5 nats at s = 1e-4 near a
    mean."""
    d = q_mean.shape[1]
    m, s = np.asarray(q_mean, np.float64), np.asarray(q_std, np.float64)
    prec = 1.0 / s**2  # [N, d]
    scaled = m * prec
    const = -0.5 * (m * scaled).sum(1) - np.log(s).sum(1) - 0.5 * d * np.log(2 * np.pi)
    log_q = np.empty(len(z))
    for start in range(0, len(z), chunk):
        zz = np.asarray(z[start : start + chunk], np.float64)
        comp = -0.5 * ((zz**2) @ prec.T) + zz @ scaled.T + const  # [chunk, N]
        log_q[start : start + chunk] = logsumexp(comp, axis=1) - np.log(len(m))
    return log_q


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
    log_q = aggregate_log_density(z, q_mean, q_std)
    return float(np.mean(log_q < np.log(ratio) + log_p))


def sample_tolerance(sigma: float) -> float:
    """How far (data units) a point may lie from another and still count as on it: 3 sigma, with
    sigma floored at 0.01 so that noise-free data get a finite tolerance (0.03)."""
    return WRONG_SAMPLE_SIGMAS * max(sigma, WRONG_SAMPLE_MIN_SIGMA)


def wrong_sample_fraction(x: np.ndarray, curve: CurveDataset, sigma: float) -> float:
    """Fraction of points ``[N, 2]`` farther than ``sample_tolerance(sigma)`` from the curve: the
    precision of a model's samples (1 - this)."""
    return float(np.mean(distance_to_curve(x, curve) > sample_tolerance(sigma)))


def curve_coverage(samples: np.ndarray, x_test: np.ndarray, sigma: float) -> float:
    """Fraction of test points ``[N, 2]`` with a sample (``[M, 2]``) within
    ``sample_tolerance(sigma)``: the recall of a model's samples. Near 1 when the samples cover
    every part of the data; low for a model that dropped part of the curve or never
    concentrated on it (a blob spread over the data's box covers ~0.7 of a Spirals test set
    with M = 2000 samples). Wrong samples elsewhere do not lower it."""
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(samples).query(x_test)
    return float(np.mean(dist <= sample_tolerance(sigma)))


def tail_gain(curve: np.ndarray, fraction: float = TAIL_FRACTION,
              trend: float = TAIL_TREND_FRACTION) -> float:
    """How much a learning curve ``[T]`` (higher is better, nats) rose over its last
    ``fraction`` of epochs (at least one), from its least-squares line over the last ``trend``
    of the epochs (at least three, or all there are): slope x epochs. NaN for fewer than two
    finite epochs. About 0 for a converged model; on a curve still rising it estimates the rise
    with a noise of sigma x n / sqrt(w (w^2 - 1) / 12) for per-epoch noise sigma, n epochs and a
    window of w (0.22 nats for sigma 0.5 at 80 epochs, against 0.71 for the difference of the
    two end points)."""
    c = np.asarray(curve, float)
    c = c[np.isfinite(c)]
    if len(c) < 2:
        return float("nan")
    n = max(1, int(round(fraction * len(c))))
    w = min(len(c), max(3, int(round(trend * len(c)))))
    slope = np.polyfit(np.arange(w, dtype=float), c[-w:], 1)[0]
    return float(slope * n)


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
