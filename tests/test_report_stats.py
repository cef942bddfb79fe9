"""ganlab.report's comparisons between groups: the statistics against hand formulas and
tables, then significance, ranks per seed and CPU-time curves on hand-made sweep folders."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import yaml
from torch.utils.tensorboard import SummaryWriter

from ganlab.report import build_report
from ganlab.report.plots import cpu_minutes_per_step, group_colors
from ganlab.report.stats import bootstrap_diff_ci, holm, ranks, welch_df, welch_test
from tests.conftest import assert_png, hand_holm

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


# --- hand-made sweep folders ----------------------------------------------------------------
# Each run folder as the trainer leaves it: results.json, .hydra/config.yaml and
# overrides.yaml (tests/test_report.py's runs come from real training instead), and optionally
# TensorBoard events written with the SummaryWriter the trainer uses.

CURVE_STEPS = (100, 200, 300, 400)


def make_run(
    sweep: Path,
    loss: str,
    seed: int,
    fid: float | None,
    recipe: str | None = None,
    status: str = "completed",
    cpu_s_per_it: float | None = 0.05,
    tb: bool = False,
    crashed: bool = False,
) -> Path:
    """A run folder; ``crashed``: Hydra's folder only (no results.json)."""
    choices = {"loss": loss, "seed": seed, **({"recipe": recipe} if recipe else {})}
    run_dir = sweep / ",".join(f"{k}={v}" for k, v in sorted(choices.items()))
    hydra = run_dir / ".hydra"
    hydra.mkdir(parents=True)
    config = {"loss": {"name": loss}, "seed": seed, **({"recipe": recipe} if recipe else {})}
    (hydra / "config.yaml").write_text(yaml.safe_dump(config))
    (hydra / "overrides.yaml").write_text(yaml.safe_dump([f"{k}={v}" for k, v in choices.items()]))
    if crashed:
        return run_dir
    throughput = {"it_per_s": 20.0, **({"cpu_s_per_it": cpu_s_per_it} if cpu_s_per_it else {})}
    results = {
        "status": status,
        "loss": loss,
        "seed": seed,
        "final": {"loss_d": 0.5, "loss_g": 1.5},
        "throughput": throughput,
        "metrics": {"fid": fid},
    }
    (run_dir / "results.json").write_text(json.dumps(results))
    if tb and fid is not None:
        write_curves(run_dir, fid)
    return run_dir


