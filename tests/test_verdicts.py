"""Verdicts and confidence intervals on constructed per-seed rows with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from study.report import mean_ci
from study.spec import Claim
from study.verdicts import judge


def _rows(values_by_depth: dict[int, list[float]], other: dict[int, list[float]] | None = None):
    rows = []
    for depth, values in values_by_depth.items():
        for seed, v in enumerate(values):
            row = {"trial_id": f"t{depth}", "seed": seed, "factor.depth": depth,
                   "trial_status": "finished", "status": "finished", "m": v}
            if other is not None:
                row["b"] = other[depth][seed]
            rows.append(row)
    return pd.DataFrame(rows)


def test_mean_ci_is_the_student_t_interval():
    v = np.array([1.0, 2.0, 4.0])
    mean, half, n = mean_ci(v)
    assert n == 3 and mean == v.mean()
    assert math.isclose(half, stats.t.ppf(0.975, 2) * v.std(ddof=1) / math.sqrt(3))
    assert math.isnan(mean_ci([5.0])[1]) and mean_ci([np.nan, 1.0])[2] == 1


def test_comparison_verdicts():
    rows = _rows({1: [1.0, 1.1, 0.9], 2: [2.0, 2.1, 1.9], 3: [0.5, 1.6, 1.0]})
    higher = Claim(statement="s", metric="m", where={"depth": 2}, versus={"depth": 1}, expect="higher")
    v = judge(higher, rows)
    assert v.verdict == "supported" and math.isclose(v.effect, 1.0) and v.low > 0 and v.n == (3, 3)
    lower = higher.model_copy(update={"expect": "lower"})
    assert judge(lower, rows).verdict == "not supported"
    noisy = Claim(statement="s", metric="m", where={"depth": 3}, versus={"depth": 1}, expect="higher")
    assert judge(noisy, rows).verdict == "inconclusive"
    missing = Claim(statement="s", metric="m", where={"depth": 9}, versus={"depth": 1}, expect="higher")
    assert judge(missing, rows).verdict == "inconclusive"


def test_threshold_and_paired_verdicts_and_diverged_seeds_left_out():
    rows = _rows({4: [0.0, 0.0, 0.1]}, other={4: [0.5, 0.6, 0.7]})
    below = Claim(statement="s", metric="m", where={"depth": 4}, expect="below", threshold=1.0)
    assert judge(below, rows).verdict == "supported"
    above = below.model_copy(update={"expect": "above"})
    assert judge(above, rows).verdict == "not supported"
    paired = Claim(statement="s", metric="b", versus_metric="m", where={"depth": 4}, expect="higher")
    v = judge(paired, rows)
    assert v.verdict == "supported" and math.isclose(v.effect, 0.5666666, rel_tol=1e-5)
    rows.loc[2, "status"] = "diverged"
    assert judge(below, rows).n == (2, 0)
