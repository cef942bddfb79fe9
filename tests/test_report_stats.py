"""ganlab.report's comparisons between groups: the statistics against hand formulas and
tables, then significance, ranks per seed and CPU-time curves on hand-made sweep folders."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from ganlab.report.stats import bootstrap_diff_ci, holm, ranks, welch_df, welch_test

# --- the statistics -------------------------------------------------------------------------


def hand_welch(a: list[float], b: list[float]) -> tuple[float, float]:
    """Welch's t and the Welch–Satterthwaite df, written out in float64 with math only."""
    na, nb = len(a), len(b)
    ma, mb = sum(a) / na, sum(b) / nb
    va = sum((x - ma) ** 2 for x in a) / (na - 1)
    vb = sum((x - mb) ** 2 for x in b) / (nb - 1)
    t = (ma - mb) / math.sqrt(va / na + vb / nb)
    df = (va / na + vb / nb) ** 2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    return t, df


def test_welch_t_and_df_match_the_hand_formula() -> None:
    a, b = [41.2, 55.9, 38.1, 47.3, 60.4], [30.3, 31.9, 29.1]  # unequal n and spread
    t, df = hand_welch(a, b)
    welch = welch_test(a, b)
    assert welch.t == pytest.approx(t, rel=1e-12)
    assert welch.df == pytest.approx(df, rel=1e-12) and welch_df(a, b) == welch.df
    assert 2 < welch.df < len(a) + len(b) - 2  # below the pooled test's df: the spreads differ
    assert welch.p == pytest.approx(2 * scipy.stats.t.sf(abs(t), df), rel=1e-10)


def test_two_sided_p_at_the_t_table_value_is_0_05() -> None:
    # Equal n = 3 and equal variances make the Welch df exactly 4; t(0.975, 4) = 2.776445 in
    # the t-table, so the two-sided p there is 0.05.
    spread = np.array([-1.0, 0.0, 1.0])
    shift = 2.776445 * math.sqrt(1 / 3 + 1 / 3)  # the standard error of the difference
    welch = welch_test(spread + shift, spread)
    assert welch.t == pytest.approx(2.776445, rel=1e-12)
    assert welch.df == pytest.approx(4.0, rel=1e-12)
    assert welch.p == pytest.approx(0.05, abs=1e-4)


def test_welch_is_undefined_without_two_values_or_without_spread() -> None:
    assert welch_test([1.0], [2.0, 3.0]) is None
    assert welch_test([1.0, 1.0], [2.0, 2.0]) is None  # scipy would say p = 0: certainty
    assert welch_test([1.0, 1.0], [2.0, 3.0]) is not None  # one group's spread is enough


def test_holm_on_hand_worked_examples() -> None:
    # sorted 0.01, 0.03, 0.04 -> 3 x 0.01, 2 x 0.03, max(0.06, 1 x 0.04): in input order
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06], abs=1e-15)
    # capped at 1, and never below an earlier (smaller) p's adjusted value
    assert holm([0.5, 0.02]) == pytest.approx([0.5, 0.04], abs=1e-15)
    assert holm([0.6, 0.7]) == [1.0, 1.0]
    assert holm([0.2]) == [0.2] and holm([]) == []


def test_bootstrap_ci_holds_the_true_difference_of_separated_groups() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(10.0, 1.0, 30), rng.normal(0.0, 1.0, 30)  # true difference 10
    low, high = bootstrap_diff_ci(a, b)
    assert low < 10.0 < high and low > 5.0  # far from 0
    # scipy's own percentile bootstrap (its own resampling) agrees to Monte Carlo error
    ref = scipy.stats.bootstrap(
        (a, b),
        lambda x, y, axis: x.mean(axis) - y.mean(axis),
        n_resamples=10_000,
        method="percentile",
        random_state=0,
    ).confidence_interval
    assert (low, high) == pytest.approx((ref.low, ref.high), abs=0.05)
    assert bootstrap_diff_ci(a, b) == (low, high)  # fixed seed: the same interval again


def test_bootstrap_ci_of_identical_constant_groups_is_zero() -> None:
    assert bootstrap_diff_ci([3.5, 3.5, 3.5], [3.5, 3.5]) == (0.0, 0.0)


def test_ranks_share_ties_and_put_missing_last() -> None:
    assert ranks([3.0, 1.0, 2.0]) == [3.0, 1.0, 2.0]
    assert ranks([1.0, 1.0, 0.5]) == [2.5, 2.5, 1.0]
    assert ranks([None, 2.0, None, 1.0]) == [3.5, 2.0, 3.5, 1.0]  # places 3 and 4, shared
    with pytest.raises(ValueError, match="finite"):
        ranks([math.inf, None])
