"""ganlab.report's paired comparison of groups that share their seeds: the paired t-test and
Wilcoxon's signed-rank test against scipy.stats (ttest_rel, wilcoxon), Holm against a hand
loop, and the report of a hand-made sweep where only the paired test sees a small, steady
difference under a large between-seed spread."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import yaml

from ganlab.report import build_report
from ganlab.report.__main__ import _significance_line, main
from ganlab.report.stats import (
    WILCOXON_EXACT_MAX,
    paired_t_test,
    signed_rank_null,
    wilcoxon_test,
)
from tests.conftest import hand_holm

# --- per-seed tables: (a, b), one value per seed in each -------------------------------------

RNG = np.random.default_rng(27)
HAND_TABLES = [
    ([41.2, 55.9, 38.1, 47.3, 60.4], [40.0, 54.1, 37.9, 45.0, 59.8]),  # a always above b
    ([10.0, 20.0, 30.0], [12.0, 19.0, 33.0]),  # signs differ
    ([5.0, 6.0, 7.0, 8.0], [4.0, 5.0, 6.0, 9.0]),  # ties: |d| = 1, 1, 1, 1
    ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1.0, 1.5, 3.0, 3.5, 7.0, 6.0]),  # zeros and tied |d|
    ([3.0, 3.0, 5.0, 9.0], [2.0, 3.0, 4.0, 7.0]),  # one zero, tied |d| = 1
    ([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2.0, 0.0, 4.0, 1.0, 6.0, 3.0, 8.0]),  # |d| all 1 or 2
]
RANDOM_TABLES = [
    (a, a + shift + RNG.normal(0.0, 1.0, n))
    for n, shift in ((3, 0.0), (5, 0.8), (8, -0.3), (13, 0.5), (20, 0.2), (40, -0.4))
    for a in [RNG.normal(50.0, 10.0, n)]
]
# Rounded to whole numbers: ties among |d| and zero differences in a random table.
ROUNDED_TABLES = [(np.round(a), np.round(b)) for a, b in RANDOM_TABLES if len(a) <= 13]
TABLES = [*HAND_TABLES, *RANDOM_TABLES, *ROUNDED_TABLES]


def diffs_of(a, b) -> np.ndarray:
    return np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)


# --- the paired t-test ------------------------------------------------------------------------


@pytest.mark.parametrize("a, b", TABLES)
def test_paired_t_matches_scipy_ttest_rel(a, b) -> None:
    ref = scipy.stats.ttest_rel(a, b)
    paired = paired_t_test(diffs_of(a, b))
    assert paired.n == len(a) and paired.df == len(a) - 1 == ref.df
    assert paired.t == pytest.approx(ref.statistic, rel=1e-12)
    assert paired.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert paired.mean == pytest.approx(np.mean(diffs_of(a, b)), rel=1e-12)
    ci = ref.confidence_interval(confidence_level=0.95)
    assert paired.ci == pytest.approx((ci.low, ci.high), rel=1e-10)


def test_paired_t_by_hand_at_the_t_table_value() -> None:
    # d = (s - 1, s, s + 1): sd 1, se 1/sqrt(3); with t(0.975, 2) = 4.302653 the p is 0.05
    # and the interval's lower end is exactly 0.
    shift = 4.302653 / math.sqrt(3)
    paired = paired_t_test([shift - 1, shift, shift + 1])
    assert paired.t == pytest.approx(4.302653, rel=1e-12) and paired.df == 2
    assert paired.p == pytest.approx(0.05, abs=1e-6)
    assert paired.ci[0] == pytest.approx(0.0, abs=1e-5)


def test_paired_t_counts_zero_differences_and_is_undefined_without_spread() -> None:
    with_zeros = [0.0, 0.0, 1.5, -0.5, 2.0]
    ref = scipy.stats.ttest_1samp(with_zeros, 0.0)
    assert paired_t_test(with_zeros).t == pytest.approx(ref.statistic, rel=1e-12)
    assert paired_t_test([1.0]) is None  # one pair: no variance
    assert paired_t_test([2.0, 2.0, 2.0]) is None  # scipy: t = inf, "certain" from 3 seeds
    assert paired_t_test([0.0, 0.0]) is None


# --- Wilcoxon's signed-rank test --------------------------------------------------------------


@pytest.mark.parametrize("a, b", TABLES)
def test_wilcoxon_matches_scipy(a, b) -> None:
    """scipy's default: zero_method="wilcox" (zeros dropped), exact without ties or zeros up
    to n = 50, an exact permutation test with them up to n = 13 — our exact p in each case."""
    d = diffs_of(a, b)
    ref = scipy.stats.wilcoxon(a, b)  # zero_method="wilcox", two-sided, method="auto"
    ours = wilcoxon_test(d)
    assert ours.exact and ours.n == np.count_nonzero(d) and ours.zeros == d.size - ours.n
    assert ours.w == ref.statistic
    assert ours.p == pytest.approx(ref.pvalue, rel=1e-9)


def test_the_tables_have_ties_and_zeros() -> None:
    """The cases above include what makes Wilcoxon's test tricky (else the test proves less)."""
    diffs = [diffs_of(a, b) for a, b in TABLES]
    assert sum(np.any(d == 0) for d in diffs) >= 4
    tied = [d for d in diffs if len(np.unique(np.abs(d[d != 0]))) < np.count_nonzero(d)]
    assert len(tied) >= 5


