"""Verdicts on the experiment log's statements, from a study's per-seed rows.

The seed is the unit of replication: seed s of every configuration shares its data draw and its
initialisation stream (common random numbers, ``study.data``), so a claim reduces each seed to
one number and compares configurations seed by seed (paired):

- ``versus``: metric under ``where`` minus metric under ``versus``, per seed (each side the mean
  over the configurations it selects, for that seed);
- ``versus_metric``: metric minus versus_metric on the same rows, per seed;
- a threshold: metric (mean over the selected configurations) minus the threshold, per seed.

Those per-seed values are tested with ``study.judge.stats`` (t, or the exact sign test when they do not
vary; equivalence by TOST within a declared ``margin``), the p-values adjusted by Holm across
the study's claims, and each claim gets one of:

- *supported* / *not supported*: the Holm-adjusted test rejects "no effect", and the effect lies
  on the side the statement expects / on the other side (for "no difference" claims: supported
  when equivalence within the margin is shown, not supported when the interval lies outside it);
- *equivalent*: the difference is shown to lie within the claim's margin;
- *inconclusive*: none of these, with the number of seeds that would decide it at the observed
  effect and spread;
- *untestable*: the claim's configurations miss its gate (``spec.Gate``: e.g. not within G nats
  of the exact density, a layer without information): the models did not learn what the claim
  is about, so no test is run.

A claim about a single trained model (one seed) and an AUROC threshold is decided by a
bootstrap interval over its test points instead (``stats.auroc_interval``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from study.judge import stats
from study.spec.claims import SAMPLE_GATES, Claim, Gate
from study.spec.metric_names import detection_key, is_kl, model_free, split_detection
from study.store.columns import completed_seeds, factor_columns, factor_name, select


@dataclass
class Verdict:
    claim: Claim
    verdict: str
    result: stats.TestResult | None = None
    equivalence: stats.TestResult | None = None
    p_holm: float = math.nan
    p_equivalence_holm: float = math.nan
    seeds: tuple[int, int] = (0, 0)
    gate_failures: list[GateCheck] = field(default_factory=list)  # the bounds missed
    needed: int | None = None
    note: str = ""
    values: np.ndarray = field(default_factory=lambda: np.array([]))

    @property
    def effect(self) -> float:
        return self.result.effect if self.result is not None else math.nan

    @property
    def layer_inactive(self) -> bool:
        """Untestable only because a layer the claim relies on carries too little information
        (every missed bound is a ``min_kl`` one): longer training need not change that."""
        return self.verdict == "untestable" and bool(self.gate_failures) and all(
            is_kl(c.metric) for c in self.gate_failures)

    def row(self) -> dict[str, Any]:
        c = self.claim
        r = self.result
        if r is None or not math.isfinite(r.effect):
            effect = "-"
        elif r.has_interval:
            effect = f"{r.effect:+.3g} [{r.low:+.3g}, {r.high:+.3g}]"
        else:
            what = "median; " if c.test == "sign" else ""  # a sign test's effect is the median
            effect = f"{r.effect:+.3g} ({what}no interval: {r.test})"
        seeds = f"{self.seeds[0]} vs {self.seeds[1]}" if c.versus is not None else f"{self.seeds[0]}"
        p = "-" if r is None or not math.isfinite(r.p) else f"{r.p:.3g} ({r.test})"
        holm = "-" if not math.isfinite(self.p_holm) else f"{self.p_holm:.3g}"
        if math.isfinite(self.p_equivalence_holm):
            holm += f"; TOST ±{c.margin:g}: {self.p_equivalence_holm:.3g}"
        why = "; ".join(map(str, self.gate_failures)) or self.note
        if self.verdict == "inconclusive" and self.needed:
            why = (why + "; " if why else "") + f"about {self.needed} seeds would decide it"
        return {"statement": c.statement, "test": describe(c), "effect [95% CI]": effect,
                "seeds": seeds, "p": p, "p (Holm)": holm, "verdict": f"**{self.verdict}**",
                "why": why or "-"}


def describe(c: Claim) -> str:
    sel = lambda w: ", ".join(f"{k}={v}" for k, v in (w or {}).items()) or "all"  # noqa: E731
    if c.versus_metric is not None:
        return f"{sel(c.where)}: {c.metric} {c.expect} than {c.versus_metric} (paired)"
    if c.versus is not None:
        return f"{c.metric}: {sel(c.where)} vs {sel(c.versus)}: {c.expect} (paired by seed)"
    what = f"within ±{c.margin:g} of" if c.expect == "equivalent" else c.expect
    return f"{c.metric} at {sel(c.where)}: {what} {c.threshold:g}"


# ---------------------------------------------------------------------- per-seed values
def _per_seed(rows: pd.DataFrame, values: pd.Series) -> pd.Series:
    """Mean over the selected configurations of each seed."""
    return values.groupby(rows["seed"]).mean()


def claim_values(claim: Claim, trials: pd.DataFrame) -> tuple[np.ndarray, tuple[int, int]]:
    """The claim's per-seed values (see the module docstring) and the seeds on each side."""
    ok = completed_seeds(trials)
    a = select(ok, claim.where)
    if claim.metric not in a.columns:
        return np.array([]), (0, 0)
    va = pd.to_numeric(a[claim.metric], errors="coerce")
    if claim.versus_metric is not None:
        if claim.versus_metric not in a.columns:
            return np.array([]), (0, 0)
        diff = va - pd.to_numeric(a[claim.versus_metric], errors="coerce")
        d = _per_seed(a, diff).dropna()
        return d.to_numpy(), (len(d), len(d))
    per_a = _per_seed(a, va).dropna()
    if claim.versus is None:
        return (per_a - (claim.threshold or 0.0)).to_numpy(), (len(per_a), 0)
    b = select(ok, claim.versus)
    per_b = _per_seed(b, pd.to_numeric(b[claim.metric], errors="coerce")).dropna() \
        if claim.metric in b.columns else pd.Series(dtype=float)
    shared = per_a.index.intersection(per_b.index)
    return (per_a[shared] - per_b[shared]).to_numpy(), (len(per_a), len(per_b))


