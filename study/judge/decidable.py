"""Whether a study's claims can be decided at its seeds, before anything runs.

A claim's test has a smallest p it can reach with n seeds (``stats.smallest_p``: 2^(1-n) for
the sign test of a median, 0 for the t test of a mean from 3 seeds on). In Holm's procedure a
claim is certain to be judged at level alpha / m only (m: the claims of the study; the worst
case, when its p is the smallest), and under ``--until-decided`` each look k tests at its own
level alpha_k. A claim is *decidable* when some look (or the one fixed-design test) can reach
p < level / m at its seeds; else no outcome of the run could decide it, and a run at a budget
that judges claims (not ``smoke``) is refused before anything starts, with the seeds it needs.
A claim about one model's AUROC (a model-free score, or one seed) is tested by a bootstrap over
test points (smallest p 2 / (1 + B)), decidable at any seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

from study.core.errors import UserError
from study.judge import stats
from study.judge.sequential import Design
from study.judge.verdicts import single_model_claim
from study.spec.claims import Claim
from study.spec.resolved import ResolvedStudy

#: budgets whose report judges nothing (it says the models are not trained)
NOT_JUDGED = ("smoke",)


@dataclass(frozen=True)
class Decidability:
    """Claim ``index`` of a study at ``seeds`` seeds per configuration: the test it gets, the
    smallest p that test can reach there, the level it must beat, and the seeds it needs."""

    index: int
    claim: Claim
    test: str
    seeds: int
    smallest: float
    level: float
    needs: int
    #: some look (or the one test) of the run as planned can reach its level: under a
    #: sequential design more max seeds lower every look's level, so ``needs`` alone (the
    #: fewest that work) does not say whether a larger maximum does
    reachable: bool = True

    @property
    def decidable(self) -> bool:
        return self.reachable and self.seeds >= self.needs

    def line(self) -> str:
        state = "decidable" if self.decidable else "NOT decidable"
        return (f"  claims[{self.index}] {self.test}: needs {self.needs} seeds, has "
                f"{self.seeds} ({state}; smallest p {self.smallest:.2g} vs level "
                f"{self.level:.2g}): {self.claim.statement}")


def _looks(design: Design | None, seeds: int, alpha: float) -> list[tuple[int, float]]:
    """(seeds, level) of each test a claim can get: the looks of ``design``, or one test."""
    if design is None:
        return [(seeds, alpha)]
    return [(n, design.level(k)) for k, n in enumerate(design.looks)]


def claim_decidability(claims: list[Claim], seeds: int, alpha: float = stats.ALPHA,
                       design: Design | None = None) -> list[Decidability]:
    """Each claim at ``seeds`` seeds per configuration (``design``: its looks, up to
    ``design.max_seeds``) in a Holm family of all ``claims``."""
    m = max(1, len(claims))
    out = []
    for i, c in enumerate(claims):
        looks = _looks(design, seeds, alpha)
        if single_model_claim(c, seeds):
            smallest = 2 / (1 + stats.BOOTSTRAP)
            out.append(Decidability(i, c, "bootstrap over test points", looks[-1][0], smallest,
                                    looks[0][1] / m, 1,
                                    any(smallest < level / m for _, level in looks)))
            continue
        about = c.tested_on
        test = "t test of the mean" if about == "mean" else "sign test of the median"
        n, level = looks[-1]  # shown at the last look; decidable when any look can decide
        reachable = any(stats.smallest_p(k, about) < lk / m for k, lk in looks)
        out.append(Decidability(i, c, test, n, stats.smallest_p(n, about), level / m,
                                _needs(about, alpha, m, design, n), reachable))
    return out


def _needs(about: str, alpha: float, m: int, design: Design | None, planned: int) -> int:
    """The fewest seeds (fixed design) at which the claim's test can reach its level, or the
    max seeds of a sequential design of the same first seeds and step at which some look
    can: the fewest when the ``planned`` maximum works, else the fewest above it (more max
    seeds lower the early looks' levels, so a maximum between two that work may not)."""
    if design is None:
        return stats.seeds_to_decide(alpha / m, about)
    works = lambda most: any(  # noqa: E731
        stats.smallest_p(n, about) < d.level(k) / m
        for d in [Design(design.first, design.step, most, design.alpha)]
        for k, n in enumerate(d.looks))
    if works(planned):
        return next(most for most in range(design.first, planned + 1) if works(most))
    return next((most for most in range(planned + 1, 10_000) if works(most)), 10_000)


def study_decidability(study: ResolvedStudy,
                       design: Design | None = None) -> list[Decidability]:
    """``claim_decidability`` for a study at its budget's seeds (or ``design``'s)."""
    spec = study.spec
    return claim_decidability(list(spec.claims), len(study.first.seeds), spec.alpha, design)


def check_decidable(study: ResolvedStudy, design: Design | None = None) -> None:
    """Refuse a run whose budget judges claims when some claim cannot be decided at its seeds:
    one line with the seeds it needs (``smoke`` judges nothing and is exempt)."""
    if study.budget in NOT_JUDGED or not study.spec.claims:
        return
    for d in study_decidability(study, design):
        if not d.decidable:
            seeds = (f"--max-seeds {d.seeds}" if design is not None else
                     f"{d.seeds} seeds (budget {study.budget!r})")
            fix = (f"run with --max-seeds {d.needs}" if design is not None else
                   f"give budget {study.budget!r} 'seeds: {d.needs}' or run --until-decided")
            raise UserError(
                f"{study.spec.source}: field 'claims[{d.index}]' ({d.claim.statement!r}) cannot "
                f"be decided at {seeds}: its {d.test} reaches p = {d.smallest:.2g} at best, "
                f"above its Holm level {d.level:.2g} ({study.spec.alpha:g} / "
                f"{len(study.spec.claims)} claims); it needs {d.needs} seeds: {fix}")


def decidability_text(study: ResolvedStudy, design: Design | None = None) -> str:
    """The dry run's lines on the claims: each one's test and the seeds it needs."""
    if not study.spec.claims:
        return ""
    rows = study_decidability(study, design)
    head = ("claims (the seeds each needs to be decidable at its Holm level"
            + ("; smoke judges nothing" if study.budget in NOT_JUDGED else "") + "):")
    return "\n".join([head] + [d.line() for d in rows])
