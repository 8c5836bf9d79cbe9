"""The statistics of a study's verdicts, from scipy.stats and statsmodels (nothing hand-rolled).

The unit of replication is the seed: a claim reduces each seed to one number (a paired
difference between configurations that share the seed, a metric minus a threshold, ...), and
the tests below run on those per-seed values ``d`` (``[n]``, NaN-free):

- ``location_test``: is the mean of ``d`` zero? Student's t (``scipy.stats.ttest_1samp``, with
  its 95% interval) when n >= 3 and the values vary; otherwise, or when asked (``test="sign"``:
  is the median zero?), the exact sign test (``scipy.stats.binomtest`` on the signs; its
  effect is the median; no interval, never a zero-width one): three equal differences give
  p = 0.25 two-sided, and n identical signs need n >= 6 for p < 0.05.
- ``equivalence_test``: is |mean| below a declared margin? Two one-sided t tests
  (``statsmodels`` ``ttost_mean``, its 90% interval) or, without variation, the exact sign
  version (p = 2^-n when every value lies inside the margin).
- ``holm``: Holm's step-down adjustment across the claims of one study (``statsmodels``).
- ``seeds_needed``: seeds that would give 80% power at the observed effect and spread
  (``statsmodels`` ``TTestPower``; the sign test's count when the values do not vary or the
  claim is tested by signs: the binomial power at the observed fraction of positive signs).
- ``auroc_interval``: a bootstrap interval over test points of one model's AUROC
  (``scipy.stats.bootstrap``), for claims about a single trained model.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from study.spec.claims import ClaimTest

ALPHA = 0.05
POWER = 0.8
SIGN_TEST = "sign test (exact)"


@dataclass(frozen=True)
class TestResult:
    """``effect``: the mean of the per-seed values; ``low``/``high``: its interval (NaN where
    none is defined); ``p``: the p-value; ``test``: which test gave it; ``n``: seeds."""

    effect: float
    low: float
    high: float
    p: float
    test: str
    n: int

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)


def mean_interval(values: np.ndarray) -> tuple[float, float, int]:
    """(mean, 95% t-interval half-width, n) of the finite values, for tables; the half-width
    is NaN for n < 2 and 0 when the values do not vary (shown as such, never as an interval)."""
    v = _clean(values)
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(v[0]), math.nan, 1
    sem = float(stats.sem(v))
    return float(v.mean()), float(stats.t.ppf(1 - ALPHA / 2, n - 1) * sem), n


def _clean(d: np.ndarray) -> np.ndarray:
    d = np.asarray(d, dtype=float)
    return d[np.isfinite(d)]


def varies(d: np.ndarray) -> bool:
    return len(d) >= 2 and float(np.std(d, ddof=1)) > 1e-12 * max(1.0, float(np.abs(d).max()))


def location_test(d: np.ndarray, alpha: float = ALPHA, test: ClaimTest = "auto") -> TestResult:
    """Two-sided test of mean(d) = 0, or of median(d) = 0 by the exact sign test (``test``
    ``sign``, or where t cannot be used; see the module docstring), with the 1 - ``alpha``
    interval of t (a look of a sequential design passes its own level)."""
    d = _clean(d)
    n = len(d)
    if n == 0:
        return TestResult(math.nan, math.nan, math.nan, math.nan, "no data", 0)
    if test == "auto" and n >= 3 and varies(d):
        res = stats.ttest_1samp(d, 0.0)
        ci = res.confidence_interval(1 - alpha)
        return TestResult(float(d.mean()), float(ci.low), float(ci.high), float(res.pvalue), "t", n)
    median = float(np.median(d))  # the mean, wherever t cannot be used (n < 3 or no variation)
    nonzero = d[d != 0]
    if len(nonzero) == 0:
        return TestResult(median, math.nan, math.nan, 1.0, SIGN_TEST, n)
    res = stats.binomtest(int((nonzero > 0).sum()), len(nonzero), 0.5)
    return TestResult(median, math.nan, math.nan, float(res.pvalue), SIGN_TEST, n)


def equivalence_test(d: np.ndarray, margin: float) -> TestResult:
    """Two one-sided tests of -margin < mean(d) < margin (p < alpha: equivalent)."""
    d = _clean(d)
    n = len(d)
    if n == 0:
        return TestResult(math.nan, math.nan, math.nan, math.nan, "no data", 0)
    mean = float(d.mean())
    if n >= 3 and varies(d):
        from statsmodels.stats.weightstats import DescrStatsW

        desc = DescrStatsW(d)
        p = float(desc.ttost_mean(-margin, margin)[0])
        low, high = desc.tconfint_mean(alpha=2 * ALPHA)
        return TestResult(mean, float(low), float(high), p, "TOST (t)", n)
    inside = bool(np.all(np.abs(d) < margin))
    return TestResult(mean, math.nan, math.nan, 0.5 ** n if inside else 1.0,
                      "TOST (exact sign)", n)


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values (NaN entries stay NaN and do not count)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), np.nan)
    ok = np.isfinite(p)
    if ok.any():
        from statsmodels.stats.multitest import multipletests

        out[ok] = multipletests(p[ok], alpha=ALPHA, method="holm")[1]
    return out.tolist()


def seeds_needed(d: np.ndarray, alpha: float = ALPHA, power: float = POWER,
                 test: ClaimTest = "auto") -> int | None:
    """Seeds that would decide a two-sided test at the observed mean and spread of ``d``, or
    (``test`` ``sign``) the exact sign test at the observed fraction of positive signs (None
    when the observed effect is zero: no number of seeds would)."""
    d = _clean(d)
    if len(d) == 0 or float(np.abs(d.mean())) == 0.0:
        return None
    if not varies(d):
        return max(2, math.ceil(1 + math.log2(1 / alpha)))  # all signs equal: 2^(1-n) < alpha
    if test == "sign":
        return _sign_test_seeds(d, alpha, power)
    from statsmodels.stats.power import TTestPower

    effect = abs(float(d.mean())) / float(np.std(d, ddof=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        n = TTestPower().solve_power(effect_size=effect, alpha=alpha, power=power,
                                     alternative="two-sided")
    return max(3, math.ceil(float(n))) if np.isfinite(n) else None


def _sign_test_seeds(d: np.ndarray, alpha: float, power: float,
                     most: int = 10_000) -> int | None:
    """The fewest seeds n at which the exact two-sided sign test rejects with probability
    ``power`` when each seed's sign is the majority sign of ``d`` with the observed frequency q:
    P(Binom(n, q) >= k_n) >= power, k_n the smallest count with binomtest p < alpha."""
    nonzero = d[d != 0]
    q = max(float(np.mean(nonzero > 0)), float(np.mean(nonzero < 0))) if len(nonzero) else 0.5
    if q <= 0.5:
        return None
    for n in range(2, most + 1):
        # the two-sided p of k of n equal signs: 2 P(X >= k) under Binom(n, 1/2)
        k = np.arange(n // 2 + 1, n + 1)
        rejects = k[np.minimum(1.0, 2 * stats.binom.sf(k - 1, n, 0.5)) < alpha]
        if len(rejects) and stats.binom.sf(rejects[0] - 1, n, q) >= power:
            return n
    return None


def auroc_interval(score_in: np.ndarray, score_out: np.ndarray, n_resamples: int = 999,
                   seed: int = 0) -> tuple[float, float, float]:
    """(AUROC, low, high): a 95% percentile-bootstrap interval over the test points of one
    model (in- and out-of-distribution points resampled separately; OOD positive). The AUROC
    is the Mann-Whitney U of the OOD scores over the in-distribution ones, / (n_in n_out)."""

    def auroc(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        u = stats.mannwhitneyu(b, a, axis=axis, method="asymptotic").statistic
        return u / (a.shape[axis] * b.shape[axis])

    a, b = np.asarray(score_in, float), np.asarray(score_out, float)
    res = stats.bootstrap((a, b), auroc, vectorized=True, paired=False, n_resamples=n_resamples,
                          method="percentile", random_state=np.random.default_rng(seed))
    return float(auroc(a, b)), float(res.confidence_interval.low), \
        float(res.confidence_interval.high)
