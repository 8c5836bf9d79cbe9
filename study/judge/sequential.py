"""Seeds until decided: a group-sequential design over rounds of seeds (``--until-decided``).

A study run with ``--until-decided --max-seeds N`` looks at its claims after every round of
seeds and adds ``step`` seeds (default: the study's own number of seeds) to the configurations
of claims that are still inconclusive, until every claim is decided or N seeds are reached.
Look k sees the first ``n_k`` seeds of every configuration (``n_1`` = the study's seeds,
``n_k = min(n_1 + (k - 1) step, N)``).

Looking after every round and stopping when a test rejects inflates the error rate unless each
look spends only part of alpha. The design here spends alpha with the Lan-DeMets Pocock-type
function ``f(t) = alpha ln(1 + (e - 1) t)`` of the information fraction ``t = n_k / N``: look k
tests at level ``alpha_k = f(t_k) - f(t_{k-1})`` (Holm across the claims still undecided), and
a claim keeps the first verdict it reaches. Whatever the dependence between looks, the chance of
any false verdict is at most ``sum_k alpha_k = f(t_K) <= f(1) = alpha`` (a union bound over
the looks; conservative, and valid for the exact sign test as for the t test). The schedule
of looks depends only on N and the step, never on the data; adding rounds only for the claims
still open does not change the bound. ``tests/test_sequential.py`` checks by simulation that
the false "supported" rate under no effect stays at or below alpha, and that a real effect is
decided with fewer seeds on average than the fixed design of the same power needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from study.judge import stats
from study.judge.decide import DECIDED, Verdict, decide
from study.judge.verdicts import judge_all
from study.spec.claims import Claim, Gate
from study.spec.seed_range import SeedRange
from study.store.columns import same_value


@dataclass(frozen=True)
class Design:
    """The looks of a sequential study: ``first`` seeds, then ``step`` more per round, up to
    ``max_seeds``; ``alpha``: the family-wise level spent over all looks."""

    first: int
    step: int
    max_seeds: int
    alpha: float = stats.ALPHA
    #: the study's first seed (its confirmatory range's start; 0 otherwise): look k sees seeds
    #: ``start`` .. ``start + n_k - 1``
    start: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.first <= self.max_seeds or self.step < 1:
            raise ValueError(f"a sequential design needs 1 <= seeds ({self.first}) <= max seeds "
                             f"({self.max_seeds}) and a step of at least 1 ({self.step})")

    @property
    def looks(self) -> list[int]:
        """Seeds seen at each look, in order."""
        n = list(range(self.first, self.max_seeds, self.step)) + [self.max_seeds]
        return sorted(set(n))

    def spent(self, seeds: int) -> float:
        """Alpha spent up to a look at ``seeds`` seeds (Lan-DeMets, Pocock type)."""
        t = min(1.0, seeds / self.max_seeds)
        return self.alpha * math.log(1 + (math.e - 1) * t)

    def level(self, look: int) -> float:
        """The level of look ``look`` (0-based): what it adds to the alpha spent."""
        n = self.looks
        return self.spent(n[look]) - (self.spent(n[look - 1]) if look else 0.0)

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> Design | None:
        return cls(**state) if state else None


@dataclass
class Look:
    """One look: the seeds it saw, its level, and the verdicts of the claims it judged."""

    seeds: int
    level: float
    verdicts: list[Verdict]


def first_seeds(trials: pd.DataFrame, n: int, start: int = 0) -> pd.DataFrame:
    """The rows of the study's first ``n`` seeds (seeds are start, start + 1, ...)."""
    return trials[trials["seed"] < start + n] if len(trials) else trials


def _run_looks(n_claims: int, design: Design, have: int,
               judge_look: Callable[[list[int], int, float], list[Verdict]]
               ) -> tuple[list[Verdict], list[Look]]:
    """The looks of ``design`` up to ``have`` seeds: each judges the claims not yet decided
    (``judge_look(open claim indices, seeds, level)``); a claim keeps its first decision, an
    undecided one its last look's verdict."""
    final: dict[int, Verdict] = {}
    looks: list[Look] = []
    for k, n in enumerate(design.looks):
        if n > have:
            break
        open_ = [i for i in range(n_claims) if final.get(i) is None or
                 final[i].verdict not in DECIDED + ("untestable",)]
        if not open_:
            break
        level = design.level(k)
        verdicts = judge_look(open_, n, level)
        for i, v in zip(open_, verdicts):
            v.note = (v.note + "; " if v.note else "") + \
                f"look {k + 1}: {n} seeds, level {level:.3g}"
            final[i] = v
        looks.append(Look(n, level, verdicts))
    return [final[i] for i in range(n_claims) if i in final], looks


