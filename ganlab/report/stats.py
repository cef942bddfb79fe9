"""Two-sample statistics for comparing groups of seeds: Welch's t-test, Holm's adjustment,
a bootstrap interval for the difference of means, and ranks with ties.

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
