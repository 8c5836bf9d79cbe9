"""Deciding a study's claims from their per-seed values: the one procedure every verdict uses.

``decide(claims, values, alpha)`` is public so that anyone can simulate the procedure without
running a study (tests/test_decide.py does, at each study's own seed counts): each claim's
values are tested as its ``Claim.tested_on`` says (the paired t test of a mean, the exact sign
test of a median; ``study.judge.stats``), or arrive already tested (one model's bootstrap over
its test points, a ``stats.TestResult``); the p-values are Holm-adjusted across the claims
given (the study's family: every claim that was tested, model-free ones included; a claim's
equivalence test within its margin in the same family, ``stats.grouped_holm``); and each
claim gets one of

- *supported* / *not supported*: the adjusted test rejects "no effect" and the effect lies on
  the side the statement expects / on the other side (an ``equivalent`` claim: supported when
  equivalence within its margin is shown, not supported when the effect is shown to lie
  outside it);
- *equivalent*: a directional claim whose difference is shown to lie within its margin;
- *inconclusive*: none of these, with the seeds that would decide it.

``study.judge.verdicts.judge_all`` adds what needs a study's rows: the per-seed values, the
gates (a claim whose models miss them is *untestable* and never reaches ``decide``) and the
single-model bootstrap; ``study.judge.sequential`` calls it at each look's level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from study.judge import stats
from study.spec.claims import Claim
from study.spec.metric_names import is_kl, unit

DECIDED = ("supported", "not supported", "equivalent")


@dataclass
class Verdict:
    """A claim's verdict. ``values``: its per-seed values (empty for a single-model claim);
    ``seeds``: the seeds on each side; ``gate_failures``: the bounds its models missed;
    ``needed``: seeds that would decide an inconclusive claim; ``note``: why, in words."""

    claim: Claim
    verdict: str
    result: stats.TestResult | None = None
    equivalence: stats.TestResult | None = None
    p_holm: float = math.nan
    p_equivalence_holm: float = math.nan
    p_outside: float = math.nan  # an ``equivalent`` claim: p of "within the margin"
    seeds: tuple[int, int] = (0, 0)
    gate_failures: list[Any] = field(default_factory=list)  # verdicts.GateCheck, the misses
    needed: int | None = None
    note: str = ""
    values: np.ndarray = field(default_factory=lambda: np.array([]))
    family: int = 1  # claims tested in the Holm family that decided this one
    level: float = stats.ALPHA  # the family-wise level it was tested at

    @property
    def effect(self) -> float:
        return self.result.effect if self.result is not None else math.nan

    @property
    def layer_inactive(self) -> bool:
        """Untestable only because a layer the claim relies on carries too little information
        (every missed bound is a layer's KL): longer training need not change that."""
        return self.verdict == "untestable" and bool(self.gate_failures) and all(
            is_kl(c.metric) for c in self.gate_failures)

    @property
    def all_zero(self) -> bool:
        """Every seed's value is exactly 0: no difference between the configurations (or the
        value exactly at the threshold) in any seed, e.g. no divergence jump anywhere."""
        return len(self.values) >= 1 and bool(np.all(self.values == 0))

    @property
    def single_model(self) -> bool:
        return self.result is not None and self.result.test.startswith("bootstrap")

    def would_change(self) -> str:
        """One line on what would change this verdict, right for its test and outcome."""
        c = self.claim
        if self.verdict == "untestable":
            if self.layer_inactive:
                return ("models in which the layer carries information: it is inactive here "
                        "(KL under the gate), so the claim is about something these models do "
                        "not have; more seeds cannot help")
            return ("models that reach the gate in every seed: longer training (the `full` "
                    "budget, on a GPU cluster); more seeds cannot help")
        if self.verdict in DECIDED:
            if self.single_model:
                return ("decided for this one model; other trained models (seeds) would say "
                        "whether it holds beyond it")
            if self.verdict == "equivalent" or c.expect == "equivalent":
                return (f"an effect beyond the margin ±{c.margin:g} in better-trained models "
                        "(a longer budget); a narrower margin needs more seeds")
            return ("decided at this budget; better-trained models (a longer budget) could "
                    "move the effect, more seeds would only narrow it")
        if self.all_zero:
            return (f"not reproduced at this budget: in all {len(self.values)} seeds the value "
                    "is exactly 0 (no difference, or exactly the threshold), so no number of "
                    "seeds changes it; a budget or setting in which the effect occurs would")
        n = self.result.n if self.result is not None else 0
        about = c.tested_on
        least = stats.seeds_to_decide(self.level / max(1, self.family), about)
        if about == "median" and n < least:
            return (f"the sign test cannot reach its level with {n} seeds even if all agree: "
                    f"at least {least} seeds")
        if self.needed:
            what = "fraction of seeds on one side" if about == "median" else "effect and spread"
            return f"about {self.needed} seeds per configuration at the observed {what}"
        return ("more seeds would not decide it: the seeds split evenly or the observed effect "
                "is zero")

    def headline(self, kind: str | None = None) -> str:
        """The verdict in one plain line, as the report and the MLflow parent run open with:
        the statement, the verdict, and the effect with its interval (in the metric's unit; a
        threshold claim's value, then its distance to the threshold, which is what is tested),
        the Holm-adjusted p as the table gives it and the seeds; or, untestable, the gate its
        models missed and in how many seeds. ``kind`` (*confirmatory*, *exploratory*, "smoke
        test") is said of a decided verdict."""
        c, r = self.claim, self.result
        head = f"{c.statement.rstrip('.')}: **{self.verdict}**"
        if self.verdict == "untestable":
            missed = [f"{g.where} passes {g.text} in {g.passing}/{g.seeds} seeds"
                      for g in self.gate_failures]
            more = f" (+{len(missed) - 2} more)" if len(missed) > 2 else ""
            return f"{head}: " + ("; ".join(missed[:2]) + more if missed else self.note or "-")
        if r is None or not math.isfinite(r.effect):
            return f"{head}: " + (self.note or "no value to test")
        units = " nats" if unit(c.metric) == "nats" else ""
        about = "median " if r.test == stats.SIGN_TEST else ""
        interval = (f" [{r.low:+.3g}, {r.high:+.3g}] ({100 * r.confidence:.3g}% CI)"
                    if r.has_interval else "")
        if c.versus is not None or c.versus_metric is not None:
            effect = f"{about}difference {r.effect:+.3g}{units}{interval}"
            n = f"{r.n} seeds (paired)"
        else:
            value = r.effect + (c.threshold or 0.0)
            effect = (f"{about}{value:.4g}{units}, {r.effect:+.3g}{interval} from "
                      f"{c.threshold:g}")
            n = f"{r.n} test points" if self.single_model else f"{r.n} seeds"
        p = self.holm_text()
        p = f", p (Holm) {p}" if p != "-" else ""
        tail = f", {kind}" if kind and self.verdict in DECIDED else ""
        return f"{head}, {effect}{p}, {n}{tail}"

    def holm_text(self) -> str:
        """The Holm-adjusted p-values of the claim's tests in words: of "no effect", or for an
        ``equivalent`` claim of "outside the margin", and of the equivalence test (TOST)
        where one ran."""
        c = self.claim
        holm = "-" if not math.isfinite(self.p_holm) else f"{self.p_holm:.3g}"
        if c.expect == "equivalent" and math.isfinite(self.p_holm):
            holm = f"outside ±{c.margin:g}: {self.p_holm:.3g}"
        if math.isfinite(self.p_equivalence_holm):
            holm += f"; TOST ±{c.margin:g}: {self.p_equivalence_holm:.3g}"
        return holm

    def row(self) -> dict[str, Any]:
        c = self.claim
        r = self.result
        if r is None or not math.isfinite(r.effect):
            effect = "-"
        elif r.has_interval:
            effect = (f"{r.effect:+.3g} [{r.low:+.3g}, {r.high:+.3g}] "
                      f"({100 * r.confidence:.3g}% CI)")
        else:
            effect = f"{r.effect:+.3g} (no interval at {r.n} seeds)"
        what = "median: " if r is not None and r.test == stats.SIGN_TEST else ""
        seeds = f"{self.seeds[0]} vs {self.seeds[1]}" if c.versus is not None \
            else f"{self.seeds[0]}"
        p = "-" if r is None or not math.isfinite(r.p) else f"{r.p:.3g} ({r.test})"
        why = "; ".join(map(str, self.gate_failures)) or self.note
        return {"statement": c.statement, "test": describe(c),
                "effect [CI]": (what + effect) if effect != "-" else effect,
                "seeds": seeds, "p": p, "p (Holm)": self.holm_text(),
                "verdict": f"**{self.verdict}**",
                "why": why or "-", "would change it": self.would_change()}


def describe(c: Claim) -> str:
    """The claim's test in words: what is compared, on what, about the mean or the median."""
    sel = lambda w: ", ".join(f"{k}={v}" for k, v in (w or {}).items()) or "all"  # noqa: E731
    about = "median: in most seeds" if c.tested_on == "median" else "mean"
    if c.versus_metric is not None:
        return f"{sel(c.where)}: {c.metric} {c.expect} than {c.versus_metric} (paired, {about})"
    if c.versus is not None:
        return (f"{c.metric}: {sel(c.where)} vs {sel(c.versus)}: {c.expect} "
                f"(paired by seed, {about})")
    what = f"within ±{c.margin:g} of" if c.expect == "equivalent" else c.expect
    return f"{c.metric} at {sel(c.where)}: {what} {c.threshold:g} ({about})"


def test_values(claim: Claim, d: np.ndarray, alpha: float,
                interval: bool = True) -> tuple[stats.TestResult, stats.TestResult | None]:
    """The claim's test of its per-seed values ``d`` at level ``alpha`` and, with a margin,
    its equivalence test (``interval`` False: without a median's interval where it does not
    decide the verdict)."""
    about = claim.tested_on
    result = stats.location_test(d, alpha, about, interval or claim.expect == "equivalent")
    eq = stats.equivalence_test(d, claim.margin, about) if claim.margin is not None else None
    return result, eq


def decide(claims: Sequence[Claim], values: Sequence[np.ndarray | stats.TestResult],
           alpha: float = stats.ALPHA, needed: bool = True) -> list[Verdict]:
    """The verdict of each claim from its per-seed values (``[n]``: a paired difference or a
    value minus the threshold per seed, as ``verdicts.claim_values`` makes them) or from an
    already tested single model (a ``TestResult``), Holm across all of them at family-wise
    level ``alpha``. See the module docstring. ``needed``: also what only the page shows, the
    seeds that would decide an inconclusive claim (a power calculation) and the median's
    interval where it does not decide the verdict; simulations skip them."""
    verdicts = []
    for claim, v in zip(claims, values, strict=True):
        if isinstance(v, stats.TestResult):
            verdicts.append(Verdict(claim, "inconclusive", v, seeds=(1, 0)))
            continue
        d = np.asarray(v, dtype=float)
        d = d[np.isfinite(d)]
        result, eq = test_values(claim, d, alpha, interval=needed)
        verdict = Verdict(claim, "inconclusive", result, eq, values=d,
                          seeds=(len(d), len(d) if claim.compares else 0))
        if claim.expect == "equivalent":
            verdict.p_outside = stats.outside_test(d, claim.margin, claim.tested_on)
        if result.n == 0:
            verdict.note = "no completed seeds in the selection"
        verdicts.append(verdict)
    settle(verdicts, alpha, needed)
    return verdicts


def settle(verdicts: list[Verdict], alpha: float, needed: bool = True) -> None:
    """Holm across the verdicts that have a p-value, then each one's verdict (in place).

    A claim with a margin tests two hypotheses that exclude each other ("no effect" and "not
    within the margin"; an ``equivalent`` claim: "not within" and "within"), so at most one
    of them is true; both are adjusted in the one family by ``stats.grouped_holm`` (closed
    testing), which keeps the family-wise level alpha over every verdict, equivalence ones
    included, with the claims as its m."""
    tested = [v for v in verdicts if v.result is not None and math.isfinite(v.result.p)]
    groups = []
    for v in tested:
        eq = v.equivalence.p if v.equivalence is not None else math.nan
        first = v.p_outside if v.claim.expect == "equivalent" else v.result.p
        groups.append([first, eq])
    for v, (p, p_eq) in zip(tested, stats.grouped_holm(groups)):
        v.p_holm, v.p_equivalence_holm = p, p_eq
    m = max(1, len(tested))
    for v in tested:
        v.family, v.level = m, alpha
        _decide(v, alpha, m, needed)


def _decide(v: Verdict, alpha: float, m: int, needed: bool) -> None:
    c, r = v.claim, v.result
    equivalent = math.isfinite(v.p_equivalence_holm) and v.p_equivalence_holm < alpha
    if c.expect == "equivalent":
        # p_holm is the test of "within the margin": rejected, the effect lies outside it
        v.verdict = "supported" if equivalent else "not supported" if \
            v.p_holm < alpha else "inconclusive"
    elif v.p_holm < alpha:
        v.verdict = "supported" if np.sign(r.effect) == c.sign else "not supported"
    elif equivalent:
        v.verdict = "equivalent"
    else:
        v.verdict = "inconclusive"
    if v.verdict == "inconclusive" and len(v.values) and needed:
        # the seeds that would decide it at the observed effect and spread, at the level a
        # claim of this family needs in the worst case of Holm's procedure
        v.needed = stats.seeds_needed(v.values, alpha / m, about=c.tested_on)