def write_curves(run_dir: Path, fid: float) -> None:
    writer = SummaryWriter(str(run_dir / "tb"))
    for i, step in enumerate(CURVE_STEPS):
        writer.add_scalar("metrics/fid", fid * (len(CURVE_STEPS) - i), step)  # down to fid
        writer.add_scalar("loss/G", 1.5 + 0.1 * i, step)
        writer.add_scalar("loss/D", 0.5 - 0.05 * i, step)
    writer.close()


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def table_after(text: str, heading: str) -> list[list[str]]:
    """The cells of the first markdown table after ``heading`` (header row first)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    first = next(i for i in range(start, len(lines)) if lines[i].startswith("|"))
    rows = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return [rows[0], *rows[2:]]  # without the --- line


@pytest.fixture
def small_sweep(tmp_path: Path) -> Path:
    """3 losses x seeds 0-2: b's seed 2 diverged, c's seed 1 crashed and its seed 2 is absent."""
    sweep = tmp_path / "sweep"
    for seed, fid in enumerate((10.0, 20.0, 30.0)):
        make_run(sweep, "a", seed, fid, tb=True, cpu_s_per_it=0.02 * (seed + 1))
    make_run(sweep, "b", 0, 15.0, tb=True, cpu_s_per_it=0.1)
    make_run(sweep, "b", 1, 12.0, tb=True, cpu_s_per_it=0.1)
    make_run(sweep, "b", 2, None, status="diverged")
    make_run(sweep, "c", 0, 20.0, tb=True, cpu_s_per_it=0.3)
    make_run(sweep, "c", 1, None, crashed=True)
    return sweep


# Rank by FID at each seed, worked by hand: seed 0 a 10 < b 15 < c 20; seed 1 b 12 < a 20,
# c crashed; seed 2 a 30, b diverged and c absent share places 2 and 3.
EXPECTED_RANKS = {
    "a": (["1", "2", "1"], (1 + 2 + 1) / 3),
    "b": (["2", "1", "2.5 (failed)"], (2 + 1 + 2.5) / 3),
    "c": (["3", "3 (failed)", "2.5 (no run)"], (3 + 3 + 2.5) / 3),
}


def test_rank_per_seed_counts_failed_and_missing_runs_last(small_sweep: Path) -> None:
    report = build_report(small_sweep)
    assert [row.group for row in report.rows] == ["b", "a", "c"]  # by mean FID of successes
    table = table_after(report.markdown.read_text(), "## Rank per seed")
    assert table[0] == ["loss", "seed 0", "seed 1", "seed 2", "mean rank"]
    assert [row[0] for row in table[1:]] == ["a", "b", "c"]  # by mean rank: b's failure counts
    for row in table[1:]:
        cells, mean = EXPECTED_RANKS[row[0]]
        assert row[1:] == [*cells, f"{mean:.2f}"]

    csv_rows = {row["loss"]: row for row in read_rows(small_sweep / "ranks.csv")}
    assert list(csv_rows) == ["a", "b", "c"]
    for group, (cells, mean) in EXPECTED_RANKS.items():
        ranks_at = [float(csv_rows[group][f"seed_{s}"]) for s in range(3)]
        assert ranks_at == [float(c.split()[0]) for c in cells]
        assert float(csv_rows[group]["mean_rank"]) == pytest.approx(mean, rel=1e-12)
    assert csv_rows["c"]["unranked"] == "seed 1: failed; seed 2: no run"


def test_higher_is_better_ranks_the_highest_first(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        for loss, score in (("low", 2.0), ("high", 9.0)):
            run_dir = make_run(sweep, loss, seed, 50.0)
            results = json.loads((run_dir / "results.json").read_text())
            results["metrics"]["mnist_score"] = score + seed
            (run_dir / "results.json").write_text(json.dumps(results))
    report = build_report(sweep, metric="mnist_score")
    assert [(r.group, r.rank) for r in report.ranks] == [
        ("high", {"0": 1.0, "1": 1.0}),
        ("low", {"0": 2.0, "1": 2.0}),
    ]


def test_significance_of_the_small_sweep(small_sweep: Path) -> None:
    report = build_report(small_sweep)
    a, b = [10.0, 20.0, 30.0], [15.0, 12.0]  # the successful FIDs, from the folders above
    ref = scipy.stats.ttest_ind(b, a, equal_var=False)
    rows = read_rows(small_sweep / "significance.csv")
    assert [(r["group_a"], r["group_b"]) for r in rows] == [("b", "a"), ("b", "c"), ("a", "c")]
    tested = rows[0]  # the only pair with a test: Holm over one pair is the p itself
    assert float(tested["mean_diff"]) == pytest.approx(np.mean(b) - np.mean(a), rel=1e-12)
    assert float(tested["welch_t"]) == pytest.approx(ref.statistic, rel=1e-12)
    assert float(tested["p"]) == pytest.approx(ref.pvalue, rel=1e-12)
    assert float(tested["holm_p"]) == pytest.approx(ref.pvalue, rel=1e-12)
    low, high = float(tested["ci_low"]), float(tested["ci_high"])
    assert low <= np.mean(b) - np.mean(a) <= high
    for untested in rows[1:]:  # c has one successful run
        assert untested["welch_t"] == untested["p"] == untested["ci_low"] == ""
        assert "fewer than 2 successful runs" in untested["note"] and "c" in untested["note"]

    text = report.markdown.read_text()
    assert "## Significance (`fid`)" in text and "little power" in text.lower()
    assert "n = 1–3 successful runs per group" in text
    table = table_after(text, "## Significance")
    assert table[0][:8] == ["A", "B", "mean A − B", "95% bootstrap CI", "Welch t", "df", "p",
                            "Holm p"]  # fmt: skip
    assert table[1][:2] == ["b", "a"] and table[1][6] == f"{ref.pvalue:.3f}"
    assert table[2][4:8] == ["–", "–", "–", "–"]


def test_curves_against_cpu_minutes_are_drawn_and_linked(small_sweep: Path) -> None:
    report = build_report(small_sweep)
    assert report.plots["curves_cpu"] == small_sweep / "curves_cpu.png"
    assert_png(report.plots["curves_cpu"])
    assert "![curves_cpu](curves_cpu.png)" in report.markdown.read_text()
    # each group's steps are scaled by the mean of its runs' CPU-s per iteration, in minutes
    scale = cpu_minutes_per_step(report.rows)
    assert scale == pytest.approx({"a": 0.04 / 60, "b": 0.1 / 60, "c": 0.3 / 60}, rel=1e-12)


def test_no_cpu_time_no_cpu_curves(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for seed in (0, 1):
        make_run(sweep, "a", seed, 10.0 + seed, tb=True, cpu_s_per_it=None)
    report = build_report(sweep)
    assert report.plots["curves"] is not None and report.plots["curves_cpu"] is None
    assert not (sweep / "curves_cpu.png").exists()


# --- 16 groups: recipe x loss, as +experiment=loss_study ------------------------------------

LOSSES16 = ("hinge", "lsgan", "ns", "rsgan", "vanilla", "wgan", "wgan_gp", "ragan")


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """2 recipes x 8 losses x 3 seeds: card/hinge clearly best; the other card groups 2 FID
    apart with a wide spread over seeds (no pair separable), the paper ones 2 apart around 150
    with a narrow one (some pairs separable even after Holm)."""
    sweep = tmp_path / "study"
    wide, narrow = (-8.0, 1.0, 7.0), (-0.5, 0.1, 0.4)
    for recipe in ("card", "paper"):
        for i, loss in enumerate(LOSSES16):
            base, spread = (60.0 + 2 * i, wide) if recipe == "card" else (150.0 + 2 * i, narrow)
            if (recipe, loss) == ("card", "hinge"):
                base, spread = 20.0, narrow
            for seed, noise in enumerate(spread):
                make_run(sweep, loss, seed, base + noise, recipe=recipe, tb=seed == 0)
    return sweep


def test_sixteen_groups_stay_readable(study: Path) -> None:
    report = build_report(study, group_by="recipe,loss")
    assert len(report.rows) == 16 and report.rows[0].group == "card, hinge"
    rows = read_rows(study / "significance.csv")
    assert len(rows) == 120  # every pair in the CSV
    p = [float(r["p"]) for r in rows]
    assert [float(r["holm_p"]) for r in rows] == pytest.approx(hand_holm(p), rel=1e-12)
    assert [float(r["holm_p"]) for r in rows] == sorted(float(r["holm_p"]) for r in rows)

    text = report.markdown.read_text()
    shown = table_after(text, "## Significance")[1:]
    keep = [r for r in rows if "card, hinge" in (r["group_a"], r["group_b"])
            or float(r["holm_p"]) < 0.05]  # fmt: skip
    assert f"Showing {len(keep)} of 120 pairs" in text and 15 < len(shown) == len(keep) < 120
    assert [(row[0], row[1]) for row in shown] == [(r["group_a"], r["group_b"]) for r in keep]

    colors = group_colors(report.rows)
    assert len(set(colors.values())) == 16
    for name in ("curves.png", "curves_cpu.png", "final_box.png"):
        assert_png(study / name)
    ranks_rows = read_rows(study / "ranks.csv")
    assert ranks_rows[0]["recipe,loss"] == "card, hinge" and ranks_rows[0]["mean_rank"] == "1.0"