def brute_force_wilcoxon_p(d: np.ndarray) -> float:
    """The exact two-sided p by listing every sign pattern of the ranks (2^n rows)."""
    nonzero = d[d != 0]
    r = scipy.stats.rankdata(np.abs(nonzero))
    n = r.size
    signs = (np.arange(2**n)[:, None] >> np.arange(n)) & 1  # [2^n, n] 1 = positive
    w_plus = signs @ r  # [2^n]
    observed = r[nonzero > 0].sum()
    return min(1.0, 2 * min(np.mean(w_plus <= observed), np.mean(w_plus >= observed)))


def test_wilcoxon_with_ties_beyond_13_is_exact() -> None:
    # Here scipy's default turns to the normal approximation, and its exhaustive permutation
    # test takes ~40 s: all 2^16 sign patterns listed by numpy are the reference instead.
    d = np.round(RNG.normal(0.6, 1.5, 16))
    d[d == 0] = 1.0  # keep 16 non-zero differences, with many ties
    assert len(np.unique(np.abs(d))) < 8
    assert wilcoxon_test(d).p == pytest.approx(brute_force_wilcoxon_p(d), rel=1e-12)
    a, b = HAND_TABLES[3]  # and the listing is scipy's permutation test where it runs one
    assert brute_force_wilcoxon_p(diffs_of(a, b)) == scipy.stats.wilcoxon(a, b).pvalue


def test_wilcoxon_beyond_the_exact_limit_is_scipys_normal_approximation() -> None:
    n = WILCOXON_EXACT_MAX + 30
    d = np.round(RNG.normal(0.15, 1.0, n), 1)  # ties and some zeros
    ref = scipy.stats.wilcoxon(d, method="asymptotic")  # correction=False, scipy's default
    ours = wilcoxon_test(d)
    assert not ours.exact and ours.zeros == np.sum(d == 0) > 0
    assert ours.w == ref.statistic and ours.p == pytest.approx(ref.pvalue, rel=1e-9)


def test_wilcoxon_by_hand() -> None:
    # 5 differences of one sign: W = 0, and only 2 of the 2^5 sign patterns are as extreme.
    assert wilcoxon_test([-0.1, -0.4, -0.2, -0.3, -0.5]).p == 2 / 32
    # 3 seeds: the p cannot go below 2/8.
    assert wilcoxon_test([1.0, 2.0, 3.0]).p == 0.25
    # zeros dropped (Wilcoxon's rule): the same as the non-zero differences alone
    with_zeros, alone = wilcoxon_test([0.0, 1.0, 0.0, -2.0, 3.0]), wilcoxon_test([1.0, -2.0, 3.0])
    assert (with_zeros.n, with_zeros.zeros, with_zeros.w, with_zeros.p) == (3, 2, alone.w, alone.p)
    assert wilcoxon_test([0.0, 0.0, 0.0]) is None  # nothing left to rank


def test_signed_rank_null_by_hand() -> None:
    # ranks 1, 2, 3: W+ over the 8 sign patterns is 0, 1, 2, 3, 3, 4, 5, 6
    dist = signed_rank_null([1.0, 2.0, 3.0])  # entry k: P(W+ = k / 2)
    assert dist[::2] == pytest.approx(np.array([1, 1, 1, 2, 1, 1, 1]) / 8, abs=1e-15)
    assert not dist[1::2].any()
    # tied mid-ranks 1.5, 1.5, 3: W+ is 0, 1.5, 1.5, 3, 3, 4.5, 4.5, 6
    tied = signed_rank_null([1.5, 1.5, 3.0])
    assert {k / 2: v * 8 for k, v in enumerate(tied) if v} == pytest.approx(
        {0.0: 1, 1.5: 2, 3.0: 2, 4.5: 2, 6.0: 1}, abs=1e-12
    )
    assert signed_rank_null(np.arange(1.0, 31.0)).sum() == pytest.approx(1.0, abs=1e-12)


