"""report.md's comparisons between groups, and their CSVs: "Significance" (significance.csv)
and "Rank per seed" (ranks.csv).

The markdown keeps 16 groups (120 pairs) readable by listing only the pairs that matter; the
CSVs always hold everything, with plain numbers (empty where there is none).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ganlab.report.markdown import cell, md_table
from ganlab.report.ranks import SeedRanks
from ganlab.report.runs import MISSING
from ganlab.report.significance import MIN_VALUES, Pair
from ganlab.report.stats import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
from ganlab.report.summary import GroupRow, better

SIGNIFICANCE_CSV = "significance.csv"
RANKS_CSV = "ranks.csv"
SHOW_ALL_PAIRS = 28  # up to 8 groups every pair is listed; beyond, the ones that matter
ALPHA = 0.05


def _num(value: float | None, spec: str) -> str:
    return MISSING if value is None else format(value, spec)


def _p(value: float | None) -> str:
    if value is None:
        return MISSING
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _n_words(rows: Sequence[GroupRow], primary: str) -> str:
    counts = sorted({row.stats[primary].n for row in rows})
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    return f"n = {n} successful run{'s' if counts[-1] != 1 else ''} per group"


# --- Significance ---------------------------------------------------------------------------


def _shown(pairs: Sequence[Pair], best: str) -> tuple[list[Pair], str]:
    if len(pairs) <= SHOW_ALL_PAIRS:
        return list(pairs), f"All {len(pairs)} pairs, by Holm p."
    shown = [p for p in pairs if p.involves(best) or (p.holm_p is not None and p.holm_p < ALPHA)]
    return shown, (
        f"Showing {len(shown)} of {len(pairs)} pairs: those with the best group ({best}) and"
        f" those with Holm p < {ALPHA}, by Holm p; every pair is in [{SIGNIFICANCE_CSV}]"
        f"({SIGNIFICANCE_CSV})."
    )


def _pair_cells(pair: Pair) -> list[str]:
    ci = MISSING if pair.ci is None else f"[{pair.ci[0]:.4g}, {pair.ci[1]:.4g}]"
    return [
        cell(pair.a), cell(pair.b), _num(pair.diff, ".4g"), ci, _num(pair.t, ".2f"),
        _num(pair.df, ".1f"), _p(pair.p), _p(pair.holm_p), cell(pair.note),
    ]  # fmt: skip


def _power_note(rows: Sequence[GroupRow], primary: str) -> str:
    counts = sorted({n for row in rows if (n := row.stats[primary].n) >= MIN_VALUES})
    # A resample of n values is a multiset of n of them: there are C(2n - 1, n).
    few = ", ".join(f"{n} values have {math.comb(2 * n - 1, n)}" for n in counts[:2])
    note = (
        f"**Little power:** with {_n_words(rows, primary)} a real difference can easily give"
        " p > 0.05, and so few values cannot check the normality Welch's t leans on."
    )
    if counts and counts[0] <= 5:
        note += (
            f" The bootstrap CI is too narrow at such n ({few} distinct resamples only), so a CI"
            " that excludes 0 beside p > 0.05 is no evidence of a difference."
        )
    return note


def significance_section(
    rows: Sequence[GroupRow], pairs: Sequence[Pair], primary: str
) -> list[str]:
    """The "Significance" section of report.md."""
    lines = [f"## Significance (`{primary}`)", ""]
    if not pairs:
        return [*lines, "One group: nothing to compare.", ""]
    tested = sum(pair.p is not None for pair in pairs)
    lines += [
        f"Each pair of groups on `{primary}` ({better(primary)} is better; A is the group above"
        f" B in the summary): Welch's t-test, p Holm-adjusted over the {tested}"
        f" pair{'s' if tested != 1 else ''} with a test; 95% CI of mean(A) − mean(B) by"
        f" percentile bootstrap, {BOOTSTRAP_RESAMPLES:,}"
        f" resamples (seed {BOOTSTRAP_SEED}), each group resampled on its own. Failed runs have"
        " no value and are left out here (Rank per seed counts them).",
        "",
        _power_note(rows, primary),
        "",
    ]
    short = [row.group for row in rows if row.stats[primary].n < MIN_VALUES]
    if short:
        lines += [
            f"{MISSING} for t, p and CI: a group with fewer than {MIN_VALUES} successful runs has"
            f" no variance to test with ({', '.join(short)}).",
            "",
        ]
    shown, caption = _shown(pairs, rows[0].group)
    header = ["A", "B", "mean A − B", "95% bootstrap CI", "Welch t", "df", "p", "Holm p", "note"]
    body = [_pair_cells(pair) for pair in shown]
    if not any(pair.note for pair in shown):  # no column of empty cells
        header, body = header[:-1], [cells[:-1] for cells in body]
    return [*lines, caption, "", *md_table(header, body), ""]


def write_significance_csv(path: Path, pairs: Sequence[Pair], primary: str) -> Path:
    """Every pair, in the section's order."""
    header = ["metric", "group_a", "group_b", "n_a", "n_b", "mean_a", "mean_b", "mean_diff",
              "ci_low", "ci_high", "welch_t", "df", "p", "holm_p", "note"]  # fmt: skip
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for p in pairs:
            ci: tuple[Any, Any] = p.ci if p.ci is not None else (None, None)
            cells = [p.n_a, p.n_b, p.mean_a, p.mean_b, p.diff, *ci, p.t, p.df, p.p, p.holm_p]
            writer.writerow([primary, p.a, p.b, *("" if c is None else c for c in cells), p.note])
    return path


# --- Rank per seed --------------------------------------------------------------------------


def _rank_cell(ranks: SeedRanks, seed: str) -> str:
    text = f"{ranks.rank[seed]:g}"
    if seed in ranks.unranked:
        return f"{text} ({ranks.unranked[seed]})"
    if seed in ranks.averaged:
        return f"{text} (mean of {ranks.averaged[seed]} runs)"
    return text


def ranks_section(
    seeds: Sequence[str], table: Sequence[SeedRanks], primary: str, group_by: str
) -> list[str]:
    """The "Rank per seed" section of report.md."""
    lines = ["## Rank per seed", ""]
    if not seeds:
        return [*lines, "No run records a `seed`: nothing to rank.", ""]
    lines += [
        f"At each seed the groups ranked by `{primary}` (1 = best, {better(primary)} is better;"
        " ties share the mean place). A group without a value at a seed (its run failed, there"
        " is none, or it has no value) shares the last places, marked. Sorted by mean rank.",
        "",
    ]
    header = [group_by, *(f"seed {seed}" for seed in seeds), "mean rank"]
    body = [
        [cell(r.group), *(_rank_cell(r, s) for s in seeds), f"{r.mean_rank:.2f}"] for r in table
    ]
    return [*lines, *md_table(header, body), ""]


def write_ranks_csv(
    path: Path, seeds: Sequence[str], table: Sequence[SeedRanks], group_by: str
) -> Path:
    """One row per group: its rank at each seed, the mean rank, and why a place had no value."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([group_by, *(f"seed_{seed}" for seed in seeds), "mean_rank", "unranked"])
        for r in table:
            why = "; ".join(f"seed {seed}: {reason}" for seed, reason in r.unranked.items())
            writer.writerow([r.group, *(r.rank[seed] for seed in seeds), r.mean_rank, why])
    return path
