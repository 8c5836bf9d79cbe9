"""Verdicts on the experiment log's statements, from a study's per-seed rows.

A claim compares the mean of a metric under one selection of trials with another selection
(effect = difference of means, 95% CI by Welch's t), two metrics on the same seeds (effect =
mean paired difference, Student's t) or the mean with a threshold (effect = mean minus
threshold, Student's t). Seeds are the unit: every seed of every selected trial is
one observation; diverged seeds are left out. The verdict:

- ``supported``: the whole CI lies on the side the statement expects;
- ``not supported``: the whole CI lies on the other side;
- ``inconclusive``: the CI contains 0 (or there are too few seeds for an interval).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .spec import Claim


@dataclass
class Verdict:
    claim: Claim
    effect: float
    low: float
    high: float
    n: tuple[int, int]
    verdict: str

    def row(self) -> dict[str, Any]:
        c = self.claim
        if c.versus_metric is not None:
            test = f"{_sel(c.where)}: {c.metric} {c.expect} than {c.versus_metric} (paired)"
        elif c.versus is not None:
            test = f"{_sel(c.where)} vs {_sel(c.versus)}: {c.expect}"
        else:
            test = f"{_sel(c.where)}: {c.expect} {c.threshold:g}"
        ci = (f"{self.effect:+.3g} [{self.low:+.3g}, {self.high:+.3g}]"
              if math.isfinite(self.low) else (f"{self.effect:+.3g}" if math.isfinite(self.effect) else "-"))
        n = f"{self.n[0]} vs {self.n[1]}" if c.versus is not None else f"{self.n[0]}"
        return {"statement": c.statement, "metric": c.metric, "test": test,
                "effect [95% CI]": ci, "seeds": n, "verdict": f"**{self.verdict}**"}


def _sel(where: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (where or {}).items()) or "all"


def select(rows: pd.DataFrame, where: dict[str, Any]) -> pd.DataFrame:
    """Rows whose factor (``factor.K``) or config (``config.K``) value equals ``where[K]``."""
    mask = pd.Series(True, index=rows.index)
    for key, value in where.items():
        col = f"factor.{key}" if f"factor.{key}" in rows.columns else f"config.{key}"
        if col not in rows.columns:
            return rows.iloc[0:0]
        mask &= rows[col].map(lambda v: _same(v, value))
    return rows[mask]


def _same(a: Any, b: Any) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return str(a) == str(b)


def _values(rows: pd.DataFrame, metric: str) -> np.ndarray:
    if metric not in rows.columns:
        return np.array([])
    v = rows[metric].astype(float).to_numpy()
    return v[np.isfinite(v)]


def judge(claim: Claim, trials: pd.DataFrame) -> Verdict:
    """The verdict of one claim on completed, non-diverged seeds of ``trials``."""
    ok = trials[trials["trial_status"].isin(["finished", "diverged"]) & (trials["status"] != "diverged")]
    chosen = select(ok, claim.where)
    if claim.versus_metric is not None:  # paired over seeds: metric - versus_metric
        if claim.metric in chosen.columns and claim.versus_metric in chosen.columns:
            diff = (chosen[claim.metric].astype(float) - chosen[claim.versus_metric].astype(float)).to_numpy()
        else:
            diff = np.array([])
        diff = diff[np.isfinite(diff)]
        return _one_sample(claim, diff, 0.0, 1.0 if claim.expect == "higher" else -1.0)
    a = _values(chosen, claim.metric)
    if claim.versus is not None:
        b = _values(select(ok, claim.versus), claim.metric)
        n = (len(a), len(b))
        if len(a) < 2 or len(b) < 2:
            effect = a.mean() - b.mean() if len(a) and len(b) else math.nan
            return Verdict(claim, effect, math.nan, math.nan, n, "inconclusive")
        effect = a.mean() - b.mean()
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        se = math.sqrt(va + vb)
        dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else 1.0
        sign = 1.0 if claim.expect == "higher" else -1.0
        return _verdict(claim, effect, se, dof, sign, n)
    return _one_sample(claim, a, claim.threshold, 1.0 if claim.expect == "above" else -1.0)


def _one_sample(claim: Claim, values: np.ndarray, threshold: float, sign: float) -> Verdict:
    n = (len(values), 0)
    if len(values) < 2:
        effect = values.mean() - threshold if len(values) else math.nan
        return Verdict(claim, effect, math.nan, math.nan, n, "inconclusive")
    return _verdict(claim, values.mean() - threshold, values.std(ddof=1) / math.sqrt(len(values)),
                    len(values) - 1, sign, n)


def _verdict(claim: Claim, effect: float, se: float, dof: float, sign: float,
             n: tuple[int, int]) -> Verdict:
    half = stats.t.ppf(0.975, dof) * se if se > 0 else 0.0
    low, high = effect - half, effect + half
    if sign * low > 0 and sign * high > 0:
        verdict = "supported"
    elif sign * low < 0 and sign * high < 0:
        verdict = "not supported"
    else:
        verdict = "inconclusive"
    return Verdict(claim, float(effect), float(low), float(high), n, verdict)
