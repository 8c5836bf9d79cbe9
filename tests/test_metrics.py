"""Every metric on a case with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from study.data.synthetic import MOONS, SPIRALS
from study.trial import metrics


def test_ood_metrics_of_separable_and_identical_scores():
    rng = np.random.default_rng(0)
    inn, out = rng.normal(0, 1, 500), rng.normal(10, 1, 500)
    m = metrics.ood_metrics(inn, out)
    assert m == {"auroc": 1.0, "auprc": 1.0, "fpr80": 0.0}
    flipped = metrics.ood_metrics(out, inn)  # orientation matters: higher = more OOD
    assert flipped["auroc"] == 0.0 and flipped["fpr80"] == 1.0
    same = metrics.ood_metrics(inn, rng.normal(0, 1, 500))
    assert abs(same["auroc"] - 0.5) < 0.05 and abs(same["fpr80"] - 0.8) < 0.06
    # -log p = +inf (log p = -inf) is maximally anomalous, not an error
    assert metrics.ood_metrics(np.zeros(3), np.array([np.inf, np.inf]))["auroc"] == 1.0
    assert np.isnan(metrics.ood_metrics(np.zeros(3), np.array([np.nan, 1.0]))["auroc"])


def test_ood_metrics_match_a_hand_computed_case():
    # in: 0, 1, 2, 3   out: 1.5, 4  -> pairs out>in: 1.5 beats 2 of 4, 4 beats 4 of 4: 6/8
    m = metrics.ood_metrics(np.array([0.0, 1, 2, 3]), np.array([1.5, 4.0]))
    assert m["auroc"] == 0.75


def test_active_units_of_a_collapsed_layer_is_zero():
    rng = np.random.default_rng(0)
    collapsed = rng.normal(0, 0.05, (1000, 4))  # variance 0.0025 < 0.01
    assert metrics.active_units(collapsed) == 0
    mixed = np.c_[collapsed[:, :2], rng.normal(0, 1, (1000, 3))]
    assert metrics.active_units(mixed) == 3


def test_class_accuracy_of_separated_and_mixed_clusters():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 200)
    separated = rng.normal(0, 0.1, (600, 2)) + np.array([[0, 0], [5, 5], [-5, 5]])[labels]
    assert metrics.class_accuracy(separated, labels) == 1.0
    mixed = rng.normal(0, 1, (600, 2))
    assert abs(metrics.class_accuracy(mixed, labels) - 1 / 3) < 0.08


def _kl_to_standard_normal(mean: np.ndarray, std: float) -> float:
    """Mean over points of KL(N(mean, std^2 I) || N(0, I)), nats."""
    d = mean.shape[1]
    return float(np.mean(0.5 * ((mean**2).sum(1) + d * std**2 - d - 2 * d * np.log(std))))


def test_a_layer_without_information_cannot_classify_fano():
    """Posteriors whose means are perfectly separated but tiny: the layer carries < 1e-3 nats,
    so samples of it (what a decoder sees) classify two balanced classes at chance: the old
    means-based k-NN read such a layer as 0.999 separated."""
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 1000)
    means = np.where(labels[:, None] == 0, -0.01, 0.01) * np.ones((2000, 2))
    std = 0.9999
    assert _kl_to_standard_normal(means, std) < 1e-3
    samples = means + std * rng.standard_normal(means.shape)
    assert metrics.class_accuracy(samples, labels) <= 0.55
    # the same means, read scale-free: what the old metric did
    assert metrics.class_accuracy(means + 1e-6 * rng.standard_normal(means.shape), labels) > 0.99
    # informative: separated means, small posterior std
    informative = np.where(labels[:, None] == 0, -2.0, 2.0) * np.ones((2000, 2))
    samples = informative + 0.1 * rng.standard_normal(informative.shape)
    assert metrics.class_accuracy(samples, labels) > 0.99


def test_active_units_count_the_units_that_carry_information():
    assert metrics.active_units_kl(np.array([1e-5, 0.0, 2e-3])) == 0
    assert metrics.active_units_kl(np.array([0.5, 1e-4, 3.2, 0.02])) == 3


def test_complexity_baselines_on_constructed_images():
    x_train = np.zeros((98, 4))
    x_train[:49, 0] = 1  # pixel 0 lit in half the images, pixel 1 always, others never
    x_train[:, 1] = 1
    for binarize in ("static", "none", "dynamic"):  # binary images: every mode agrees
        probs = metrics.bernoulli_fit(x_train, binarize)
        assert np.allclose(probs, [50 / 100, 99 / 100, 1 / 100, 1 / 100])
    x = np.array([[0, 1, 0, 0], [1, 1, 1, 1.0]])
    assert list(metrics.lit_pixels(x)) == [1.0, 4.0]
    expected = [-(np.log(0.5) + np.log(0.99) + 2 * np.log(0.99)),
                -(np.log(0.5) + np.log(0.99) + 2 * np.log(0.01))]
    assert np.allclose(metrics.bernoulli_neg_ll(x, probs), expected)


def test_the_pixel_frequencies_of_dynamic_binarisation_are_the_mean_grey_levels():
    """Grey level 0.3 everywhere: a dynamic draw lights the pixel 30% of the time, so the
    maximum-likelihood probability is 0.3 (with pseudo-counts), not the ~0 of x > 0.5; on many
    draws it scores the images better than the thresholded fit and than any other probability."""
    rng = np.random.default_rng(0)
    x_train = np.full((998, 2), 0.3)
    x_train[:, 1] = rng.choice([0.2, 0.9], size=998)
    probs = metrics.bernoulli_fit(x_train, "dynamic")
    assert np.allclose(probs, (x_train.sum(0) + 1) / 1000)
    assert np.isclose(probs[0], (0.3 * 998 + 1) / 1000)
    draws = (rng.random((20, *x_train.shape)) < x_train).reshape(-1, 2).astype(float)
    nll = lambda p: metrics.bernoulli_neg_ll(draws, p).mean()  # noqa: E731
    assert nll(probs) < nll(metrics.bernoulli_fit(x_train, "static")) - 0.5
    for nudge in (-0.02, 0.02):
        assert nll(probs) < nll(probs + nudge)


def test_the_neyman_pearson_score_is_the_best_detector_of_two_known_gaussians():
    """In N(0, 1), out N(1.5, 1): NP's AUROC is Phi(1.5 / sqrt 2) and no score beats it on the
    same points (beyond sampling noise); -log p_in ranks by |x| and loses to it."""
    from scipy import stats as sps

    rng = np.random.default_rng(2)
    inside, outside = rng.normal(0, 1, 20000), rng.normal(1.5, 1, 20000)
    log_in = lambda x: sps.norm.logpdf(x, 0, 1)  # noqa: E731
    log_out = lambda x: sps.norm.logpdf(x, 1.5, 1)  # noqa: E731
    np_auroc = metrics.ood_metrics(log_out(inside) - log_in(inside),
                                   log_out(outside) - log_in(outside))["auroc"]
    assert abs(np_auroc - sps.norm.cdf(1.5 / np.sqrt(2))) < 0.01
    others = {"neg_log_p_in": (-log_in(inside), -log_in(outside)),
              "x": (inside, outside), "x_squared": (inside**2, outside**2),
              "noisy_np": (inside + rng.normal(0, 0.5, 20000), outside + rng.normal(0, 0.5, 20000))}
    for name, (a, b) in others.items():
        assert metrics.ood_metrics(a, b)["auroc"] <= np_auroc + 0.005, name
    assert metrics.ood_metrics(*others["neg_log_p_in"])["auroc"] < np_auroc - 0.1


def test_pocket_mass_is_zero_when_the_posterior_covers_the_prior_and_large_with_a_hole():
    rng = np.random.default_rng(0)
    covering = rng.standard_normal((3000, 2))
    assert metrics.pocket_mass(covering, np.full((3000, 2), 0.3)) < 0.02
    # an aggregate posterior that avoids the disc of radius 1 around the origin
    ring = covering[np.hypot(*covering.T) > 1.0]
    hole = metrics.pocket_mass(ring, np.full(ring.shape, 0.05))
    p_disc = 1 - np.exp(-0.5)  # prior mass of the unit disc in 2-D
    assert abs(hole - p_disc) < 0.08


def test_wrong_sample_fraction_counts_points_off_the_curve():
    rng = np.random.default_rng(0)
    on, _ = MOONS.sample(1000, 0.0, rng)
    far = on[:250] + np.array([0.0, 3.0])  # 3 above the outer moon: far from both arms
    assert metrics.wrong_sample_fraction(on, MOONS, 0.05) == 0.0
    assert metrics.wrong_sample_fraction(np.r_[on[:750], far], MOONS, 0.05) == 0.25


def test_curve_coverage_is_the_recall_of_the_samples_and_ignores_wrong_ones():
    rng = np.random.default_rng(0)
    test, label = SPIRALS.sample(2000, 0.0, rng)
    samples, arm = SPIRALS.sample(2000, 0.0, rng)
    assert metrics.curve_coverage(samples, test, 0.0) > 0.99
    # one arm dropped: only that arm's half of the test points is covered
    one_arm = metrics.curve_coverage(samples[arm == 0], test, 0.0)
    assert abs(one_arm - np.mean(label == 0)) < 0.01
    # samples between the arms (pockets) lower the precision, not the recall
    between = rng.uniform(-0.05, 0.05, (1000, 2)) + samples[:1000] * 0.5
    assert metrics.curve_coverage(np.r_[samples, between], test, 0.0) > 0.99
    assert metrics.wrong_sample_fraction(np.r_[samples, between], SPIRALS, 0.0) > 0.25
    # a blob over the data's box never concentrated on the curve: 0.7 of it covered, the gate 0.95
    box = rng.uniform(test.min(0), test.max(0), (2000, 2))
    assert metrics.curve_coverage(box, test, 0.0) < 0.8
    # the tolerance is 3 noise std: the same blob covers noisy data with sigma 0.05
    assert metrics.curve_coverage(box, test, 0.05) > 0.99


def test_divergence_jumps_count_spikes_above_the_running_median():
    rng = np.random.default_rng(0)
    loss = np.linspace(5, 1, 100) + rng.normal(0, 0.01, 100)  # smooth descent: no jump
    assert metrics.divergence_jumps(loss) == 0
    spiky = loss.copy()
    spiky[[30, 70]] += 20.0
    spiky[50] = np.nan  # a non-finite loss is a jump too
    assert metrics.divergence_jumps(spiky) == 3


def test_tail_gain_is_the_rise_over_the_last_tenth_of_the_curve():
    rising = np.linspace(-5.0, -1.0, 101)  # +0.04 nats per epoch
    assert metrics.tail_gain(rising) == pytest.approx(0.4)  # last 10 epochs
    flat = np.r_[np.linspace(-5.0, -1.0, 50), np.full(50, -1.0)]
    assert metrics.tail_gain(flat) == pytest.approx(0.0)
    assert metrics.tail_gain(np.array([-3.0, -2.0])) == pytest.approx(1.0)  # at least one epoch
    assert np.isnan(metrics.tail_gain(np.array([-3.0, np.nan])))


def test_tail_gain_reads_the_trend_not_one_epochs_noise():
    """80 epochs with per-epoch noise 0.5 nats (a validation bound on 1,000 images): the trend
    estimate is unbiased and about 3x less noisy than the difference of the two end points,
    so a gate at 0.5 nats is decided by the curve, not by the last epoch."""
    rng = np.random.default_rng(0)
    t = np.arange(80, dtype=float)
    for slope in (0.0, 0.1):  # converged; still gaining 0.1 nats per epoch (0.8 per tenth)
        curves = -240.0 + slope * t + rng.normal(0.0, 0.5, (4000, 80))
        gains = np.array([metrics.tail_gain(c) for c in curves])
        ends = curves[:, -1] - curves[:, -9]
        assert gains.mean() == pytest.approx(slope * 8, abs=0.02)
        assert gains.std() == pytest.approx(0.5 * 8 / np.sqrt(16 * 255 / 12), rel=0.05)  # 0.217
        assert ends.std() > 3 * gains.std()
    # a model still gaining 0.8 nats per tenth passes a 0.5-nat gate in under 10% of runs
    assert np.mean(gains <= 0.5) < 0.1


def test_the_aggregate_log_density_matches_scipy_component_by_component():
    """The matmul form of the aggregate posterior's log density equals scipy.stats' direct one
    (to 1e-6 nats): in 2-D with posteriors of std 1e-3 (points placed within a few stds of
    their means, where the expansion cancels most) and 0.2, and in 64-D; and pocket_mass
    counts the same prior samples as the direct density, at fractions strictly between 0 and
    1."""
    from scipy.special import logsumexp
    from scipy.stats import norm

    rng = np.random.default_rng(1)
    seen = set()
    for d, n, scale, std in ((2, 300, 1.0, 1e-3), (2, 300, 1.0, 0.2), (64, 200, 0.5, 0.9)):
        q_mean = (scale * rng.standard_normal((n, d))).astype(np.float32)
        q_std = (std * rng.uniform(0.8, 1.25, (n, d))).astype(np.float32)
        z = np.random.default_rng(0).standard_normal((500, d))
        near = q_mean[:50] + 2 * q_std[:50] * rng.standard_normal((50, d))
        for points in (z, near):
            comp = norm.logpdf(points[:, None, :], q_mean.astype(float),
                               q_std.astype(float)).sum(-1)
            direct = logsumexp(comp, axis=1) - np.log(n)
            np.testing.assert_allclose(metrics.aggregate_log_density(points, q_mean, q_std),
                                       direct, rtol=0, atol=1e-6)
        log_q = metrics.aggregate_log_density(z, q_mean, q_std)
        for ratio in (0.01, 0.1, 1.0):
            fraction = float(np.mean(log_q < np.log(ratio) + norm.logpdf(z).sum(1)))
            assert metrics.pocket_mass(q_mean, q_std, n_prior=500, ratio=ratio) == fraction
            seen.add((d, 0 < fraction < 1))
    assert {(2, True), (64, True)} <= seen, seen
