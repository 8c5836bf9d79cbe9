"""Verdicts on constructed per-seed rows with known answers: a paired design, zero variance,
equivalence inside and outside the margin, Holm across claims, gates, one trained model."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from study.judge import stats
from study.judge.stats import mean_interval
from study.judge.verdicts import (
    claim_values,
    gate_checks,
    gate_counts,
    gate_failures,
    judge_all,
)
from study.spec.claims import Claim, Gate


def _rows(values_by_depth: dict[int, list[float]], other: dict[int, list[float]] | None = None,
          **extra_by_depth) -> pd.DataFrame:
    rows = []
    for depth, values in values_by_depth.items():
        for seed, v in enumerate(values):
            row = {"trial_id": f"t{depth}", "seed": seed, "factor.depth": depth,
                   "trial_status": "finished", "seed_status": "finished", "m": v}
            if other is not None:
                row["b"] = other[depth][seed]
            for name, by_depth in extra_by_depth.items():
                row[name] = by_depth[depth]
            rows.append(row)
    return pd.DataFrame(rows)


def _claim(**fields) -> Claim:
    return Claim(**({"statement": "s", "metric": "m"} | fields))


def test_mean_interval_is_the_student_t_interval():
    v = np.array([1.0, 2.0, 4.0])
    mean, half, n = mean_interval(v)
    assert n == 3 and mean == v.mean()
    assert math.isclose(half, sps.t.ppf(0.975, 2) * v.std(ddof=1) / math.sqrt(3))
    assert math.isnan(mean_interval([5.0])[1]) and mean_interval([np.nan, 1.0])[2] == 1
    assert mean_interval([2.0, 2.0, 2.0])[1] == 0.0


def test_a_paired_design_is_tested_seed_by_seed():
    """Seed effects shared by both configurations (common random numbers) cancel in the
    paired differences: an unpaired test would drown the +0.1 in them."""
    seed_effect = np.array([0.0, 3.0, -2.0, 5.0, 1.0])
    rows = _rows({1: list(seed_effect), 2: list(seed_effect + 0.1 + [0.01, -0.01, 0.0, 0.02, -0.02])})
    claim = _claim(where={"depth": 2}, versus={"depth": 1}, expect="higher")
    d, seeds = claim_values(claim, rows)
    assert np.allclose(d, [0.11, 0.09, 0.1, 0.12, 0.08]) and seeds == (5, 5)
    v = judge_all([claim], rows)[0]
    assert v.verdict == "supported" and v.result.test == "t" and v.result.p < 0.001
    assert sps.ttest_ind(rows[rows["factor.depth"] == 2]["m"],
                         rows[rows["factor.depth"] == 1]["m"]).pvalue > 0.9
    lower = judge_all([_claim(where={"depth": 2}, versus={"depth": 1}, expect="lower")], rows)[0]
    assert lower.verdict == "not supported"


def test_zero_variance_is_decided_by_the_exact_sign_test_never_a_zero_width_interval():
    rows = _rows({4: [0.0, 0.0, 0.0]})
    claim = _claim(where={"depth": 4}, expect="below", threshold=1.0)  # every seed: -1
    v = judge_all([claim], rows)[0]
    assert v.result.test == "sign test (exact)" and math.isclose(v.result.p, 0.25)
    assert not v.result.has_interval and v.verdict == "inconclusive"
    assert v.needed == 6 and v.row()["would change it"] == (
        "the sign test cannot reach its level with 3 seeds even if all agree: at least 6 seeds")
    six = judge_all([claim], _rows({4: [0.0] * 6}))[0]
    assert six.verdict == "supported" and math.isclose(six.result.p, 1 / 32)
    assert six.result.test == "sign test (exact)" and six.result.has_interval  # order statistics


def test_equivalence_inside_and_outside_the_margin():
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1, 8)
    noise = rng.normal(0.0, 0.02, 8)
    noise -= noise.mean()  # no difference on average: the tests can only find equivalence
    close = _rows({1: list(base), 2: list(base + noise)})
    far = _rows({1: list(base), 2: list(base + 1.0 + noise)})
    same = _claim(where={"depth": 2}, versus={"depth": 1}, expect="equivalent", margin=0.1)
    assert judge_all([same], close)[0].verdict == "supported"
    assert judge_all([same], far)[0].verdict == "not supported"
    better = _claim(where={"depth": 2}, versus={"depth": 1}, expect="higher", margin=0.1)
    assert judge_all([better], close)[0].verdict == "equivalent"
    assert judge_all([better], far)[0].verdict == "supported"
    with pytest.raises(ValueError, match="margin"):
        _claim(where={"depth": 2}, versus={"depth": 1}, expect="equivalent")


def test_holm_adjusts_across_the_claims_of_a_study():
    """Three comparisons with raw p = 0.01, 0.03 and 0.04: alone each would be decided at
    0.05; together Holm gives 0.03, 0.06 and 0.06, so only the first is."""
    def values_with_p(target: float) -> list[float]:
        # five values whose one-sample t test of mean 0 gives two-sided p = target
        t = sps.t.isf(target / 2, 4)
        base = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
        return list(base + t * base.std(ddof=1) / math.sqrt(5))

    rows = _rows({0: [0.0] * 5, 1: values_with_p(0.01), 2: values_with_p(0.03),
                  3: values_with_p(0.04)})
    claims = [_claim(where={"depth": d}, versus={"depth": 0}, expect="higher") for d in (1, 2, 3)]
    verdicts = judge_all(claims, rows)
    assert [round(v.result.p, 4) for v in verdicts] == [0.01, 0.03, 0.04]
    assert np.allclose([v.p_holm for v in verdicts], [0.03, 0.06, 0.06])
    assert [v.verdict for v in verdicts] == ["supported", "inconclusive", "inconclusive"]
    alone = judge_all(claims[2:], rows)[0]
    assert alone.verdict == "supported" and math.isclose(alone.p_holm, 0.04)


def test_versus_metric_is_paired_within_rows():
    rows = _rows({4: [0.0, 0.0, 0.1, 0.05]}, other={4: [0.5, 0.6, 0.7, 0.62]})
    v = judge_all([_claim(metric="b", versus_metric="m", where={"depth": 4}, expect="higher")],
                  rows)[0]
    assert v.verdict == "supported" and math.isclose(v.effect, 0.5675)
    rows.loc[2, "seed_status"] = "diverged"  # diverged seeds are left out
    assert claim_values(_claim(where={"depth": 4}, expect="below", threshold=1.0), rows)[1] == (3, 0)


def test_a_claim_whose_models_miss_the_gate_is_untestable():
    rows = _rows({1: [1.0, 1.1, 0.9], 2: [2.0, 2.15, 1.95]}, ll_gap={1: -0.1, 2: -0.8},
                 kl_z2={1: 0.0, 2: 0.002})
    claim = _claim(where={"depth": 2}, versus={"depth": 1}, expect="higher")
    gate = Gate(max_ll_gap=0.3)
    missed = "ll_gap >= -0.3: 0/3 seeds pass (worst -0.8: depth=2)"
    assert gate_failures(claim, gate, rows) == [missed]
    v = judge_all([claim], rows, gates=gate)[0]
    assert v.verdict == "untestable" and v.result is None
    assert missed in v.row()["why"]
    kl_gate = _claim(where={"depth": 2}, versus={"depth": 1}, expect="higher",
                     gate=Gate(min_kl={"z2": 0.01}))
    inactive = judge_all([kl_gate], rows)[0]
    assert inactive.verdict == "untestable" and inactive.layer_inactive  # only the KL bound missed
    assert not v.layer_inactive  # a missed fit gate: longer training could change it
    both = judge_all([kl_gate], rows, gates=gate)[0]
    assert both.verdict == "untestable" and not both.layer_inactive
    assert judge_all([claim], rows, gates=Gate(max_ll_gap=1.0))[0].verdict == "supported"
    passed = gate_checks(claim, Gate(max_ll_gap=1.0, min_kl={"z2": 0.001}), rows)
    assert [str(c) for c in passed] == [
        "ll_gap >= -1: all 3 seeds pass (worst -0.8: depth=2)",
        "kl_z2 >= 0.001: 0/3 seeds pass (worst 0: depth=1)"]
    assert [c.passed for c in passed] == [True, False]


def test_a_gate_holds_in_every_seed_not_on_the_mean():
    """One stuck seed of five (gap -1.2) with a mean gap of -0.28: on the mean the configuration
    would pass a 0.3-nat gate; seed by seed it does not, and the count says which share does."""
    rows = _rows({1: [1.0, 1.1, 0.9, 1.0, 1.05], 2: [2.0, 2.15, 1.95, 2.1, 2.0]})
    rows["ll_gap"] = [-0.1] * 5 + [-0.05, -0.1, -0.05, -0.1, -1.1]
    assert rows[rows["factor.depth"] == 2]["ll_gap"].mean() > -0.3
    claim = _claim(where={"depth": 2}, versus={"depth": 1}, expect="higher")
    v = judge_all([claim], rows, gates=Gate(max_ll_gap=0.3))[0]
    assert v.verdict == "untestable"
    assert str(v.gate_failures[0]) == "ll_gap >= -0.3: 4/5 seeds pass (worst -1.1: depth=2)"
    table = gate_counts([claim], Gate(max_ll_gap=0.3), rows)
    assert table.to_dict("records") == [{"configuration": "depth=1", "ll_gap >= -0.3": "5/5"},
                                        {"configuration": "depth=2", "ll_gap >= -0.3": "4/5"}]


def test_diverged_seeds_and_missing_values_miss_the_gate():
    """3 of 8 seeds of a learning rate diverge: the 5 survivors fit, but judging the claim on
    them would select the seeds that happened to work; the gate counts the 3 as misses. A seed
    with no value of a metric its configuration has elsewhere misses too; all seeds diverged is
    a miss, not a configuration the bound does not apply to. A claim about divergence counts its
    diverged seeds as values and gates the others."""
    rows = _rows({1: [1.0] * 8, 2: [2.0] * 8})
    rows["ll_gap"] = -0.1
    rows.loc[rows["factor.depth"] == 2, "seed_status"] = ["diverged"] * 3 + ["finished"] * 5
    rows.loc[(rows["factor.depth"] == 2) & (rows["seed_status"] == "diverged"), "ll_gap"] = np.nan
    claim = _claim(where={"depth": 2}, versus={"depth": 1}, expect="higher")
    v = judge_all([claim], rows, gates=Gate(max_ll_gap=0.3))[0]
    assert v.verdict == "untestable"
    assert str(v.gate_failures[0]) == ("ll_gap >= -0.3: 5/8 seeds pass, 3 diverged (worst -0.1: "
                                       "depth=2)")
    gap = rows.copy()
    gap.loc[0, "ll_gap"] = np.nan  # depth 1, seed 0: evaluated, no value
    checks = gate_checks(claim, Gate(max_ll_gap=0.3), gap)
    assert {(c.where, c.passing, c.seeds) for c in checks if not c.passed} == {
        ("depth=1", 7, 8), ("depth=2", 5, 8)}
    lost = rows.copy()
    lost.loc[lost["factor.depth"] == 2, "seed_status"] = "diverged"
    lost.loc[lost["factor.depth"] == 2, "ll_gap"] = np.nan
    assert [(c.passing, c.seeds, c.diverged) for c in gate_checks(claim, Gate(max_ll_gap=0.3), lost)
            if not c.passed] == [(0, 8, 8)]
    jumps = _claim(metric="divergence_jumps", where={"depth": 2}, versus={"depth": 1},
                   expect="higher")
    rows["divergence_jumps"] = 0.0
    assert gate_checks(jumps, Gate(max_ll_gap=0.3), rows)[0].passed


def test_a_claim_about_a_layer_is_gated_on_the_layers_it_relies_on():
    """LLR>1 of a 3-layer model uses the posteriors of z2 and z3: an inactive z3 makes the claim
    untestable without any gate declared; a claim about z3's activity itself is not gated."""
    rows = _rows({3: [0.6, 0.7, 0.65]}, kl_z1={3: 5.0}, kl_z2={3: 2.0}, kl_z3={3: 1e-4})
    rows["auroc_llr_1_mnist"] = rows["m"]
    llr = _claim(metric="auroc_llr_1_mnist", where={"depth": 3}, expect="above", threshold=0.5)
    v = judge_all([llr], rows)[0]
    assert v.verdict == "untestable" and v.layer_inactive
    assert [c.metric for c in v.gate_failures] == ["kl_z3"]
    rows["kl_z3"] = 0.5
    assert judge_all([llr], rows)[0].verdict != "untestable"
    rows["kl_z3"] = 1e-4
    activity = _claim(metric="kl_z3", where={"depth": 3}, expect="below", threshold=0.01)
    assert judge_all([activity], rows)[0].verdict != "untestable"
    # a claim about the fit itself is judged by it, not gated on it
    rows["ll_gap"] = -1.5
    fails = _claim(metric="ll_gap", where={"depth": 3}, expect="below", threshold=-1.0)
    assert gate_checks(fails, Gate(max_ll_gap=0.3), rows) == []


