"""Verdicts on the experiment log's statements, from a study's per-seed rows.

The seed is the unit of replication: seed s of every configuration shares its data draw and its
initialisation stream (common random numbers, ``study.data``), so a claim reduces each seed to
one number and compares configurations seed by seed (paired):

- ``versus``: metric under ``where`` minus metric under ``versus``, per seed (each side the mean
  over the configurations it selects, for that seed);
- ``versus_metric``: metric minus versus_metric on the same rows, per seed;
- a threshold: metric (mean over the selected configurations) minus the threshold, per seed.

Before any test, the claim's gate (``spec.Gate``: the fit to the exact density or the curve,
every layer the claim relies on carrying information, ...) is checked on every seed of every
configuration it selects: one seed that misses a bound makes the claim *untestable* (the
models did not learn what it is about), and the report prints how many seeds of each
configuration pass each bound (``gate_counts``). The rest is ``study.judge.decide.decide``:
the test the claim is about (mean: paired t; median: exact sign test), Holm across the study's
claims, the verdict. A claim about a single trained model (one seed) or a model-free score and
an AUROC threshold is tested by a bootstrap over its test points (``stats.auroc_test``) and
counts in the same Holm family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from study.judge import stats
from study.judge.decide import Verdict, decide, describe
from study.spec.claims import SAMPLE_GATES, Claim, Gate
from study.spec.metric_names import (
    FIT_METRICS,
    detection_key,
    latent_layers,
    layers_used,
    model_free,
    model_free_claim,
    split_detection,
)
from study.store.columns import (
    COMPLETED,
    completed_seeds,
    factor_columns,
    factor_name,
    select,
)

__all__ = ["GateCheck", "Verdict", "claim_values", "describe", "gate_checks", "gate_counts",
           "judge_all", "missed_gates"]


# ---------------------------------------------------------------------- per-seed values
def _per_seed(rows: pd.DataFrame, values: pd.Series) -> pd.Series:
    """Mean over the selected configurations of each seed."""
    return values.groupby(rows["seed"]).mean()


def _claim_rows(claim: Claim, trials: pd.DataFrame) -> pd.DataFrame:
    """The rows a claim's values come from: completed seeds, and, for a claim about divergence
    (``divergence_jumps``), the diverged seeds too, their divergence counted as one more jump
    (dropping them would hide exactly what the claim is about)."""
    if claim.metric != "divergence_jumps" or not len(trials):
        return completed_seeds(trials)
    rows = trials[trials["trial_status"].isin(COMPLETED)].copy()
    if "divergence_jumps" in rows.columns:
        diverged = (rows["seed_status"] == "diverged").astype(float)
        jumps = pd.to_numeric(rows["divergence_jumps"], errors="coerce")
        rows["divergence_jumps"] = jumps.where(diverged == 0, jumps.fillna(0.0)) + diverged
    return rows


def claim_values(claim: Claim, trials: pd.DataFrame) -> tuple[np.ndarray, tuple[int, int]]:
    """The claim's per-seed values (see the module docstring) and the seeds on each side."""
    ok = _claim_rows(claim, trials)
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
    """One bound of a gate against one configuration the claim selects: how many of its
    completed seeds pass, and the value of its worst seed. It passes when every seed does."""

    metric: str
    op: str        # ">=" or "<="
    bound: float
    worst: float   # the value of the configuration's worst seed
    where: str     # that configuration, as "factor=level, ..."
    passing: int = 0  # its seeds that pass
    seeds: int = 0    # its seeds: completed, diverged ones and ones without a value included
    diverged: int = 0  # of them, diverged (each a miss)

    @property
    def passed(self) -> bool:
        return self.passing == self.seeds > 0

    @property
    def text(self) -> str:
        """The bound as a column header: ``ll_gap >= -0.3``."""
        return f"{self.metric} {self.op} {self.bound:g}"

    def __str__(self) -> str:
        if self.passed:
            return (f"{self.text}: all {self.seeds} seeds pass (worst {self.worst:.3g}: "
                    f"{self.where})")
        lost = f", {self.diverged} diverged" if self.diverged else ""
        return (f"{self.text}: {self.passing}/{self.seeds} seeds pass{lost} (worst "
                f"{self.worst:.3g}: {self.where})")


