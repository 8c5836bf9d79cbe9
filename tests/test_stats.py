"""The verdicts' statistics on constructed data with known answers, and their error rates by
simulation (each simulation's tolerance is several binomial standard errors wide)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from study.judge import stats


def _rate(hits: int, n: int) -> tuple[float, float]:
    """(rate, its binomial standard error)."""
    p = hits / n
    return p, math.sqrt(max(p * (1 - p), 1e-4) / n)


def test_the_t_test_and_its_interval_are_scipys():
    d = np.array([0.3, 0.5, 0.1, 0.4, 0.2])
    r = stats.location_test(d)
    ref = sps.ttest_1samp(d, 0)
    ci = ref.confidence_interval(0.95)
    assert r.test == "t" and r.n == 5 and math.isclose(r.p, ref.pvalue)
    assert math.isclose(r.low, ci.low) and math.isclose(r.high, ci.high)
    look = stats.location_test(d, alpha=0.0158)  # a look of a sequential design: its own level
    ci = ref.confidence_interval(1 - 0.0158)
    assert math.isclose(look.low, ci.low) and math.isclose(look.high, ci.high)
    assert look.low < r.low and look.high > r.high


def test_values_that_do_not_vary_get_an_exact_sign_test_and_no_interval():
    r = stats.location_test(np.array([-1.0, -1.0, -1.0]))
    assert r.test == "sign test (exact)" and math.isclose(r.p, 0.25)
    assert not r.has_interval and r.effect == -1.0
    assert math.isclose(stats.location_test(np.full(6, 2.0)).p, 2 / 64)
    assert stats.location_test(np.zeros(4)).p == 1.0
    assert stats.location_test(np.array([0.5, 0.7])).test == "sign test (exact)"  # n = 2


def test_the_false_positive_rate_under_no_effect_is_nominal():
    rng = np.random.default_rng(0)
    sims = 2000
    hits = sum(stats.location_test(rng.normal(0, 1, 5)).p < 0.05 for _ in range(sims))
    rate, se = _rate(hits, sims)
    assert abs(rate - 0.05) < 4 * se


def test_a_real_effect_is_detected_with_the_power_seeds_needed_promises():
    rng = np.random.default_rng(1)
    n = stats.seeds_needed(np.array([0.2, 1.8, 0.6, 1.4, 1.0]))  # mean 1, sd 0.63
    assert n is not None and 4 <= n <= 8
    sims = 1000
    hits = sum(stats.location_test(rng.normal(1.0, float(np.std([0.2, 1.8, 0.6, 1.4, 1.0], ddof=1)),
                                              n)).p < 0.05 for _ in range(sims))
    rate, se = _rate(hits, sims)
    assert rate > 0.8 - 4 * se  # at least the promised 80% power
    assert stats.seeds_needed(np.full(3, -1.0)) == 6  # all signs equal: 2^(1-n) < 0.05
    assert stats.seeds_needed(np.zeros(3)) is None


def _split_seeds(rng: np.random.Generator, n: int, p_on: float) -> np.ndarray:
    """A layer's KL minus the 0.01 threshold per seed: on (about 0.05 nats) with probability
    ``p_on``, else off (about 1e-4): two groups, no bell curve."""
    on = rng.random(n) < p_on
    return np.where(on, rng.uniform(0.02, 0.1, n), rng.uniform(0, 2e-4, n)) - 0.01


def test_the_sign_test_asks_whether_most_seeds_lie_on_one_side():
    """One seed of three activates the layer: the mean lies above the threshold, the median
    (what "in most seeds" means) below it, and the sign test says so with its exact p."""
    d = np.array([1e-4, 0.037, 3e-4]) - 0.01
    auto, signs = stats.location_test(d), stats.location_test(d, about="median")
    assert auto.test == "t" and auto.effect > 0
    assert signs.test == "sign test (exact)" and not signs.has_interval
    assert math.isclose(signs.effect, 3e-4 - 0.01) and math.isclose(signs.p, 1.0)
    assert math.isclose(stats.location_test(np.r_[np.full(9, -0.0099), 0.19], about="median").p,
                        sps.binomtest(1, 10).pvalue)


def test_the_sign_test_on_split_seeds_keeps_its_level_and_the_seeds_it_promises():
    rng = np.random.default_rng(4)
    sims = 2000
    # no effect: the layer switches on in half the seeds; the median is on neither side
    hits = sum(stats.location_test(_split_seeds(rng, 10, 0.5), about="median").p < 0.05
               for _ in range(sims))
    rate, se = _rate(hits, sims)
    assert rate <= 0.05 + 3 * se  # exact, so conservative: 0.021 at n = 10
    # on in one seed of four: the seeds that would decide it, and the power they give
    n = stats.seeds_needed(np.array([-0.0099, -0.0098, 0.03, -0.0099]), about="median")
    assert n is not None and 15 <= n <= 40
    hits = sum(stats.location_test(_split_seeds(rng, n, 0.25), about="median").p < 0.05
               for _ in range(sims))
    rate, se = _rate(hits, sims)
    assert rate > 0.8 - 4 * se
    hits = sum(stats.location_test(_split_seeds(rng, n - 5, 0.25), about="median").p < 0.05
               for _ in range(sims))
    assert hits / sims < 0.8  # fewer seeds than promised do not reach the power
    assert stats.seeds_needed(np.array([-0.01, 0.03]), about="median") is None  # one seed each way


def test_equivalence_inside_and_outside_the_margin():
    rng = np.random.default_rng(2)
    inside = stats.equivalence_test(rng.normal(0.0, 0.1, 10), margin=0.5)
    outside = stats.equivalence_test(rng.normal(1.0, 0.1, 10), margin=0.5)
    assert inside.p < 0.001 and outside.p > 0.5
    assert inside.low > -0.5 and inside.high < 0.5  # the 90% interval inside the margin
    assert math.isclose(stats.equivalence_test(np.full(5, 0.1), 0.5).p, 1 / 32)
    assert stats.equivalence_test(np.full(5, 0.7), 0.5).p == 1.0


def test_equivalence_at_the_margin_is_claimed_at_most_alpha_of_the_time():
    rng = np.random.default_rng(3)
    sims = 2000
    hits = sum(stats.equivalence_test(rng.normal(0.5, 0.3, 8), margin=0.5).p < 0.05
               for _ in range(sims))
    rate, se = _rate(hits, sims)
    assert rate < 0.05 + 4 * se


def test_holm_on_a_constructed_family():
    assert np.allclose(stats.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    assert np.allclose(stats.holm([0.2, float("nan"), 0.01]), [0.2, float("nan"), 0.02],
                       equal_nan=True)


def test_holm_keeps_the_familywise_error_rate(monkeypatch):
    import gc

    # statsmodels' multipletests runs gc.collect() on every call: ~0.4 s in a process that
    # holds torch; the simulation calls it a thousand times
    monkeypatch.setattr(gc, "collect", lambda *args: 0)
    rng = np.random.default_rng(4)
    sims, claims = 1000, 5
    any_false = 0
    for _ in range(sims):
        p = [stats.location_test(rng.normal(0, 1, 6)).p for _ in range(claims)]
        any_false += min(stats.holm(p)) < 0.05
    rate, se = _rate(any_false, sims)
    assert rate < 0.05 + 4 * se


def test_the_auroc_bootstrap_covers_the_true_auroc_and_its_p_value_keeps_its_level():
    rng = np.random.default_rng(5)
    truth = sps.norm.cdf(1.0 / math.sqrt(2))  # AUROC of N(0,1) vs N(1,1)
    covered = rejected = 0
    reps = 200
    for _ in range(reps):
        r = stats.auroc_test(rng.normal(0, 1, 300), rng.normal(1, 1, 300), truth,
                             n_resamples=500, seed=int(rng.integers(1e9)))
        covered += r.low <= 0 <= r.high
        rejected += r.p < 0.05
        assert (r.p < 0.05) == (not r.low <= 0 <= r.high) or abs(r.p - 0.05) < 0.01
    rate, se = _rate(covered, reps)
    assert rate > 0.95 - 4 * se
    rate, se = _rate(rejected, reps)
    assert rate < 0.05 + 4 * se
    far = stats.auroc_test(rng.normal(0, 1, 300), rng.normal(2, 1, 300), 0.5, n_resamples=999)
    assert far.p == pytest.approx(2 / 1000) and far.low > 0


@pytest.mark.parametrize("d", [np.array([]), np.array([np.nan])])
def test_no_data_is_no_verdict(d):
    r = stats.location_test(d)
    assert r.n == 0 and math.isnan(r.p)


def test_seeds_needed_for_a_median_claim_reads_the_signs_not_the_mean():
    """[-3, 1, 1, 1] has mean 0 but 3 of 4 seeds on one side: a sign test at that frequency
    is decided by enough seeds; seeds at 0 count against it, as they do in the test."""
    from study.judge.stats import seeds_needed

    assert seeds_needed(np.array([-3.0, 1, 1, 1]), 0.05, about="median") == \
        seeds_needed(np.array([-1.0, 1, 1, 1]), 0.05, about="median") is not None
    assert seeds_needed(np.array([-3.0, 1, 1, 1]), 0.05, about="mean") is None
    with_zeros = seeds_needed(np.array([1.0, 1, 0, 0, 1]), 0.05, about="median")
    assert with_zeros > seeds_needed(np.array([1.0, 1, 1, 1, 1]), 0.05, about="median")