@pytest.mark.parametrize("sample_gate, missed", [
    (dict(max_wrong_samples=0.05),
     ["wrong_sample_frac <= 0.05: 0/3 seeds pass (worst 0.3: depth=1)",
      "wrong_sample_frac <= 0.05: 0/3 seeds pass (worst 0.2: depth=2)"]),
    (dict(min_coverage=0.95), ["curve_coverage >= 0.95: 0/3 seeds pass (worst 0.9: depth=1)",
                               "curve_coverage >= 0.95: 0/3 seeds pass (worst 0.8: depth=2)"]),
])
def test_sample_gates_judge_only_the_data_without_a_density_when_the_gap_gate_is_set(
        sample_gate, missed):
    """Noise 0 (depth 1 here: no exact density, ll_gap undefined) is judged by its samples;
    noisy data (depth 2: ll_gap defined) by its gap to the exact density, not by both."""
    rows = _rows({1: [1.0, 1.1, 0.9], 2: [2.0, 2.15, 1.95]}, ll_gap={1: np.nan, 2: -0.1},
                 wrong_sample_frac={1: 0.3, 2: 0.2}, curve_coverage={1: 0.9, 2: 0.8})
    both = _claim(where={"depth": 2}, versus={"depth": 1}, expect="higher")
    noisy = _claim(where={"depth": 2}, expect="above", threshold=1.0)
    gate = Gate(max_ll_gap=0.3, **sample_gate)
    assert gate_failures(both, gate, rows) == missed[:1]
    assert gate_failures(noisy, gate, rows) == []
    assert judge_all([noisy], rows, gates=gate)[0].result is not None  # tested, not gated
    assert judge_all([both], rows, gates=gate)[0].verdict == "untestable"
    rows.loc[rows["factor.depth"] == 2, "ll_gap"] = -0.5  # the gap still judges noisy data
    assert gate_failures(noisy, gate, rows) == [
        "ll_gap >= -0.3: 0/3 seeds pass (worst -0.5: depth=2)"]
    # without a gap bound the sample bound is the only fit gate, for any noise
    assert gate_failures(noisy, Gate(**sample_gate), rows) == missed[1:]