def claim_bounds(claim: Claim, gate: Gate, layers: list[str]) -> list[tuple[str, str, float]]:
    """Every bound a claim's models must meet: the gate's own, without those on the claim's
    own metric when it is a fit metric (a claim about the fit is judged by it, not gated on
    it), and a KL bound for each layer the claim relies on (``metric_names.layers_used``)."""
    out = [b for b in gate.bounds() if not (b[0] in FIT_METRICS and b[0] == claim.metric)]
    have = {m for m, _, _ in out}
    for name in layers_used(claim.metric, layers):
        if f"kl_{name}" not in have:
            out.append((f"kl_{name}", ">=", gate.min_layer_kl))
    return out


def _layers(rows: pd.DataFrame) -> list[str]:
    """The latent layers of the rows' models, bottom first (their KL columns with values)."""
    return latent_layers([c for c in rows.columns if rows[c].notna().any()])


def gate_checks(claim: Claim, gate: Gate, trials: pd.DataFrame) -> list[GateCheck]:
    """Each bound of the claim (``claim_bounds``) against the configurations it selects, seed
    by seed: every configuration that misses it, or else the one whose worst seed comes
    closest. Bounds on metrics a configuration does not have (e.g. ``ll_gap`` of noise-free
    data) do not apply to it, nor do the sample bounds (``SAMPLE_GATES``) where ``max_ll_gap``
    judges the fit (data with a density), and a claim about a model-free number (a complexity
    baseline, an exact-density reference: ``metric_names.model_free``) has no gate."""
    if model_free_claim(claim.metric, claim.versus_metric):
        return []  # the same number whatever the models learned: nothing to gate
    out = []
    for bound, checks in _bound_checks(claim, gate, trials).items():
        failed = [c for c in checks if not c.passed]
        if failed:
            out += failed
        elif checks:
            op = bound[1]
            out.append(min(checks, key=lambda c: c.worst if op == ">=" else -c.worst))
    return out


def _bound_checks(claim: Claim, gate: Gate,
                  trials: pd.DataFrame) -> dict[tuple[str, str, float], list[GateCheck]]:
    """Per bound of the claim, its check on each selected configuration that has the metric.
    Every seed of a completed trial counts: a diverged seed misses every bound (its
    configuration did not learn the data in that seed; keeping only the survivors would judge
    the claim on a selected subset), except for a claim about divergence, whose values count
    it (its gates see the seeds that did not diverge); a seed without a value of a metric its
    configuration has elsewhere misses too."""
    ok = completed_seeds(trials) if claim.metric == "divergence_jumps" else \
        trials[trials["trial_status"].isin(COMPLETED)] if len(trials) else trials
    chosen = pd.concat([select(ok, claim.where)] +
                       ([select(ok, claim.versus)] if claim.versus is not None else []))
    if not len(chosen):
        return {}
    chosen = chosen.drop_duplicates(subset=["trial_id", "seed"]) \
        if {"trial_id", "seed"} <= set(chosen.columns) else chosen
    factors = factor_columns(chosen)
    groups = list(chosen.groupby(factors, dropna=False, sort=True)) if factors else [((), chosen)]
    out: dict[tuple[str, str, float], list[GateCheck]] = {}
    for metric, op, bound in claim_bounds(claim, gate, _layers(chosen)):
        checks = []
        for key, g in groups:
            if metric not in g.columns or (metric in SAMPLE_GATES
                                           and gate.max_ll_gap is not None and _has_density(g)):
                continue
            every = pd.to_numeric(g[metric], errors="coerce").to_numpy(float)
            diverged = (g["seed_status"] == "diverged").to_numpy() \
                if "seed_status" in g.columns else np.zeros(len(g), bool)
            values = every[np.isfinite(every) & ~diverged]
            if not len(values) and not diverged.all():
                continue  # a metric this configuration does not have (e.g. no exact density)
            passing = int((values >= bound).sum() if op == ">=" else (values <= bound).sum())
            worst = math.nan if not len(values) else \
                float(values.min() if op == ">=" else values.max())
            key = key if isinstance(key, tuple) else (key,)
            label = ", ".join(f"{factor_name(f)}={k}" for f, k in zip(factors, key)) or "all"
            checks.append(GateCheck(metric, op, bound, worst, label, passing, len(g),
                                    int(diverged.sum())))
        out[(metric, op, bound)] = checks
    return out


