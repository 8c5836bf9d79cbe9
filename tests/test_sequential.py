"""The seeds-until-decided design on constructed data with known answers: its levels, its error
rate under no effect and its expected seeds under a real one (by simulation), and the verdicts
it gives a study's rows look by look."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.power import TTestPower

from study.judge import stats
from study.judge.sequential import Design, judge, next_round, open_configurations
from study.spec.claims import Claim

DESIGN = Design(first=5, step=5, max_seeds=20)


def test_the_looks_spend_exactly_alpha():
    assert DESIGN.looks == [5, 10, 15, 20]
    levels = [DESIGN.level(k) for k in range(4)]
    assert math.isclose(sum(levels), stats.ALPHA, rel_tol=1e-12)
    assert all(a > b > 0 for a, b in zip(levels, levels[1:]))  # Pocock type: early looks spend more
    assert Design(5, 4, 11).looks == [5, 9, 11]  # the last look is the cap
    assert Design(5, 5, 5).looks == [5] and math.isclose(Design(5, 5, 5).level(0), stats.ALPHA)
    with pytest.raises(ValueError):
        Design(first=6, step=5, max_seeds=5)


def _sequential(effect: float, sims: int, seed: int) -> tuple[float, float, float]:
    """(rate of decisions, rate of decisions on the wrong side, mean seeds used) of the design
    on per-seed differences drawn from N(effect, 1)."""
    rng = np.random.default_rng(seed)
    decided = wrong = 0
    used = []
    for _ in range(sims):
        x = rng.normal(effect, 1.0, DESIGN.max_seeds)
        n_used = DESIGN.looks[-1]
        for k, n in enumerate(DESIGN.looks):
            r = stats.location_test(x[:n])
            if r.p < DESIGN.level(k):
                decided += 1
                wrong += r.effect < 0
                n_used = n
                break
        used.append(n_used)
    return decided / sims, wrong / sims, float(np.mean(used))


def test_looking_after_every_round_keeps_the_error_rate_under_no_effect():
    decided, _, _ = _sequential(0.0, sims=2000, seed=1)
    # the chance of any verdict other than inconclusive when nothing differs: at most alpha
    assert decided <= stats.ALPHA
    # looking at every round with the fixed-design level would not: the design is what fixes it
    rng = np.random.default_rng(1)
    naive = np.mean([any(stats.location_test(x[:n]).p < stats.ALPHA for n in DESIGN.looks)
                     for x in rng.normal(0.0, 1.0, (2000, DESIGN.max_seeds))])
    assert naive > 1.5 * stats.ALPHA


def test_a_real_effect_is_decided_with_fewer_seeds_than_a_fixed_design_of_the_same_power():
    power, wrong, mean_seeds = _sequential(1.0, sims=1500, seed=2)
    assert power > 0.85 and wrong == 0.0
    fixed = TTestPower().solve_power(effect_size=1.0, alpha=stats.ALPHA, power=power,
                                     alternative="two-sided")
    assert mean_seeds < fixed, (mean_seeds, fixed)
    # a large effect stops at the first looks
    _, _, quick = _sequential(2.0, sims=300, seed=3)
    assert quick <= 7


def _rows(effect_by_depth: dict[int, float], seeds: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 1.0, seeds)  # shared by the configurations: a paired design
    rows = []
    for depth, effect in effect_by_depth.items():
        own = rng.normal(0.0, 0.5, seeds)
        for s in range(seeds):
            rows.append({"trial_id": f"t{depth}-{s // 5}", "seed": s, "factor.depth": depth,
                         "trial_status": "finished", "seed_status": "finished",
                         "m": effect + noise[s] + own[s]})
    return pd.DataFrame(rows)


def test_verdicts_look_by_look_keep_the_first_decision_and_name_the_look():
    claims = [Claim(statement="big", metric="m", where={"depth": 3}, versus={"depth": 1},
                    expect="higher"),
              Claim(statement="none", metric="m", where={"depth": 2}, versus={"depth": 1},
                    expect="higher")]
    trials = _rows({1: 0.0, 2: 0.0, 3: 3.0}, seeds=5)
    verdicts, looks = judge(claims, trials, DESIGN)
    assert [v.verdict for v in verdicts] == ["supported", "inconclusive"]
    assert len(looks) == 1 and "look 1: 5 seeds" in verdicts[0].note
    # the next round adds seeds to the configurations of the open claim only
    cells = [{"depth": d} for d in (1, 2, 3)]
    assert open_configurations(claims, verdicts, cells) == [{"depth": 1}, {"depth": 2}]
    nxt = next_round(claims, cells, trials, DESIGN, done=1)
    assert (nxt.index, nxt.seeds, nxt.cells) == (1, [5, 6, 7, 8, 9], [{"depth": 1}, {"depth": 2}])
    assert next_round(claims, cells, trials, Design(5, 5, 5), done=1) is None  # the cap

    more = _rows({1: 0.0, 2: 0.0, 3: 3.0}, seeds=20)
    more = more[(more["seed"] < 5) | (more["factor.depth"] != 3)]  # depth 3 was not extended
    verdicts, looks = judge(claims, more, DESIGN)
    assert verdicts[0].verdict == "supported" and "look 1" in verdicts[0].note
    assert [len(look.verdicts) for look in looks] == [2, 1, 1, 1]  # the decided claim left
    assert verdicts[1].verdict == "inconclusive" and "look 4: 20 seeds" in verdicts[1].note
    assert math.isclose(looks[-1].level, DESIGN.level(3))
