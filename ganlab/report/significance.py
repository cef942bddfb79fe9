"""Is one group better than another? Every pair of groups compared on the primary metric.

Per pair, as independent groups: the difference of means with a bootstrap 95% interval and
Welch's t-test. Seed by seed where both groups completed the same seeds (a seed fixes the
initialisation and the data order in every group, so a per-seed difference cancels what the
seed adds to both): the paired t-test on the per-seed differences with its t-interval, and
Wilcoxon's signed-rank test. Each family of p-values (Welch, paired t, Wilcoxon) is
Holm-adjusted over the pairs that have that test (see ``stats``). Only successful runs have
values: a group's failures are in "Rank per seed", not here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations

from ganlab.report.ranks import seed_key, seed_of
from ganlab.report.runs import MISSING, metric_value
from ganlab.report.stats import (
    bootstrap_diff_ci,
    holm,
    paired_t_test,
    welch_test,
    wilcoxon_test,
)
from ganlab.report.summary import GroupRow, values_of

MIN_VALUES = 2  # a t-test needs a variance in each group
MIN_SEEDS = 2  # the paired t needs a variance of the differences
PAIRED, WELCH = "paired", "Welch"  # Pair.test: the test the pair is read by


@dataclass
class BySeed:
    """The pair seed by seed: the differences ``a - b`` at the ``seeds`` where both groups
    have a value, the paired t-test and Wilcoxon's test on them (None where undefined)."""

    seeds: list[str] = field(default_factory=list)
    diff: float | None = None  # mean of the per-seed differences
    ci: tuple[float, float] | None = None  # its t-interval (95%)
    t: float | None = None
    df: float | None = None
    p: float | None = None
    holm_p: float | None = None
    w: float | None = None  # Wilcoxon's min(W+, W-)
    wilcoxon_p: float | None = None
    wilcoxon_holm_p: float | None = None
    zeros: int = 0  # seeds with a zero difference, left out of Wilcoxon's ranks
    note: str = ""  # why some numbers are missing, or which seeds average several runs

    @property
    def n(self) -> int:
        return len(self.seeds)


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
    t: float | None = None  # t, df, p, holm_p: Welch's
    df: float | None = None
    p: float | None = None
    holm_p: float | None = None
    note: str = ""  # why some numbers are missing
    by_seed: BySeed = field(default_factory=BySeed)

    def involves(self, group: str) -> bool:
        return group in (self.a, self.b)

    @property
    def test(self) -> str | None:
        """The test the pair is read by: the paired t where it has one (shared seeds), else
        Welch's where it has one, else None."""
        if self.by_seed.p is not None:
            return PAIRED
        return WELCH if self.p is not None else None

    @property
    def used_holm_p(self) -> float | None:
        """The Holm-adjusted p of :attr:`test`."""
        return self.by_seed.holm_p if self.test == PAIRED else self.holm_p


def seed_values(row: GroupRow, primary: str) -> tuple[dict[str, float], list[str]]:
    """The group's value at each seed (its successful runs with a ``seed`` and the metric),
    and the seeds where it is the mean of several runs (as "Rank per seed" does)."""
    found: dict[str, list[float]] = {}
    for run in row.ok:
        seed, value = seed_of(run), metric_value(run, primary)
        if seed != MISSING and value is not None:
            found.setdefault(seed, []).append(value)
    averaged = [seed for seed, values in found.items() if len(values) > 1]
    return {seed: sum(values) / len(values) for seed, values in found.items()}, averaged


def compare_by_seed(a: GroupRow, b: GroupRow, primary: str) -> BySeed:
    """The paired tests of ``a`` against ``b`` on the seeds both completed (no Holm p)."""
    (va, avg_a), (vb, avg_b) = seed_values(a, primary), seed_values(b, primary)
    out = BySeed(sorted(va.keys() & vb.keys(), key=seed_key))
    notes = [
        f"{row.group}: mean of its runs at seed {', '.join(sorted(avg, key=seed_key))}"
        for row, avg in ((a, avg_a), (b, avg_b))
        if avg
    ]
    if out.n < MIN_SEEDS:
        notes.insert(0, f"{out.n} shared seed{'s' if out.n != 1 else ''} (paired tests need"
                        f" {MIN_SEEDS})")  # fmt: skip
        out.note = "; ".join(notes)
        return out
    diffs = [va[seed] - vb[seed] for seed in out.seeds]  # [n] a - b, one per seed
    out.diff = sum(diffs) / len(diffs)
    paired, wilcoxon = paired_t_test(diffs), wilcoxon_test(diffs)
    if paired is not None:
        out.ci, out.t, out.df, out.p = paired.ci, paired.t, paired.df, paired.p
    elif wilcoxon is None:
        notes.insert(0, "the same value in both groups at every shared seed: nothing to test")
    else:
        # A constant difference has no spread: t would be infinite, "certain" from 2 seeds.
        notes.insert(0, "the same difference at every shared seed: no paired t")
    if wilcoxon is not None:
        out.w, out.wilcoxon_p, out.zeros = wilcoxon.w, wilcoxon.p, wilcoxon.zeros
    out.note = "; ".join(notes)
    return out


def compare_pair(a: GroupRow, b: GroupRow, primary: str) -> Pair:
    """The pair's numbers, all but the Holm p's (which need every pair); n and the means are
    the summary's (``GroupRow.stats``)."""
    sa, sb = a.stats[primary], b.stats[primary]
    pair = Pair(a.group, b.group, sa.n, sb.n, sa.mean, sb.mean)
    pair.by_seed = compare_by_seed(a, b, primary)
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


def _adjust(pairs: Sequence[Pair], raw: str, adjusted: str, on_seeds: bool) -> None:
    """Holm over the pairs that have the ``raw`` p (one family), into ``adjusted``."""
    holders = [pair.by_seed if on_seeds else pair for pair in pairs]
    tested = [h for h in holders if getattr(h, raw) is not None]
    for holder, value in zip(tested, holm([getattr(h, raw) for h in tested]), strict=True):
        setattr(holder, adjusted, value)


def compare_groups(rows: Sequence[GroupRow], primary: str) -> list[Pair]:
    """Every pair of groups, sorted by Welch's Holm-adjusted p (rows best first, as
    ``summarize``); Welch's, the paired t's and Wilcoxon's p-values each Holm-adjusted."""
    pairs = [compare_pair(a, b, primary) for a, b in combinations(rows, 2)]
    _adjust(pairs, "p", "holm_p", on_seeds=False)
    _adjust(pairs, "p", "holm_p", on_seeds=True)
    _adjust(pairs, "wilcoxon_p", "wilcoxon_holm_p", on_seeds=True)
    # Welch's order whichever test a pair is read by: a sweep without shared seeds, or with
    # some, keeps the order (and the CSV) it had before the paired tests.
    return sorted(pairs, key=_order)