def test_the_coverage_gate_passes_models_whose_samples_cover_the_curve_whatever_their_pockets():
    """The noise-free gate asks whether the samples cover the data (recall), so a claim about
    pockets or wrong samples is not decided by the gate: high wrong-sample fractions pass."""
    rows = _rows({1: [0.30, 0.35, 0.40], 2: [0.10, 0.12, 0.08]}, ll_gap={1: np.nan, 2: np.nan},
                 curve_coverage={1: 0.99, 2: 0.98})
    rows["wrong_sample_frac"] = rows["m"]  # the claim's metric is the wrong samples
    fewer = _claim(metric="wrong_sample_frac", where={"depth": 2}, versus={"depth": 1},
                   expect="lower")
    v = judge_all([fewer], rows, gates=Gate(max_ll_gap=0.3, min_coverage=0.95))[0]
    assert v.verdict == "supported" and v.effect == pytest.approx(-0.25)


def test_a_claim_against_a_threshold_is_judged_on_the_median_seed():
    """z3 on in one seed of ten: on average above the 0.01 threshold, but off in most seeds,
    which is what "has trouble activating" says: supported by the sign test, the only test of
    a threshold claim (a t test of the mean has no valid null here)."""
    kl = [1e-4] * 9 + [0.2]
    rows = _rows({4: kl})
    median = _claim(expect="below", threshold=0.01)
    assert median.tested_on == "median"
    by_median = judge_all([median], rows)[0]
    assert np.mean(kl) > 0.01 and by_median.verdict == "supported"
    assert by_median.effect == pytest.approx(1e-4 - 0.01)
    assert by_median.result.p == pytest.approx(sps.binomtest(1, 10).pvalue)
    assert by_median.row()["effect [CI]"].startswith("median: -0.0099 [")
    few = judge_all([median], _rows({4: [1e-4, 0.037, 3e-4]}))[0]
    assert few.verdict == "inconclusive" and few.needed == stats.seeds_needed(
        few.values, about="median")
    with pytest.raises(ValueError, match="about the median"):
        _claim(expect="below", threshold=0.01, about="mean")
    # "in most seeds" for a comparison too, and equivalence of the median by two sign tests
    rows = _rows({1: [0.0] * 8, 2: [0.01, -0.02, 0.015, 0.0, -0.01, 0.02, 0.005, -0.005]})
    same = _claim(where={"depth": 2}, versus={"depth": 1}, expect="equivalent", margin=0.1,
                  about="median")
    v = judge_all([same], rows)[0]
    assert v.verdict == "supported" and v.equivalence.test == "TOST (exact sign)"
    assert v.equivalence.p == pytest.approx(0.5 ** 8)