@dataclass(frozen=True)
class GateCheck:
    """One bound of a gate against the configuration that comes closest to missing it (the
    worst mean over seeds among the configurations a claim selects)."""

    metric: str
    op: str        # ">=" or "<="
    bound: float
    worst: float   # the worst configuration's mean over its seeds
    where: str     # that configuration, as "factor=level, ..."

    @property
    def passed(self) -> bool:
        return self.worst >= self.bound if self.op == ">=" else self.worst <= self.bound

    def __str__(self) -> str:
        value = f"{self.metric} {self.worst:.3g}"
        if self.passed:
            return f"{value} {self.op} {self.bound:g} (worst: {self.where})"
        return f"{value} {'<' if self.op == '>=' else '>'} {self.bound:g} ({self.where})"


def gate_checks(claim: Claim, gate: Gate, trials: pd.DataFrame) -> list[GateCheck]:
    """Each bound of ``gate`` against the configurations the claim selects (mean over their
    seeds): its worst configuration, or every configuration that misses it. Bounds on metrics
    a configuration does not have (e.g. ``ll_gap`` of noise-free data) do not apply to it, nor
    do the sample bounds (``SAMPLE_GATES``) where ``max_ll_gap`` judges the fit (data with a
    density), and
    a claim about a model-free number (a complexity baseline, an exact-density reference:
    ``metric_names.model_free``) has no gate."""
    if model_free(claim.metric) and (claim.versus_metric is None or
                                     model_free(claim.versus_metric)):
        return []  # the same number whatever the models learned: nothing to gate
    ok = completed_seeds(trials)
    chosen = pd.concat([select(ok, claim.where)] +
                       ([select(ok, claim.versus)] if claim.versus is not None else []))
    if not len(chosen):
        return []
    factors = factor_columns(chosen)
    groups = list(chosen.groupby(factors, dropna=False, sort=True)) if factors else [((), chosen)]
    out = []
    for metric, op, bound in gate.bounds():
        checks = []
        for key, g in groups:
            if metric not in g.columns or (metric in SAMPLE_GATES
                                           and gate.max_ll_gap is not None and _has_density(g)):
                continue
            value = pd.to_numeric(g[metric], errors="coerce").mean()
            if not math.isfinite(value):
                continue
            key = key if isinstance(key, tuple) else (key,)
            label = ", ".join(f"{factor_name(f)}={k}" for f, k in zip(factors, key)) or "all"
            checks.append(GateCheck(metric, op, bound, float(value), label))
        failed = [c for c in checks if not c.passed]
        if failed:
            out += failed
        elif checks:
            out.append(min(checks, key=lambda c: c.worst if op == ">=" else -c.worst))
    return out


def _has_density(g: pd.DataFrame) -> bool:
    """Whether a configuration's data have an exact density (its ``ll_gap`` is defined)."""
    return "ll_gap" in g.columns and bool(np.isfinite(pd.to_numeric(g["ll_gap"],
                                                                      errors="coerce")).any())


def missed_gates(claim: Claim, gate: Gate, trials: pd.DataFrame) -> list[GateCheck]:
    """Each bound of ``gate`` that a configuration the claim selects misses (mean over its
    seeds)."""
    return [c for c in gate_checks(claim, gate, trials) if not c.passed]