def gate_counts(claims: list[Claim], gates: Gate, trials: pd.DataFrame) -> pd.DataFrame:
    """Per configuration a claim selects, how many of its seeds pass each bound of the claims'
    gates ("4/5"; "-" where a bound does not apply): the table under the verdicts."""
    cells: dict[str, dict[str, str]] = {}
    for claim in claims:
        if model_free_claim(claim.metric, claim.versus_metric):
            continue
        for bound, checks in _bound_checks(claim, gates.merged(claim.gate), trials).items():
            for c in checks:
                cells.setdefault(c.where, {})[c.text] = f"{c.passing}/{c.seeds}"
    columns = sorted({k for row in cells.values() for k in row})
    return pd.DataFrame([{"configuration": where} | {k: row.get(k, "-") for k in columns}
                         for where, row in sorted(cells.items())])


def _has_density(g: pd.DataFrame) -> bool:
    """Whether a configuration's data have an exact density (its ``ll_gap`` is defined)."""
    return "ll_gap" in g.columns and bool(np.isfinite(pd.to_numeric(g["ll_gap"],
                                                                      errors="coerce")).any())


def missed_gates(claim: Claim, gate: Gate, trials: pd.DataFrame) -> list[GateCheck]:
    """Each bound of ``gate`` that a configuration the claim selects misses in some seed."""
    return [c for c in gate_checks(claim, gate, trials) if not c.passed]


def gate_failures(claim: Claim, gate: Gate, trials: pd.DataFrame) -> list[str]:
    """``missed_gates`` in words."""
    return [str(c) for c in missed_gates(claim, gate, trials)]


# ---------------------------------------------------------------------- verdicts
def single_model_claim(claim: Claim, seeds: int) -> bool:
    """Whether ``claim`` at ``seeds`` seeds is about one measurement of an AUROC against a
    threshold, decided by a bootstrap over the test points: one model (one seed), or a
    model-free score (a complexity baseline: the same number for every seed)."""
    return (not claim.compares and claim.expect != "equivalent"
            and detection_key(claim.metric) == "auroc"
            and (model_free(claim.metric) or seeds == 1))


def _single_model_auroc(claim: Claim, trials: pd.DataFrame, scores: pd.DataFrame | None,
                        alpha: float) -> stats.TestResult | None:
    """A ``single_model_claim``'s bootstrap over the test points of its first seed's scores."""
    if scores is None or "trial_id" not in scores.columns:
        return None
    rows = select(completed_seeds(trials), claim.where)
    if not len(rows) or not single_model_claim(claim, len(rows)):
        return None
    row = rows.iloc[0]
    mine = scores[(scores["trial_id"] == row["trial_id"]) & (scores["seed"] == row["seed"])]
    split = split_detection(claim.metric, list(mine["score"].unique()))
    if split is None:
        return None
    score, ood_set = split
    inside = mine[(mine["score"] == score) & (mine["set"] == "test")]["value"].to_numpy()
    outside = mine[(mine["score"] == score) & (mine["set"] == ood_set)]["value"].to_numpy()
    if not len(inside) or not len(outside):
        return None
    r = stats.auroc_test(inside, outside, claim.threshold or 0.0, alpha)
    what = "a model-free score" if model_free(claim.metric) else "one model"
    return stats.TestResult(r.effect, r.low, r.high, r.p, f"{r.test} ({what})", r.n,
                            r.confidence)


def judge_all(claims: list[Claim], trials: pd.DataFrame, gates: Gate | None = None,
              alpha: float = stats.ALPHA, scores: pd.DataFrame | None = None) -> list[Verdict]:
    """The verdict of every claim of a study: gates first (a miss: *untestable*), then the
    per-seed values (or a single model's bootstrap) of the others through
    ``decide.decide``, one Holm family at level ``alpha``."""
    gates = gates or Gate()
    verdicts: list[Verdict | None] = []
    tested: list[tuple[int, Claim, Any, tuple[int, int]]] = []
    for i, claim in enumerate(claims):
        failures = missed_gates(claim, gates.merged(claim.gate), trials)
        if failures:
            verdicts.append(Verdict(claim, "untestable", gate_failures=failures))
            continue
        verdicts.append(None)
        single = _single_model_auroc(claim, trials, scores, alpha)
        if single is not None:
            tested.append((i, claim, single, (1, 0)))
            continue
        d, seeds = claim_values(claim, trials)
        tested.append((i, claim, d, seeds))
    decided = decide([t[1] for t in tested], [t[2] for t in tested], alpha)
    for (i, _, value, seeds), v in zip(tested, decided):
        v.seeds = seeds
        if isinstance(value, stats.TestResult):
            v.note = f"{value.test}: {value.n} test points"
        verdicts[i] = v
    return [v for v in verdicts if v is not None]