def test_a_claim_about_a_model_free_number_is_not_gated_by_the_models_fit():
    """The lit-pixel AUROC is the same whatever the VAE learned: an unconverged VAE does not
    make a claim about it untestable, while a claim about the VAE's own score is."""
    rng = np.random.default_rng(2)
    rows = _rows({1: [0.1, 0.1, 0.1]}, val_gain_tail={1: 2.0})
    rows["auroc_neg_elbo_mnist"] = [0.30, 0.34, 0.32]
    n = 300  # every seed scores the same test points the same way: one measurement
    lit = {"test": rng.normal(2, 1, n), "mnist": rng.normal(0, 1, n)}  # AUROC ~0.08
    scores = pd.concat([pd.DataFrame({"trial_id": "t1", "seed": seed, "score": "lit_pixels",
                                      "set": name, "value": v, "index": range(n)})
                        for seed in range(3) for name, v in lit.items()])
    gate = Gate(at_most={"val_gain_tail": 0.5})
    free = _claim(metric="auroc_lit_pixels_mnist", where={"depth": 1}, expect="below", threshold=0.5)
    model = _claim(metric="auroc_neg_elbo_mnist", where={"depth": 1}, expect="below", threshold=0.5)
    v_free, v_model = judge_all([free, model], rows, gates=gate, scores=scores)
    assert v_free.verdict == "supported"
    assert v_free.result.test == "bootstrap over test points (a model-free score)"
    assert v_free.result.high < 0  # AUROC - 0.5, the whole interval below
    assert v_model.verdict == "untestable"
    assert "val_gain_tail <= 0.5: 0/3 seeds pass" in v_model.row()["why"]


