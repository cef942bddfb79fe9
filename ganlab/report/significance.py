"""Is one group better than another? Every pair of groups compared on the primary metric.

Per pair: the difference of means with a bootstrap 95% interval, Welch's t-test, and the
p-values Holm-adjusted over all pairs that have a test (see ``stats``). Only successful runs
have values: a group's failures are in "Rank per seed", not here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

from ganlab.report.stats import bootstrap_diff_ci, holm, welch_test
from ganlab.report.summary import GroupRow, values_of

MIN_VALUES = 2  # a t-test needs a variance in each group


@dataclass
class Pair:
    """Group ``a`` against group ``b`` (``a`` ranked above ``b`` in the summary)."""

    a: str
    b: str
    n_a: int
    n_b: int
    mean_a: float | None
    mean_b: float | None
    diff: float | None = None  # mean_a - mean_b
    ci: tuple[float, float] | None = None
    t: float | None = None
    df: float | None = None
    p: float | None = None
    holm_p: float | None = None
    note: str = ""  # why some numbers are missing

    def involves(self, group: str) -> bool:
        return group in (self.a, self.b)


def compare_pair(a: GroupRow, b: GroupRow, primary: str) -> Pair:
    """The pair's numbers, all but the Holm p (which needs every pair); n and the means are
    the summary's (``GroupRow.stats``)."""
    sa, sb = a.stats[primary], b.stats[primary]
    pair = Pair(a.group, b.group, sa.n, sb.n, sa.mean, sb.mean)
    if pair.mean_a is not None and pair.mean_b is not None:
        pair.diff = pair.mean_a - pair.mean_b
    short = [row.group for row in (a, b) if row.stats[primary].n < MIN_VALUES]
    if short:
        # One value has no spread: a test or an interval would pretend it is exact.
        pair.note = f"fewer than {MIN_VALUES} successful runs with {primary}: {', '.join(short)}"
        return pair
    xa, xb = values_of(a.ok, primary), values_of(b.ok, primary)
    pair.ci = bootstrap_diff_ci(xa, xb)
    welch = welch_test(xa, xb)
    if welch is None:
        pair.note = "no spread in either group (every value equal): no test"
    else:
        pair.t, pair.df, pair.p = welch.t, welch.df, welch.p
    return pair


def _order(pair: Pair) -> tuple[int, float, float]:
    # Smallest Holm p first; pairs without a test last, in summary order (sort is stable).
    if pair.holm_p is None:
        return (1, 0.0, 0.0)
    return (0, pair.holm_p, pair.p if pair.p is not None else 0.0)


def compare_groups(rows: Sequence[GroupRow], primary: str) -> list[Pair]:
    """Every pair of groups, sorted by Holm-adjusted p (rows best first, as ``summarize``)."""
    pairs = [compare_pair(a, b, primary) for a, b in combinations(rows, 2)]
    tested = [pair for pair in pairs if pair.p is not None]
    for pair, adjusted in zip(tested, holm([pair.p for pair in tested]), strict=True):
        pair.holm_p = adjusted
    return sorted(pairs, key=_order)
