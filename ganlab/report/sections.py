"""report.md's comparisons between groups, and their CSVs: "Significance" (significance.csv)
and "Rank per seed" (ranks.csv).

The markdown keeps 16 groups (120 pairs) readable by listing only the pairs that matter; the
CSVs always hold everything, with plain numbers (empty where there is none).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ganlab.report.markdown import cell, md_table
from ganlab.report.ranks import SeedRanks
from ganlab.report.runs import MISSING
from ganlab.report.significance import MIN_SEEDS, MIN_VALUES, PAIRED, WELCH, Pair
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
    shown = [p for p in pairs if p.involves(best) or _below(p.holm_p) or _below(p.used_holm_p)]
    return shown, (
        f"Showing {len(shown)} of {len(pairs)} pairs: those with the best group ({best}) and"
        f" those with Holm p < {ALPHA} (Welch's or the test used), by Holm p; every pair is in"
        f" [{SIGNIFICANCE_CSV}]({SIGNIFICANCE_CSV})."
    )


def _below(p: float | None) -> bool:
    return p is not None and p < ALPHA


def _pair_cells(pair: Pair) -> list[str]:
    ci = MISSING if pair.ci is None else f"[{pair.ci[0]:.4g}, {pair.ci[1]:.4g}]"
    return [
        cell(pair.a), cell(pair.b), _num(pair.diff, ".4g"), ci, _num(pair.t, ".2f"),
        _num(pair.df, ".1f"), _p(pair.p), _p(pair.holm_p), pair.test or MISSING, cell(pair.note),
    ]  # fmt: skip


def _ci(ci: tuple[float, float] | None) -> str:
    return MISSING if ci is None else f"[{ci[0]:.4g}, {ci[1]:.4g}]"


def _paired_cells(pair: Pair) -> list[str]:
    s = pair.by_seed
    return [
        cell(pair.a), cell(pair.b), str(s.n), _num(s.diff, ".4g"), _ci(s.ci), _num(s.t, ".2f"),
        _p(s.p), _p(s.holm_p), _num(s.w, "g"), _p(s.wilcoxon_p), _p(s.wilcoxon_holm_p),
        cell(s.note),
    ]  # fmt: skip


def _which_test(pairs: Sequence[Pair]) -> str:
    """One sentence: which test the pairs are read by, and why."""
    paired = sum(pair.test == PAIRED for pair in pairs)
    welch = sum(pair.test == WELCH for pair in pairs)
    if not paired:
        if not welch:
            return (
                f"**Test used:** none: no pair has {MIN_VALUES} successful runs in each group,"
                f" nor {MIN_SEEDS} seeds both groups completed."
            )
        which = "Welch's for every pair" if welch == len(pairs) else f"Welch's for {welch} pairs"
        return (
            f"**Test used:** {which}: no two groups completed {MIN_SEEDS} or more of the same"
            " seeds with a difference that varies, so no pair can be compared seed by seed."
        )
    others = f", Welch's for the other {welch}" if welch else ""
    return (
        f"**Test used:** the paired t-test for the {paired} pair{'s' if paired != 1 else ''}"
        f" whose groups completed at least {MIN_SEEDS} of the same seeds (with differences"
        f" that vary){others}: a seed fixes"
        " the initialisation and the data order in every group, so the difference at each seed"
        " cancels what the seed adds to both and leaves out the between-seed spread that"
        " Welch's test counts as noise."
    )


def _paired_intro(pairs: Sequence[Pair]) -> str:
    tested = sum(pair.by_seed.p is not None for pair in pairs)
    ranked = sum(pair.by_seed.wilcoxon_p is not None for pair in pairs)
    text = (
        "**Seed by seed**, the same pairs in the same order: the mean of the per-seed"
        " differences A − B with its 95% t-interval, the paired t-test (df = seeds − 1; p"
        f" Holm-adjusted over the {tested} pair{'s' if tested != 1 else ''} with one) and"
        " Wilcoxon's signed-rank test W = min(W+, W−) (exact p given the ties; a seed where A"
        " and B are equal is left out of its ranks, Wilcoxon's rule; Holm over its"
        f" {ranked} pair{'s' if ranked != 1 else ''})."
    )
    sizes = [s.n - s.zeros for s in (pair.by_seed for pair in pairs) if s.wilcoxon_p is not None]
    if sizes and min(sizes) <= 5:
        # The exact p can't go below the chance of the most extreme sign pattern: 2 / 2^n.
        n = min(sizes)
        text += (
            f" With {n} seeds Wilcoxon's p cannot go below 2/2^{n} = {2 / 2**n:.4g}: it checks"
            " the direction without assuming normality but cannot reach 0.05 below 6 seeds."
        )
    return text


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
    header = ["A", "B", "mean A − B", "95% bootstrap CI", "Welch t", "df", "p", "Holm p",
              "test used", "note"]  # fmt: skip
    lines += [_which_test(pairs), "", caption, "", *_table(header, map(_pair_cells, shown)), ""]
    if not any(pair.by_seed.n >= MIN_SEEDS for pair in pairs):
        return lines
    header = ["A", "B", "seeds", "mean A − B", "95% t CI", "paired t", "p", "Holm p",
              "Wilcoxon W", "p (W)", "Holm p (W)", "note"]  # fmt: skip
    return [*lines, _paired_intro(pairs), "", *_table(header, map(_paired_cells, shown)), ""]


def _table(header: list[str], body: Iterable[list[str]]) -> list[str]:
    """A table whose last column is a note, dropped when every note is empty."""
    rows = list(body)
    if not any(cells[-1] for cells in rows):  # no column of empty cells
        header, rows = header[:-1], [cells[:-1] for cells in rows]
    return md_table(header, rows)


def write_significance_csv(path: Path, pairs: Sequence[Pair], primary: str) -> Path:
    """Every pair, in the section's order: Welch's columns (``p``, ``holm_p``), ``note``, then
    the test used and the seed-by-seed columns (``seeds``: the shared ones, space-separated)."""
    header = ["metric", "group_a", "group_b", "n_a", "n_b", "mean_a", "mean_b", "mean_diff",
              "ci_low", "ci_high", "welch_t", "df", "p", "holm_p", "note",
              "test", "n_seeds", "seeds", "paired_diff", "paired_ci_low", "paired_ci_high",
              "paired_t", "paired_df", "paired_p", "paired_holm_p", "wilcoxon_w",
              "wilcoxon_zeros", "wilcoxon_p", "wilcoxon_holm_p", "paired_note"]  # fmt: skip
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for p in pairs:
            s = p.by_seed
            ci: tuple[Any, Any] = p.ci if p.ci is not None else (None, None)
            s_ci: tuple[Any, Any] = s.ci if s.ci is not None else (None, None)
            welch = [p.n_a, p.n_b, p.mean_a, p.mean_b, p.diff, *ci, p.t, p.df, p.p, p.holm_p]
            paired = [s.diff, *s_ci, s.t, s.df, s.p, s.holm_p, s.w, s.zeros, s.wilcoxon_p,
                      s.wilcoxon_holm_p]  # fmt: skip
            writer.writerow([
                primary, p.a, p.b, *_blank(welch), p.note,
                p.test or "", s.n, " ".join(s.seeds), *_blank(paired), s.note,
            ])  # fmt: skip
    return path


def _blank(cells: Sequence[Any]) -> list[Any]:
    return ["" if c is None else c for c in cells]


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