def test_one_trained_model_gets_an_interval_over_its_test_points():
    rng = np.random.default_rng(1)
    rows = _rows({1: [0.0]})
    n = 400
    scores = pd.DataFrame({
        "trial_id": "t1", "seed": 0, "score": "neg_ll",
        "set": ["test"] * n + ["far"] * n,
        "value": np.r_[rng.normal(0, 1, n), rng.normal(2, 1, n)], "index": np.r_[range(n), range(n)]})
    claim = _claim(metric="auroc_neg_ll_far", where={"depth": 1}, expect="above", threshold=0.8)
    v = judge_all([claim], rows, scores=scores)[0]
    assert v.result.test == "bootstrap over test points (one model)" and v.result.has_interval
    assert v.verdict == "supported"  # the true AUROC is Phi(2 / sqrt 2) = 0.92
    high = _claim(metric="auroc_neg_ll_far", where={"depth": 1}, expect="above", threshold=0.99)
    assert judge_all([high], rows, scores=scores)[0].verdict == "not supported"


def test_a_claims_own_bound_keeps_the_studys_bounds_on_other_metrics():
    study = Gate(at_least={"a": 1.0}, min_kl={"z1": 0.1}, max_ll_gap=0.3)
    merged = study.merged(Gate(at_least={"c": 0.0}, max_ll_gap=None))
    assert merged.at_least == {"a": 1.0, "c": 0.0} and merged.min_kl == {"z1": 0.1}
    assert merged.max_ll_gap is None  # a scalar set by the claim replaces the study's
    assert study.merged(Gate(at_least={"a": 2.0})).at_least == {"a": 2.0}
    assert study.merged(Gate(at_least={})).at_least == {}  # cleared on purpose
