"""Statistics for comparing groups of seeds: Welch's t-test, Holm's adjustment, a bootstrap
interval for the difference of means, ranks with ties, and the paired tests on per-seed
differences (paired t with its interval, Wilcoxon's signed-rank test).

Pure functions of plain numbers (no runs, no groups), so each can be checked against a hand
formula. scipy is imported inside the functions: importing the report stays cheap.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0  # fixed: the same sweep gives the same report
# Up to this many non-zero differences the Wilcoxon p is exact (a table of 2^n sign patterns
# built in O(n^3) steps); beyond, the normal approximation is within 1e-3 and the table slow.
WILCOXON_EXACT_MAX = 200


@dataclass(frozen=True)
class Welch:
    """Welch's t statistic of ``mean(a) - mean(b)``, its degrees of freedom and two-sided p."""

    t: float
    df: float
    p: float


def welch_df(a: Sequence[float], b: Sequence[float]) -> float:
    """The Welch–Satterthwaite degrees of freedom (Welch 1947, Satterthwaite 1946)::

        df = (va/na + vb/nb)² / ((va/na)² / (na - 1) + (vb/nb)² / (nb - 1))

    with ``va``, ``vb`` the sample variances (ddof=1). Needs two values per group and some
    spread in at least one of them (else 0/0).
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ea, eb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size  # squared standard errors
    return float((ea + eb) ** 2 / (ea**2 / (x.size - 1) + eb**2 / (y.size - 1)))


def welch_test(a: Sequence[float], b: Sequence[float]) -> Welch | None:
    """Welch's unequal-variances t-test (B. L. Welch 1947, "The generalization of 'Student's'
    problem when several different population variances are involved", Biometrika 34):
    ``t = (mean(a) - mean(b)) / sqrt(va/na + vb/nb)``, two-sided p from Student's t with
    :func:`welch_df` degrees of freedom (``scipy.stats.ttest_ind(equal_var=False)``).

    None where the test is undefined: fewer than two values in a group (no variance to
    estimate), or no spread in either (the standard error is 0; scipy would call any
    difference certain, p = 0).
    """
    from scipy import stats

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size < 2 or y.size < 2 or (np.ptp(x) == 0 and np.ptp(y) == 0):
        return None
    with warnings.catch_warnings():
        # scipy warns of "precision loss" for a group whose values are all equal: they are
        # exact, and the other group's spread carries the test.
        warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        result = stats.ttest_ind(x, y, equal_var=False)
    # The df is ours (TtestResult.df appeared only in scipy 1.11); it is scipy's formula.
    return Welch(float(result.statistic), welch_df(x, y), float(result.pvalue))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (S. Holm 1979, "A simple sequentially rejective multiple
    test procedure", Scand. J. Statist. 6), in the input order.

    With the m p-values sorted, ``p(1) <= ... <= p(m)``, the i-th adjusted value is
    ``max over j <= i of min(1, (m - j + 1) p(j))``: the running maximum keeps the order, and
    rejecting where the adjusted p < α controls the family-wise error rate at α over all m
    tests, with no assumption about how they depend on each other.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted.tolist()


def bootstrap_diff_ci(
    a: Sequence[float],
    b: Sequence[float],
    level: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(a) - mean(b)`` (B. Efron 1979, "Bootstrap
    methods: another look at the jackknife", Ann. Statist. 7; Efron & Tibshirani 1993, ch. 13).

    Each group is resampled with replacement on its own, at its own size (the groups are
    independent seeds, not pairs); the interval is the (1 - level)/2 and (1 + level)/2
    quantiles of the resampled differences. With n values a group has only C(2n - 1, n)
    distinct resamples (10 for n = 3): the interval is coarse for a few seeds.
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.size == 0 or y.size == 0:
        raise ValueError("bootstrap_diff_ci needs at least one value in each group")
    rng = np.random.default_rng(seed)
    means_a = x[rng.integers(0, x.size, (resamples, x.size))].mean(axis=1)  # [resamples]
    means_b = y[rng.integers(0, y.size, (resamples, y.size))].mean(axis=1)
    tail = (1.0 - level) / 2
    low, high = np.quantile(means_a - means_b, [tail, 1.0 - tail])
    return float(low), float(high)


def ranks(scores: Sequence[float | None]) -> list[float]:
    """Rank 1 for the lowest score; ties share the mean of their places, and the None scores
    (no value) share the last places. Flip the sign of higher-is-better scores first."""
    from scipy.stats import rankdata

    if not all(s is None or np.isfinite(s) for s in scores):
        raise ValueError("ranks: scores must be finite (None marks a missing one)")
    # Missing scores as +inf: after every finite one, and tied with each other.
    keys = np.array([np.inf if s is None else s for s in scores], dtype=np.float64)
    return rankdata(keys, method="average").tolist()


# --- paired tests: one difference per seed ----------------------------------------------------


@dataclass(frozen=True)
class PairedT:
    """The paired t-test of the mean per-seed difference: its t, df = n - 1, two-sided p, and
    the t-interval of the mean difference."""

    n: int
    mean: float
    t: float
    df: float
    p: float
    ci: tuple[float, float]


def paired_t_test(diffs: Sequence[float], level: float = 0.95) -> PairedT | None:
    """Student's paired t-test (Student 1908, "The probable error of a mean", Biometrika 6)
    on the differences ``d_i = a_i - b_i`` of n pairs::

        t = mean(d) / (sd(d) / sqrt(n)),   df = n - 1,   p = 2 P(T_df >= |t|)

    with ``sd`` the sample sd (ddof=1), as ``scipy.stats.ttest_rel(a, b)``; the interval is
    ``mean(d) ± t_{(1+level)/2, n-1} sd(d) / sqrt(n)``. Zero differences count like any other.

    None where the test is undefined: fewer than two differences (no variance), or all of them
    equal (the standard error is 0; scipy would call a non-zero difference certain, p = 0).
    """
    from scipy import stats

    d = np.asarray(diffs, dtype=np.float64)
    if d.size < 2 or np.ptp(d) == 0:
        return None
    mean, se = float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size))
    df = d.size - 1
    t = mean / se
    p = float(2 * stats.t.sf(abs(t), df))  # sf, not 1 - cdf: keeps small p exact
    half = float(stats.t.ppf((1.0 + level) / 2, df)) * se
    return PairedT(int(d.size), mean, t, float(df), p, (mean - half, mean + half))


@dataclass(frozen=True)
class Wilcoxon:
    """Wilcoxon's signed-rank test: ``w`` = min(W+, W-) (scipy's two-sided statistic), over
    ``n`` non-zero differences (``zeros`` were dropped), two-sided p, exact or normal."""

    n: int
    zeros: int
    w: float
    p: float
    exact: bool


def signed_rank_null(ranks: Sequence[float]) -> np.ndarray:
    """The exact null distribution of W+ for these ranks: entry k is P(W+ = k / 2).

    Under H0 each difference is as likely positive as negative, independently, so W+ is a sum
    of the ranks each kept with probability 1/2 over the 2^n sign patterns. Mid-ranks are
    multiples of 1/2, so doubled ranks are integers and the distribution is the product of
    the polynomials ``(1 + x^(2 r_i)) / 2``, multiplied out one rank at a time. Ties keep
    their mid-ranks: the distribution is the one given the observed ties (conditional on
    them, Lehmann 1975, "Nonparametrics", ch. 3), not the no-ties table.
    """
    doubled = np.rint(2 * np.asarray(ranks, dtype=np.float64)).astype(np.int64)
    dist = np.zeros(int(doubled.sum()) + 1)
    dist[0] = 1.0
    for r in doubled:  # times (1 + x^r) / 2 (r >= 2); the halving keeps it a probability
        dist[r:] = dist[r:] + dist[:-r]  # the right side is a new array: no aliasing
        dist *= 0.5
    return dist


def wilcoxon_test(diffs: Sequence[float]) -> Wilcoxon | None:
    """Wilcoxon's signed-rank test of "the differences are symmetric about 0" (F. Wilcoxon
    1945, "Individual comparisons by ranking methods", Biometrics Bulletin 1).

    Zeros are dropped before ranking (Wilcoxon's own rule, scipy's default
    ``zero_method="wilcox"``): a seed where both groups scored the same says nothing about
    the direction. The others are ranked by ``|d|`` (ties share mid-ranks), ``W+`` sums the
    ranks of the positive ones, ``W- = n(n+1)/2 - W+``. The two-sided p is
    ``min(1, 2 min(P(W+ <= w+), P(W+ >= w+)))`` under :func:`signed_rank_null`, exact up to
    :data:`WILCOXON_EXACT_MAX` differences — as ``scipy.stats.wilcoxon``: exact without ties
    or zeros, an exact permutation test with them for n <= 13. Beyond, the normal
    approximation ``z = (W+ - n(n+1)/4) / sqrt(n(n+1)(2n+1)/24 - sum(t^3 - t)/48)`` with the
    tie correction and no continuity correction (scipy's ``method="asymptotic"``).

    None when every difference is 0 (nothing left to rank). With n differences the exact p
    is at least ``2 / 2^n``: 0.25 for 3 seeds, 0.0625 for 5 — below 6 seeds it cannot
    reach 0.05.
    """
    from scipy import stats

    d = np.asarray(diffs, dtype=np.float64)
    nonzero = d[d != 0]
    n = int(nonzero.size)
    if n == 0:
        return None
    r = stats.rankdata(np.abs(nonzero), method="average")  # [n] mid-ranks of |d|
    w_plus = float(r[nonzero > 0].sum())
    w = min(w_plus, n * (n + 1) / 2 - w_plus)
    zeros = int(d.size - n)
    if n <= WILCOXON_EXACT_MAX:
        dist = signed_rank_null(r)
        k = int(round(2 * w))  # the null is symmetric: the lower tail at min(W+, W-) is enough
        p = min(1.0, 2 * float(dist[: k + 1].sum()))
        return Wilcoxon(n, zeros, w, p, exact=True)
    _, tie_counts = np.unique(r, return_counts=True)
    var = n * (n + 1) * (2 * n + 1) / 24 - float((tie_counts**3 - tie_counts).sum()) / 48
    z = (w - n * (n + 1) / 4) / np.sqrt(var)  # <= 0: w is the lower of W+ and W-
    return Wilcoxon(n, zeros, w, min(1.0, float(2 * stats.norm.cdf(z))), exact=False)
