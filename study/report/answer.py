"""A study's answer as data: one record per claim, written beside the report as
``report/verdicts.json`` and shown on the study's MLflow parent run (its description, one tag
and a few metrics per claim), so the answer is where researchers look, not only in a page.

A record: ``number`` (1-based, as in the report), ``statement``, ``verdict``, ``evidence``
(*confirmatory* / *exploratory* / "smoke test"), ``headline`` (the report's one-line answer),
``test``, ``effect`` (the claim's effect in the metric's unit: a difference for a comparison,
the value minus the threshold for a threshold claim), ``low`` / ``high`` / ``confidence`` (its
interval and level), ``p`` (the test of no effect) and ``p_holm`` (Holm-adjusted across the
study's claims; for an ``equivalent`` claim, of "outside the margin"), ``p_equivalence_holm``
(the equivalence test's, TOST, where one ran), ``p_holm_text`` (both in words, as the report's
table), ``seeds`` and ``why`` (the gates missed, or the note). Numbers that do not exist are
``None``.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from study.judge.decide import DECIDED, Verdict, describe
from study.report.tables import verdict_counts
from study.store.columns import completed_seeds, factor_columns, factor_name
from study.store.tracking import metric_key

#: the report folder's file of the verdicts, one record per claim
VERDICTS_FILE = "verdicts.json"
#: the evidence of a ``smoke`` budget's verdicts: not findings
SMOKE = "smoke test"


def _number(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def verdict_records(verdicts: list[Verdict], evidence: str) -> list[dict[str, Any]]:
    """One JSON-ready record per claim (see the module docstring)."""
    out = []
    for i, v in enumerate(verdicts, 1):
        r = v.result
        out.append({
            "number": i, "statement": v.claim.statement, "verdict": v.verdict,
            "evidence": evidence, "headline": v.headline(evidence), "test": describe(v.claim),
            "effect": _number(v.effect),
            "low": _number(r.low) if r is not None and r.has_interval else None,
            "high": _number(r.high) if r is not None and r.has_interval else None,
            "confidence": _number(r.confidence) if r is not None else None,
            "p": _number(r.p) if r is not None else None, "p_holm": _number(v.p_holm),
            "p_equivalence_holm": _number(v.p_equivalence_holm),
            "p_holm_text": v.holm_text(),
            "seeds": list(v.seeds),
            "why": "; ".join(map(str, v.gate_failures)) or v.note or None})
    return out


def answer_text(question: str, records: list[dict[str, Any]]) -> str:
    """The verdicts counted, one line per claim (``verdict_records``) and the question: the
    markdown the parent run's description shows (MLflow renders it as markdown, its first
    lines before "Show more", so the answer comes first)."""
    evidence = records[0]["evidence"] if records else ""
    if evidence == SMOKE:
        evidence += ": nothing here is a finding"
    lines = [f"**Answer: {verdict_counts([r['verdict'] for r in records])}** ({evidence})", ""]
    lines += [f"{r['number']}. {r['headline']}" for r in records]
    lines += ["", f"**Question.** {' '.join(question.split())}"]
    return "\n".join(lines)


def answer_tags_and_metrics(records: list[dict[str, Any]]) -> tuple[dict[str, str],
                                                                    dict[str, float]]:
    """The parent run's tags (``claim_N.verdict``, ``claim_N.statement``) and metrics
    (``claim_N.effect``, ``.ci_low``, ``.ci_high``, ``.p_holm``; ``claims.decided``,
    ``claims.inconclusive``, ``claims.untestable``) of the verdict records."""
    tags: dict[str, str] = {}
    metrics: dict[str, float] = {}
    for r in records:
        key = f"claim_{r['number']}"
        smoke = " (smoke test)" if r["evidence"] == SMOKE else ""
        tags[f"{key}.verdict"] = r["verdict"] + smoke
        tags[f"{key}.statement"] = r["statement"][:250]
        for name, field in (("effect", "effect"), ("ci_low", "low"), ("ci_high", "high"),
                            ("p_holm", "p_holm")):
            if r[field] is not None:
                metrics[f"{key}.{name}"] = r[field]
    decided = sum(r["verdict"] in DECIDED for r in records)
    metrics["claims.decided"] = float(decided)
    for kind in ("inconclusive", "untestable"):
        metrics[f"claims.{kind}"] = float(sum(r["verdict"] == kind for r in records))
    return tags, metrics


def configuration_means(trials: pd.DataFrame, responses: list[str]) -> dict[str, float]:
    """``configurations/METRIC/CONFIGURATION`` -> the mean over the configuration's completed
    seeds of each of ``responses``: the parent run's summary metrics, one section of MLflow's
    charts (the configuration named by its factors, ``depth-2`` or
    ``model-vae_exclude_label-0``; MLflow keys allow no ``=`` or ``,``)."""
    done = completed_seeds(trials)
    factors = factor_columns(done)
    if not len(done) or not factors:
        return {}
    out: dict[str, float] = {}
    for keys, g in done.groupby(factors, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        # full precision: sampled values that round alike stay apart
        name = "_".join(f"{factor_name(f)}-{k}" for f, k in zip(factors, keys))
        for r in responses:
            if r in g.columns:
                mean = pd.to_numeric(g[r], errors="coerce").mean()
                if math.isfinite(mean):
                    out[metric_key(f"configurations/{r}/{name}")] = float(mean)
    return out
