"""Every metric on a case with a known answer."""

from __future__ import annotations

import numpy as np

from study import metrics
from study.data.synthetic import MOONS


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


def test_class_separation_of_separated_and_mixed_clusters():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 200)
    separated = rng.normal(0, 0.1, (600, 2)) + np.array([[0, 0], [5, 5], [-5, 5]])[labels]
    assert metrics.class_separation(separated, labels) == 1.0
    mixed = rng.normal(0, 1, (600, 2))
    assert abs(metrics.class_separation(mixed, labels) - 1 / 3) < 0.08


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


def test_divergence_jumps_count_spikes_above_the_running_median():
    rng = np.random.default_rng(0)
    loss = np.linspace(5, 1, 100) + rng.normal(0, 0.01, 100)  # smooth descent: no jump
    assert metrics.divergence_jumps(loss) == 0
    spiky = loss.copy()
    spiky[[30, 70]] += 20.0
    spiky[50] = np.nan  # a non-finite loss is a jump too
    assert metrics.divergence_jumps(spiky) == 3
