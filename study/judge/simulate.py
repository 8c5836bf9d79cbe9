"""The verdict procedure's error rates by simulation: ``decide`` (or ``decide_sequentially``)
driven with per-seed values drawn under no effect, at a study's own claims and seeds.

Under no effect each claim's per-seed values are drawn as its null hypothesis says:

- a comparison about the mean: ``X_a - X_b`` with X_a, X_b independent draws of one
  distribution (the configurations are exchangeable, so the difference is symmetric about 0);
- a claim about the median (every threshold claim): ``X - median(X)``: the threshold sits
  exactly at the median of the metric's distribution.

A *false verdict* is any decision other than *inconclusive* that the null makes wrong: a
directional claim *supported* or *not supported*, an equivalence claim *not supported*. The
family-wise rate (any claim of the study wrong in one simulated study) must stay at or below
alpha. ``power`` is the mean share of a study's directional claims *supported* when every
claim's per-seed values are N(effect, 1) on its expected side (mean claims) or shifted by
``effect`` standard deviations (median claims: P(value on the expected side) = Phi(effect)).
``benchmarks/verdict_error_rates.py`` prints both for every study; tests/test_decide.py
asserts the rates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from study.judge.decide import decide
from study.judge.sequential import Design, decide_sequentially
from study.spec.claims import Claim

Draw = Callable[[np.random.Generator, int], np.ndarray]

#: probability of a "stuck seed" in the bimodal distribution, and its offset (in units of the
#: main mode's spread): a seed whose model learned something else entirely
STUCK_P, STUCK_AT, STUCK_SD = 0.2, -30.0, 1.0


def _bimodal(rng: np.random.Generator, n: int) -> np.ndarray:
    stuck = rng.random(n) < STUCK_P
    return np.where(stuck, rng.normal(STUCK_AT, STUCK_SD, n), rng.normal(0.0, 1.0, n))


#: the distributions of per-seed metrics the procedure must be valid for: name -> (draw, median)
DISTRIBUTIONS: dict[str, tuple[Draw, float]] = {
    "normal": (lambda rng, n: rng.normal(0.0, 1.0, n), 0.0),
    "t3": (lambda rng, n: rng.standard_t(3, n), 0.0),
    "lognormal 0.5": (lambda rng, n: rng.lognormal(0.0, 0.5, n), 1.0),
    "lognormal 1.0": (lambda rng, n: rng.lognormal(0.0, 1.0, n), 1.0),
    "lognormal 1.5": (lambda rng, n: rng.lognormal(0.0, 1.5, n), 1.0),
    # the median of the mixture lies in the main mode: P(main <= m) = (0.5 - p) / (1 - p)
    "bimodal (stuck seed)": (_bimodal, float(sps.norm.ppf((0.5 - STUCK_P) / (1 - STUCK_P)))),
    # counts with ties (divergence jumps): many seeds exactly at the median, 1
    "tied (Poisson 0.7)": (lambda rng, n: rng.poisson(0.7, n).astype(float), 1.0),
}


def null_values(claim: Claim, n: int, draw: Draw, median: float,
                rng: np.random.Generator) -> np.ndarray:
    """``[n]`` per-seed values of ``claim`` under no effect (see the module docstring)."""
    if claim.compares:  # mean or median: the difference is symmetric about 0
        return draw(rng, n) - draw(rng, n)
    return draw(rng, n) - median


def wrong(claim: Claim, verdict: str) -> bool:
    """Whether ``verdict`` is false when the claim's effect is zero."""
    if claim.expect == "equivalent":
        return verdict == "not supported"
    return verdict in ("supported", "not supported")


@dataclass(frozen=True)
class Rates:
    """Simulated rates: ``false`` (family-wise), with its binomial standard error, over
    ``sims`` simulated studies."""

    false: float
    se: float
    sims: int


def _verdicts(claims: list[Claim], values: list[np.ndarray], alpha: float,
              design: Design | None) -> list[str]:
    if design is None:
        return [v.verdict for v in decide(claims, values, alpha, needed=False)]
    return [v.verdict for v in decide_sequentially(claims, values, design, needed=False)]


def false_verdicts(claims: list[Claim], seeds: int, distribution: str, sims: int,
                   rng: np.random.Generator, alpha: float = 0.05,
                   design: Design | None = None) -> Rates:
    """The family-wise rate of false verdicts of ``claims`` at ``seeds`` seeds (or under the
    sequential ``design``, up to its ``max_seeds``) when nothing differs."""
    draw, median = DISTRIBUTIONS[distribution]
    n = design.max_seeds if design is not None else seeds
    hits = 0
    for _ in range(sims):
        values = [null_values(c, n, draw, median, rng) for c in claims]
        verdicts = _verdicts(claims, values, alpha, design)
        hits += any(wrong(c, v) for c, v in zip(claims, verdicts))
    rate = hits / sims
    return Rates(rate, float(np.sqrt(max(rate * (1 - rate), 1e-4) / sims)), sims)


def power(claims: list[Claim], seeds: int, effect: float, sims: int,
          rng: np.random.Generator, alpha: float = 0.05, design: Design | None = None) -> float:
    """The mean share of the directional claims *supported* when each has per-seed values
    N(effect, 1) on its expected side (see the module docstring); NaN without any."""
    directional = [c for c in claims if c.expect != "equivalent"]
    if not directional:
        return float("nan")
    n = design.max_seeds if design is not None else seeds
    share = 0.0
    for _ in range(sims):
        values = [c.sign * effect + rng.normal(0.0, 1.0, n) for c in directional]
        verdicts = _verdicts(directional, values, alpha, design)
        share += np.mean([v == "supported" for v in verdicts])
    return share / sims
