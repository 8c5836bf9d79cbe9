"""The statistics of a study's verdicts, from scipy.stats and statsmodels (nothing hand-rolled).

The unit of replication is the seed: a claim reduces each seed to one number (a paired
difference between configurations that share the seed, a metric minus a threshold, ...), and
the tests below run on those per-seed values ``d`` (``[n]``, NaN-free). A claim is about the
mean or the median of ``d`` (``Claim.about``), and each has the test that is valid for it at a
handful of seeds:

- the **mean** of a paired comparison: Student's t (``scipy.stats.ttest_1samp``, its interval
  at the level the test runs at). Its null hypothesis is "no effect": the two configurations
  (or metrics) are exchangeable within a seed, so each paired difference is symmetric about 0,
  and under symmetry the t test is conservative at the usual levels whatever the shape
  (Efron 1969, "Student's t-test under symmetry conditions"): normal, heavy-tailed, bimodal
  (a stuck seed on either side) or tied differences. tests/test_decide.py checks this by
  simulation at each study's seed counts. With fewer than 3 values, or values that do not
  vary, t cannot be used and the sign test below takes its place.
- the **median** ("in most seeds"): the exact sign test (``scipy.stats.quantile_test``), with
  its distribution-free order-statistic interval. Exact for any continuous distribution, skewed
  or not, so it is the test of every claim against a threshold: a threshold claim has no
  symmetric null, and a t test of the mean of a positive, skewed metric (a layer's KL, a
  learned std) with 3-5 seeds rejects a true null 8-50% of the time. Its smallest two-sided p
  is 2^(1-n): it cannot decide anything at 5 seeds (``smallest_p``).
- ``equivalence_test``: is the mean (TOST: two one-sided t tests, ``statsmodels``
  ``ttost_mean``) or the median (two one-sided sign tests) within a declared margin?
- ``holm``: Holm's step-down adjustment across the claims of one study (``statsmodels``).
- ``seeds_needed``: seeds that would give 80% power at the observed effect and spread
  (``statsmodels`` ``TTestPower``; for the median, the binomial power at the observed fraction
  of signs).
- ``auroc_interval``: a bootstrap interval and p-value over the test points of one model's
  AUROC (``scipy.stats.bootstrap``), for claims about a single trained model.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from study.spec.claims import ClaimAbout

ALPHA = 0.05
#: bootstrap resamples of a single-model AUROC test (smallest p: 2 / (1 + BOOTSTRAP))
BOOTSTRAP = 1999
POWER = 0.8
SIGN_TEST = "sign test (exact)"
T_TEST = "t"


@dataclass(frozen=True)
class TestResult:
    """``effect``: the mean (t) or median (sign test) of the per-seed values; ``low``/``high``:
    its interval at ``confidence`` (NaN where none is defined); ``p``: the two-sided p-value;
    ``test``: which test gave it; ``n``: seeds (or test points of one model's bootstrap)."""

    effect: float
    low: float
    high: float
    p: float
    test: str
    n: int
    confidence: float = 1 - ALPHA

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


def location_test(d: np.ndarray, alpha: float = ALPHA, about: ClaimAbout = "mean",
                  interval: bool = True) -> TestResult:
    """Two-sided test of mean(d) = 0 by t, or of median(d) = 0 by the exact sign test (``about``
    ``median``, or where t cannot be used; see the module docstring), with the 1 - ``alpha``
    interval (a look of a sequential design passes its own level; ``interval`` False skips the
    median's, which costs more than its test)."""
    d = _clean(d)
    n = len(d)
    if n == 0:
        return TestResult(math.nan, math.nan, math.nan, math.nan, "no data", 0, 1 - alpha)
    if about == "mean" and n >= 3 and varies(d):
        res = stats.ttest_1samp(d, 0.0)
        ci = res.confidence_interval(1 - alpha)
        return TestResult(float(d.mean()), float(ci.low), float(ci.high), float(res.pvalue),
                          T_TEST, n, 1 - alpha)
    return sign_test(d, alpha, interval)


def sign_test(d: np.ndarray, alpha: float = ALPHA, interval: bool = True) -> TestResult:
    """The exact two-sided sign test of median(d) = 0, as ``scipy.stats.quantile_test`` does it
    (values at 0 count against rejection: p = min(1, 2 P(B >= max(#{d > 0}, #{d < 0}))) with
    B ~ Binomial(n, 1/2), n counting the zeros), from the binomial tail directly
    (quantile_test costs 1.5 ms, which a simulation of thousands of studies feels); with
    quantile_test's order-statistic interval of the median at 1 - ``alpha`` (NaN when n is
    too small for one)."""
    d = _clean(d)
    n = len(d)
    most = max(int((d > 0).sum()), int((d < 0).sum()))
    p = min(1.0, 2.0 * float(stats.binom.sf(most - 1, n, 0.5)))  # P(B >= most)
    low = high = math.nan
    if interval and n:
        ci = stats.quantile_test(d, q=0.0, p=0.5).confidence_interval(1 - alpha)
        low, high = float(ci.low), float(ci.high)
    return TestResult(float(np.median(d)) if n else math.nan, low, high, p, SIGN_TEST, n,
                      1 - alpha)


def smallest_p(n: int, about: ClaimAbout = "mean") -> float:
    """The smallest two-sided p the claim's test can give with ``n`` seeds: 0 for t (n >= 3:
    values that agree closely enough give any p), 2^(1-n) for the sign test (every seed on
    one side; also t's stand-in below 3 seeds)."""
    if about == "mean" and n >= 3:
        return 0.0
    return min(1.0, 2.0 * 0.5 ** n) if n > 0 else 1.0


def seeds_to_decide(level: float, about: ClaimAbout = "mean", most: int = 10_000) -> int:
    """The fewest seeds at which the claim's test can reach p < ``level`` (``smallest_p``)."""
    return next(n for n in range(1, most) if smallest_p(n, about) < level)


def equivalence_test(d: np.ndarray, margin: float, about: ClaimAbout = "mean") -> TestResult:
    """-margin < mean(d) < margin by two one-sided t tests, or the same of the median by two
    one-sided exact sign tests (``about`` ``median``, or where t cannot be used); p < alpha:
    equivalent. The interval is TOST's 90% one (t) or the median's."""
    d = _clean(d)
    n = len(d)
    if n == 0:
        return TestResult(math.nan, math.nan, math.nan, math.nan, "no data", 0)
    if about == "mean" and n >= 3 and varies(d):
        from statsmodels.stats.weightstats import DescrStatsW

        desc = DescrStatsW(d)
        p = float(desc.ttost_mean(-margin, margin)[0])
        low, high = desc.tconfint_mean(alpha=2 * ALPHA)
        return TestResult(float(d.mean()), float(low), float(high), p, "TOST (t)", n,
                          1 - 2 * ALPHA)
    p_above = _one_sided(d + margin, greater=True)  # median > -margin
    p_below = _one_sided(d - margin, greater=False)  # median < margin
    ci = stats.quantile_test(d, q=0.0, p=0.5).confidence_interval(1 - 2 * ALPHA)
    return TestResult(float(np.median(d)), float(ci.low), float(ci.high),
                      float(max(p_above, p_below)), "TOST (exact sign)", n, 1 - 2 * ALPHA)


def outside_test(d: np.ndarray, margin: float, about: ClaimAbout = "mean") -> float:
    """p of "the mean (or median) lies within [-margin, margin]": the smaller of the one-sided
    tests of mean > margin and mean < -margin (t; exact sign tests of the median for
    ``about`` ``median`` or where t cannot be used), doubled for the two sides. p < alpha: the
    effect is shown to lie outside the margin (an ``equivalent`` claim is not supported)."""
    d = _clean(d)
    n = len(d)
    if n == 0:
        return math.nan
    if about == "mean" and n >= 3 and varies(d):
        above = float(stats.ttest_1samp(d, margin, alternative="greater").pvalue)
        below = float(stats.ttest_1samp(d, -margin, alternative="less").pvalue)
    else:
        above = _one_sided(d - margin, greater=True)
        below = _one_sided(d + margin, greater=False)
    return min(1.0, 2.0 * min(above, below))


def _one_sided(d: np.ndarray, greater: bool) -> float:
    """The one-sided exact sign test of median(d) > 0 (``greater``) or < 0, values at 0
    counting against it (as ``scipy.stats.quantile_test``): P(B >= count), B ~ Bin(n, 1/2)."""
    n = len(d)
    count = int((d > 0).sum()) if greater else int((d < 0).sum())
    return float(stats.binom.sf(count - 1, n, 0.5))


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values (NaN entries stay NaN and do not count): with the m p-values in
    increasing order, p_(i) adjusted = max over j <= i of min(1, (m - j + 1) p_(j)).
    tests/test_stats.py checks it equals ``statsmodels``' ``multipletests(method="holm")``,
    which cannot be used here: it runs ``gc.collect()`` on every call (65 ms; a simulation of
    thousands of studies calls it thousands of times)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if len(ok):
        order = ok[np.argsort(p[ok], kind="stable")]
        m = len(order)
        steps = np.minimum(1.0, (m - np.arange(m)) * p[order])
        out[order] = np.maximum.accumulate(steps)
    return out.tolist()


def grouped_holm(groups: list[list[float]]) -> list[list[float]]:
    """Adjusted p-values of hypotheses in groups of which at most one null can be true in each
    group (a claim's "no effect" and "not within its margin" exclude each other), at
    family-wise level alpha over all of them: closed testing with Bonferroni local tests,
    whose intersections hold at most one hypothesis per group, so the adjusted p of
    hypothesis h of group i is Holm's adjusted p of p_h among p_h and the largest p of every
    other group (m: the groups with a p-value). With one hypothesis per group this is
    ``holm``. NaN stays NaN."""
    worst = [max((p for p in g if math.isfinite(p)), default=math.nan) for g in groups]
    out = []
    for i, g in enumerate(groups):
        others = [w for j, w in enumerate(worst) if j != i and math.isfinite(w)]
        out.append([holm([p] + others)[0] if math.isfinite(p) else math.nan for p in g])
    return out


def seeds_needed(d: np.ndarray, alpha: float = ALPHA, power: float = POWER,
                 about: ClaimAbout = "mean") -> int | None:
    """Seeds that would decide a two-sided test at the observed mean and spread of ``d``, or
    (``about`` ``median``) the exact sign test at the observed fraction of positive signs (None
    when the observed effect is zero: no number of seeds would)."""
    d = _clean(d)
    if len(d) == 0:
        return None
    if about == "median":  # by the signs: a zero mean can still have most seeds on one side
        return _sign_test_seeds(d, alpha, power)
    if float(np.abs(d.mean())) == 0.0:
        return None
    if not varies(d):
        return seeds_to_decide(alpha, "median")  # all signs equal: 2^(1-n) < alpha
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
    ``power`` when each seed's value is on the majority side of ``d`` with the observed
    frequency q (values at 0 count against it, as in the test): P(Binom(n, q) >= k_n) >=
    power, k_n the smallest count with p < alpha."""
    q = max(float(np.mean(d > 0)), float(np.mean(d < 0))) if len(d) else 0.5
    if q <= 0.5:
        return None
    for n in range(2, most + 1):
        # the two-sided p of k of n equal signs: 2 P(X >= k) under Binom(n, 1/2)
        k = np.arange(n // 2 + 1, n + 1)
        rejects = k[np.minimum(1.0, 2 * stats.binom.sf(k - 1, n, 0.5)) < alpha]
        if len(rejects) and stats.binom.sf(rejects[0] - 1, n, q) >= power:
            return n
    return None


def auroc_test(score_in: np.ndarray, score_out: np.ndarray, threshold: float,
               alpha: float = ALPHA, n_resamples: int = BOOTSTRAP,
               seed: int = 0) -> TestResult:
    """One model's AUROC against ``threshold``: the effect AUROC - threshold with its
    1 - ``alpha`` percentile-bootstrap interval over the test points (in- and
    out-of-distribution points resampled separately; OOD positive) and the two-sided bootstrap
    p-value that matches it, 2 min(P*(AUROC* <= t), P*(AUROC* >= t)) with the (1 + count) /
    (1 + B) correction (smallest 2 / (1 + B)). The AUROC is the Mann-Whitney U of the OOD
    scores over the in-distribution ones, / (n_in n_out)."""

    def auroc(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        u = stats.mannwhitneyu(b, a, axis=axis, method="asymptotic").statistic
        return u / (a.shape[axis] * b.shape[axis])

    a, b = np.asarray(score_in, float), np.asarray(score_out, float)
    res = stats.bootstrap((a, b), auroc, vectorized=True, paired=False, n_resamples=n_resamples,
                          confidence_level=1 - alpha, method="percentile",
                          random_state=np.random.default_rng(seed))
    boot = np.asarray(res.bootstrap_distribution)
    tail = min(int((boot <= threshold).sum()), int((boot >= threshold).sum()))
    p = min(1.0, 2 * (1 + tail) / (1 + len(boot)))
    value = float(auroc(a, b))
    return TestResult(value - threshold, float(res.confidence_interval.low) - threshold,
                      float(res.confidence_interval.high) - threshold, p,
                      "bootstrap over test points", len(a) + len(b), 1 - alpha)