def gate_failures(claim: Claim, gate: Gate, trials: pd.DataFrame) -> list[str]:
    """``missed_gates`` as ``metric value < bound (configuration)``."""
    return [str(c) for c in missed_gates(claim, gate, trials)]


# ---------------------------------------------------------------------- verdicts
def _single_model_auroc(claim: Claim, trials: pd.DataFrame,
                        scores: pd.DataFrame | None) -> Verdict | None:
    """One seed, an AUROC against a threshold: a bootstrap interval over its test points. A
    model-free AUROC (a complexity baseline: the same number for every seed) is one measurement
    too, so it is decided the same way, on the first seed's scores."""
    if scores is None or claim.versus is not None or claim.versus_metric is not None or \
            detection_key(claim.metric) != "auroc" or claim.expect == "equivalent":
        return None
    rows = select(completed_seeds(trials), claim.where)
    if not len(rows) or (len(rows) > 1 and not model_free(claim.metric)) or \
            "trial_id" not in scores.columns:
        return None
    row = rows.iloc[0]
    mine = scores[(scores["trial_id"] == row["trial_id"]) & (scores["seed"] == row["seed"])]
    split = split_detection(claim.metric, list(mine["score"].unique()))
    if split is not None:
        score, ood_set = split
        inside = mine[(mine["score"] == score) & (mine["set"] == "test")]["value"].to_numpy()
        outside = mine[(mine["score"] == score) & (mine["set"] == ood_set)]["value"].to_numpy()
        if not len(inside) or not len(outside):
            return None
        auc, low, high = stats.auroc_interval(inside, outside)
        t = claim.threshold or 0.0
        what = "a model-free score" if model_free(claim.metric) else "one model"
        r = stats.TestResult(auc - t, low - t, high - t, math.nan,
                             f"bootstrap over test points ({what})", 1)
        side = claim.sign
        verdict = "supported" if side * r.low > 0 and side * r.high > 0 else \
            "not supported" if side * r.low < 0 and side * r.high < 0 else "inconclusive"
        return Verdict(claim, verdict, r, seeds=(1, 0),
                       note=f"{what}: {len(inside)} + {len(outside)} test points")
    return None


def judge_all(claims: list[Claim], trials: pd.DataFrame, gates: Gate | None = None,
              alpha: float = stats.ALPHA, scores: pd.DataFrame | None = None) -> list[Verdict]:
    """The verdict of every claim of a study (Holm across them; see the module docstring)."""
    gates = gates or Gate()
    verdicts: list[Verdict] = []
    for claim in claims:
        failures = missed_gates(claim, gates.merged(claim.gate), trials)
        if failures:
            verdicts.append(Verdict(claim, "untestable", gate_failures=failures))
            continue
        single = _single_model_auroc(claim, trials, scores)
        if single is not None:
            verdicts.append(single)
            continue
        d, seeds = claim_values(claim, trials)
        result = stats.location_test(d, alpha, test=claim.test)
        eq = stats.equivalence_test(d, claim.margin) if claim.margin is not None else None
        v = Verdict(claim, "inconclusive", result, eq, seeds=seeds, values=d)
        if result.n == 0:
            v.verdict, v.note = "inconclusive", "no completed seeds in the selection"
        verdicts.append(v)
    tested = [v for v in verdicts if v.result is not None and math.isfinite(v.result.p)]
    for v, p in zip(tested, stats.holm([v.result.p for v in tested])):
        v.p_holm = p
    with_margin = [v for v in tested if v.equivalence is not None and math.isfinite(v.equivalence.p)]
    for v, p in zip(with_margin, stats.holm([v.equivalence.p for v in with_margin])):
        v.p_equivalence_holm = p
    m = max(1, len(tested))
    for v in tested:
        _decide(v, alpha, m)
    return verdicts


def _decide(v: Verdict, alpha: float, m: int) -> None:
    c, r = v.claim, v.result
    equivalent = math.isfinite(v.p_equivalence_holm) and v.p_equivalence_holm < alpha
    if c.expect == "equivalent":
        outside = r.has_interval and (r.low > c.margin or r.high < -c.margin)
        v.verdict = "supported" if equivalent else "not supported" if \
            (v.p_holm < alpha and outside) else "inconclusive"
    elif v.p_holm < alpha:
        v.verdict = "supported" if np.sign(r.effect) == c.sign else "not supported"
    elif equivalent:
        v.verdict = "equivalent"
    else:
        v.verdict = "inconclusive"
    if v.verdict == "inconclusive":
        # the seeds that would decide it at the observed effect and spread, at the level a
        # claim of this family needs in the worst case of Holm's procedure
        v.needed = stats.seeds_needed(v.values, alpha / m, test=c.test)