# --- hand-made sweeps -------------------------------------------------------------------------


def make_run(sweep: Path, loss: str, seed: int, fid: float, status: str = "completed") -> None:
    """A run folder as the trainer leaves it: results.json and .hydra's config and overrides."""
    run_dir = sweep / f"loss={loss},seed={seed}"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"loss": {"name": loss}}))
    overrides = [f"loss={loss}", f"seed={seed}"]
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    results = {
        "status": status,
        "loss": loss,
        "seed": seed,
        "final": {"loss_d": 0.5, "loss_g": 1.5},
        "throughput": {"it_per_s": 20.0},
        "metrics": {"fid": fid if status == "completed" else None},
    }
    (run_dir / "results.json").write_text(json.dumps(results))


def read_rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with path.open(newline="") as f:
        return {(r["group_a"], r["group_b"]): r for r in csv.DictReader(f)}


# Seeds 0..4 give FIDs 40 apart at most (the seed matters far more than the loss); "steady"
# is 0.6 lower than "base" at every seed, give or take 0.1: Welch's test sees 0.6 against a
# spread of ~16 and finds nothing, the per-seed differences show it every time.
SEED_FID = (31.0, 58.0, 44.0, 70.0, 37.0)
JITTER = (0.05, -0.1, 0.0, 0.1, -0.05)


@pytest.fixture
def steady_sweep(tmp_path: Path) -> Path:
    sweep = tmp_path / "sweep"
    for seed, (fid, jitter) in enumerate(zip(SEED_FID, JITTER, strict=True)):
        make_run(sweep, "base", seed, fid)
        make_run(sweep, "steady", seed, fid - 0.6 + jitter)
    return sweep


def test_the_paired_test_finds_a_steady_difference_that_welch_misses(steady_sweep: Path) -> None:
    report = build_report(steady_sweep)
    (pair,) = report.pairs
    assert (pair.a, pair.b) == ("steady", "base")  # lower FID first
    steady = [f - 0.6 + j for f, j in zip(SEED_FID, JITTER, strict=True)]
    welch = scipy.stats.ttest_ind(steady, SEED_FID, equal_var=False)
    paired = scipy.stats.ttest_rel(steady, SEED_FID)
    assert welch.pvalue > 0.5 and paired.pvalue < 0.001  # the premise, by scipy

    assert pair.test == "paired" and pair.by_seed.seeds == ["0", "1", "2", "3", "4"]
    assert pair.p == pytest.approx(welch.pvalue, rel=1e-10) and pair.holm_p > 0.05
    assert pair.by_seed.p == pytest.approx(paired.pvalue, rel=1e-10)
    assert pair.by_seed.holm_p < 0.05 and pair.used_holm_p == pair.by_seed.holm_p
    assert pair.by_seed.diff == pytest.approx(-0.6, abs=1e-12)
    low, high = pair.by_seed.ci
    assert low < -0.6 < high < 0  # the t-interval excludes 0; the bootstrap one does not
    assert pair.ci[0] < 0 < pair.ci[1]
    assert pair.by_seed.wilcoxon_p == 2 / 32  # all 5 one way: as low as 5 seeds allow

    row = read_rows(steady_sweep / "significance.csv")[("steady", "base")]
    assert row["test"] == "paired" and row["n_seeds"] == "5" and row["seeds"] == "0 1 2 3 4"
    assert float(row["paired_t"]) == pytest.approx(paired.statistic, rel=1e-10)
    assert float(row["paired_holm_p"]) == pytest.approx(paired.pvalue, rel=1e-10)  # one pair
    assert float(row["wilcoxon_p"]) == float(row["wilcoxon_holm_p"]) == 0.0625
    assert float(row["p"]) > 0.5 and row["wilcoxon_zeros"] == "0"

    text = report.markdown.read_text()
    assert "**Test used:** the paired t-test for the 1 pair whose groups completed" in text
    assert "| steady | base | 5 | -0.6 | [" in text and "| <0.001 | <0.001 | 0 | 0.062 |" in text
    assert "cannot go below 2/2^5 = 0.0625" in text
    line = _significance_line(report)
    assert line.startswith("significance: 1 of 1 pair with Holm-adjusted p < 0.05 by the test")
    assert "paired t on shared seeds for 1, Welch for 0" in line and "Welch alone: 0 of 1" in line