def judge(claims: list[Claim], trials: pd.DataFrame, design: Design, gates: Gate | None = None,
          scores: pd.DataFrame | None = None) -> tuple[list[Verdict], list[Look]]:
    """Every claim's verdict under ``design``: at each look whose seeds every configuration
    has, the claims not yet decided are judged (``judge_all``: gates, values, ``decide``) at
    that look's level; a claim keeps its first decision, an undecided one its last look's
    verdict. Returns (verdicts, looks)."""
    have = int(trials["seed"].max()) + 1 - design.start if len(trials) else 0
    scores = scores if scores is not None and len(scores) else None

    def look(open_: list[int], n: int, level: float) -> list[Verdict]:
        return judge_all([claims[i] for i in open_], first_seeds(trials, n, design.start),
                         gates, level, scores if scores is None else
                         scores[scores["seed"] < design.start + n])

    return _run_looks(len(claims), design, have, look)


def decide_sequentially(claims: list[Claim], values: list[np.ndarray], design: Design,
                        needed: bool = True) -> list[Verdict]:
    """``decide.decide`` under ``design`` from each claim's per-seed values in seed order
    (``[max_seeds]`` each): what ``judge`` does to a study's rows, without the rows, so the
    procedure can be simulated (``study.judge.simulate``)."""
    have = min(len(v) for v in values) if values else 0

    def look(open_: list[int], n: int, level: float) -> list[Verdict]:
        return decide([claims[i] for i in open_], [values[i][:n] for i in open_], level, needed)

    return _run_looks(len(claims), design, have, look)[0]


def judge_study(claims: list[Claim], trials: pd.DataFrame, sequential: dict | None,
                gates: Gate | None = None, alpha: float = stats.ALPHA,
                scores: pd.DataFrame | None = None
                ) -> tuple[list[Verdict], Design | None, list[Look]]:
    """The verdicts of a study whose ``study.json`` records the design ``sequential``: under it
    when the study ran ``--until-decided`` (``judge``), else (None) at level ``alpha``
    (``judge_all``). Returns (verdicts, design or None, looks)."""
    design = Design.from_state(sequential)
    if design is None:
        return judge_all(claims, trials, gates, alpha, scores), None, []
    verdicts, looks = judge(claims, trials, design, gates, scores)
    return verdicts, design, looks


def open_configurations(claims: list[Claim], verdicts: list[Verdict],
                        cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The grid cells that a still-inconclusive claim compares (its ``where`` or ``versus``
    selects them; a key that is not a factor does not restrict), in grid order: the
    configurations the next round gives more seeds."""
    def selects(where: dict[str, Any] | None, cell: dict[str, Any]) -> bool:
        return where is not None and all(same_value(cell[k], v) for k, v in where.items()
                                         if k in cell)

    open_ = [c for c, v in zip(claims, verdicts) if v.verdict == "inconclusive"]
    return [cell for cell in cells
            if any(selects(c.where, cell) or selects(c.versus, cell) for c in open_)]


@dataclass(frozen=True)
class Round:
    """Round ``index`` (1, 2, ...; round 0 is the study itself) gives seeds ``start`` to
    ``stop - 1`` to ``cells``."""

    index: int
    start: int
    stop: int
    cells: list[dict[str, Any]]

    @property
    def seeds(self) -> list[int]:
        return list(range(self.start, self.stop))

    @property
    def seeds_text(self) -> str:
        """The seeds as a trial's config carries them (``ROUND_SEEDS``): "FIRST-LAST"."""
        return SeedRange(self.start, self.stop - 1).text

    def to_state(self) -> dict[str, Any]:
        return asdict(self)


def next_round(claims: list[Claim], cells: list[dict[str, Any]], trials: pd.DataFrame,
               design: Design, done: int, gates: Gate | None = None,
               scores: pd.DataFrame | None = None) -> Round | None:
    """The round after ``done`` rounds (round 0 included), or None when every claim is decided
    (or untestable) or the design's last look has been reached. ``scores``: the per-point
    scores, so that the claims are judged as the report judges them (a single-model AUROC by
    its bootstrap, not by signs of identical per-seed values)."""
    look = done  # round r is seen by look r
    if look >= len(design.looks):
        return None
    verdicts, _ = judge(claims, trials, design, gates, scores)
    todo = open_configurations(claims, verdicts, cells)
    if not todo:
        return None
    return Round(look, design.start + design.looks[look - 1], design.start + design.looks[look],
                 todo)