def test_pairs_share_only_the_seeds_both_completed(steady_sweep: Path, capsys) -> None:
    """A third group with one shared seed is read by Welch's test; a failed run's seed is not
    shared; Holm adjusts the paired and Wilcoxon families on their own."""
    make_run(steady_sweep, "lone", 0, 20.0)
    make_run(steady_sweep, "lone", 7, 25.0)  # seed 7: no other group has it
    make_run(steady_sweep, "gaps", 0, 45.0)
    make_run(steady_sweep, "gaps", 1, 62.0)
    make_run(steady_sweep, "gaps", 2, 40.0, status="diverged")
    make_run(steady_sweep, "gaps", 3, 75.0)
    report = build_report(steady_sweep)
    pairs = {(p.a, p.b): p for p in report.pairs}

    lone = pairs[("lone", "steady")]
    assert lone.by_seed.seeds == ["0"] and lone.test == "Welch" and lone.by_seed.p is None
    assert "1 shared seed (paired tests need 2)" in lone.by_seed.note
    gaps = pairs[("steady", "gaps")]
    assert gaps.by_seed.seeds == ["0", "1", "3"]  # seed 2 diverged in gaps, 4 is absent
    steady = {s: f - 0.6 + j for s, (f, j) in enumerate(zip(SEED_FID, JITTER, strict=True))}
    gaps_fid = {0: 45.0, 1: 62.0, 3: 75.0}
    ref = scipy.stats.ttest_rel([steady[s] for s in gaps_fid], list(gaps_fid.values()))
    assert gaps.by_seed.p == pytest.approx(ref.pvalue, rel=1e-10)

    # Each family Holm-adjusted over the pairs that have that test, by a hand loop.
    rows = list(read_rows(steady_sweep / "significance.csv").values())
    for raw, adjusted in (("paired_p", "paired_holm_p"), ("wilcoxon_p", "wilcoxon_holm_p"),
                          ("p", "holm_p")):  # fmt: skip
        tested = [r for r in rows if r[raw]]
        expected = hand_holm([float(r[raw]) for r in tested])
        assert [float(r[adjusted]) for r in tested] == pytest.approx(expected, rel=1e-12)
        assert all(r[adjusted] == "" for r in rows if not r[raw])
    assert sum(bool(r["paired_p"]) for r in rows) == 3  # steady–base, steady–gaps, base–gaps
    assert sum(r["test"] == "Welch" for r in rows) == 3  # every pair with lone

    text = report.markdown.read_text()
    assert "the paired t-test for the 3 pairs whose groups completed at least 2 of the same" \
        " seeds (with differences that vary), Welch's for the other 3" in text  # fmt: skip

    assert main([str(steady_sweep)]) == 0
    out = capsys.readouterr().out
    assert "by the test used (paired t on shared seeds for 3, Welch for 3)" in out


def test_no_shared_seeds_no_paired_table(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for seed, fid in ((0, 30.0), (1, 40.0)):
        make_run(sweep, "a", seed, fid)
    for seed, fid in ((2, 35.0), (3, 50.0)):
        make_run(sweep, "b", seed, fid)
    report = build_report(sweep)
    text = report.markdown.read_text()
    assert "**Test used:** Welch's for every pair" in text and "**Seed by seed**" not in text
    assert report.pairs[0].test == "Welch"
    assert _significance_line(report).startswith("significance: 0 of 1 pair with Holm-adjusted"
                                                  " Welch p < 0.05")  # fmt: skip


def test_identical_groups_have_nothing_to_pair(tmp_path: Path) -> None:
    """Two groups with the same value at every seed (the same runs twice): no paired t, no
    Wilcoxon, and Welch's test is the one used."""
    sweep = tmp_path / "sweep"
    for seed, fid in enumerate((30.0, 41.0, 35.0)):
        make_run(sweep, "a", seed, fid)
        make_run(sweep, "b", seed, fid)
    (pair,) = build_report(sweep).pairs
    assert pair.by_seed.diff == 0.0 and pair.by_seed.p is None and pair.by_seed.wilcoxon_p is None
    assert "the same value in both groups at every shared seed" in pair.by_seed.note
    assert pair.test == "Welch" and pair.p == pytest.approx(1.0)
