"""ganlab.report: a real 2-loss x 2-seed sweep, failures (NaN, crash), the command line."""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ganlab.report import Run, build_report, collect_runs, format_stat, summarize, write_report
from ganlab.report.runs import read_scalars
from tests.conftest import assert_png, tiny

LOSSES = ("hinge", "vanilla")
# The numbers every run has, as (results.json path, report.csv column prefix).
FIELDS = [
    (("final", "loss_d"), "final.loss_d"),
    (("final", "loss_g"), "final.loss_g"),
    (("throughput", "it_per_s"), "throughput.it_per_s"),
]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real CPU multirun: loss=vanilla,hinge x seed=0,1, 20 tiny steps each."""
    sweep_dir = tmp_path_factory.mktemp("sweep")
    cmd = [
        sys.executable, "-m", "ganlab.train", "-m", "loss=vanilla,hinge", "seed=0,1",
        *tiny("mlp"), "data=mnist_sample", "trainer.steps=20", "trainer.log_every=10",
        f"hydra.sweep.dir={sweep_dir}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=sweep_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep_dir


def results_by_loss(sweep_dir: Path) -> dict[str, list[dict]]:
    """The completed runs' results.json, read directly (independently of ganlab.report)."""
    found: dict[str, list[dict]] = {}
    for path in sorted(sweep_dir.glob("*/results.json")):
        results = json.loads(path.read_text())
        if results.get("status") == "completed" and results["final"]["loss_g"] is not None:
            found.setdefault(results["loss"], []).append(results)
    return found


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as f:
        return {row["loss"]: row for row in csv.DictReader(f)}


def assert_stats_match(row: dict[str, str], runs: list[dict]) -> None:
    """Every mean/sd in the CSV row equals numpy's over the JSON values (sample sd)."""
    for keys, column in FIELDS:
        values = np.array([run[keys[0]][keys[1]] for run in runs], dtype=np.float64)
        assert float(row[f"{column}_mean"]) == pytest.approx(values.mean(), rel=1e-12)
        assert float(row[f"{column}_sd"]) == pytest.approx(values.std(ddof=1), rel=1e-12)


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints"))
    return dst


def edit_results(run_dir: Path, **patch) -> None:
    path = run_dir / "results.json"
    results = json.loads(path.read_text())
    for dotted, value in patch.items():
        *parents, leaf = dotted.split("__")
        node = results
        for key in parents:
            node = node[key]
        node[leaf] = value
    path.write_text(json.dumps(results))


def run_dir_of(sweep_dir: Path, loss: str, seed: int) -> Path:
    """The sweep's run folder for (loss, seed): named by the swept keys alone."""
    return sweep_dir / f"loss={loss},seed={seed}"


# --- the real sweep -------------------------------------------------------------------------


def test_report_of_a_real_sweep_matches_the_jsons(sweep: Path, tmp_path: Path) -> None:
    assert len(list(sweep.glob("*/results.json"))) == 4
    runs = collect_runs(sweep)
    assert len(runs) == 4 and all(run.overrides.get("seed") in ("0", "1") for run in runs)
    assert sorted(run.label for run in runs) == [
        f"loss={loss},seed={seed}" for loss in LOSSES for seed in (0, 1)
    ]

    md = write_report(sweep, tmp_path)
    assert md == tmp_path / "report.md"

    table = read_csv(tmp_path / "report.csv")
    assert sorted(table) == sorted(LOSSES)
    expected = results_by_loss(sweep)
    for loss in LOSSES:
        row = table[loss]
        assert (row["runs"], row["failed"]) == ("2", "0")
        assert_stats_match(row, expected[loss])
        # The best run has the lowest final G loss (the primary metric without fid).
        best = min(expected[loss], key=lambda r: r["final"]["loss_g"])
        assert row["best_run"] == f"loss={loss},seed={best['seed']}"

    text = md.read_text()
    assert "Primary metric: `final.loss_g`, lower is better" in text
    # the summary compares what compares; the other loss and the speed stand apart, arrowless
    summary, apart = text.split("## Summary by loss")[1].split("### Training numbers")[:2]
    header = next(line for line in summary.splitlines() if line.startswith("| loss |"))
    assert "final.loss_g ↓" in header and "final.loss_d" not in header
    header = next(line for line in apart.splitlines() if line.startswith("| loss |"))
    assert "| final.loss_d |" in header and "↓" not in header and "↑" not in header
    assert f"(../{sweep.name}/loss=hinge,seed=0/) | hinge |" in text  # a folder, as a folder
    for name in ("curves.png", "curves_cpu.png", "final_box.png", "samples.png"):
        assert f"]({name})" in text  # embedded with a relative link
        assert_png(tmp_path / name)
    # real runs record their seed and CPU time: the comparisons have what they need
    assert "## Significance (`final.loss_g`)" in text and "## Rank per seed" in text
    with (tmp_path / "ranks.csv").open(newline="") as f:
        assert {row["loss"] for row in csv.DictReader(f)} == set(LOSSES)
    with (tmp_path / "significance.csv").open(newline="") as f:
        (pair,) = csv.DictReader(f)
    assert float(pair["holm_p"]) == pytest.approx(float(pair["p"]))  # one pair: nothing to adjust


def test_markdown_table_has_one_row_per_loss(sweep: Path, tmp_path: Path) -> None:
    text = write_report(sweep, tmp_path).read_text()
    lines = text.splitlines()
    start = lines.index(next(line for line in lines if line.startswith("| loss | runs | failed")))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    assert sorted(row.split("|")[1].strip() for row in rows) == sorted(LOSSES)
    assert all(" ± " in row for row in rows)


def test_group_by_two_keys_makes_one_group_per_combination(sweep: Path, tmp_path: Path) -> None:
    write_report(sweep, tmp_path, group_by="loss,seed")
    with (tmp_path / "report.csv").open(newline="") as f:
        table = {row["loss,seed"]: row for row in csv.DictReader(f)}
    assert sorted(table) == sorted(f"{loss}, {seed}" for loss in LOSSES for seed in (0, 1))
    expected = results_by_loss(sweep)
    for loss in LOSSES:
        for run in expected[loss]:
            row = table[f"{loss}, {run['seed']}"]
            assert row["runs"] == "1"
            assert float(row["final.loss_g_mean"]) == pytest.approx(run["final"]["loss_g"])


@pytest.mark.parametrize("key", ["trainer.batch_size", "batch_size", "data.source"])
def test_group_by_takes_keys_of_the_overrides_or_results(world, tmp_path, key):
    rows = build_report(world["sweep"], tmp_path, group_by=key).rows
    groups = {row.group: len(row.runs) for row in rows}
    assert groups == {"16" if "batch" in key else "mnist_sample": 1, "–": 2}


# --- failures -------------------------------------------------------------------------------


def test_nan_and_crashed_runs_count_as_failures(sweep: Path, tmp_path: Path) -> None:
    sweep2 = tmp_path / "sweep"
    shutil.copytree(sweep, sweep2, ignore=shutil.ignore_patterns("checkpoints"))
    vanilla0 = run_dir_of(sweep2, "vanilla", 0)
    # A diverged vanilla seed (results.json writes NaN as null) with absurd other numbers:
    # they must not leak into the means.
    diverged = copy_run(vanilla0, sweep2 / "loss=vanilla,seed=9")
    edit_results(diverged, status="diverged", final__loss_g=None, final__loss_d=1e9)
    # A completed run whose final loss is NaN is a failure too.
    nan_run = copy_run(vanilla0, sweep2 / "loss=vanilla,seed=8")
    edit_results(nan_run, final__loss_g=None, throughput__it_per_s=1e9)
    # A crashed hinge run: Hydra's folder, no results.json.
    crashed = sweep2 / "loss=hinge,seed=7"
    shutil.copytree(run_dir_of(sweep2, "hinge", 0) / ".hydra", crashed / ".hydra")
    # A group where every run failed.
    wgan = copy_run(vanilla0, sweep2 / "loss=wgan,seed=0")
    edit_results(wgan, status="diverged", loss="wgan", final__loss_d=None)

    out = tmp_path / "out"
    report = build_report(sweep2, out)
    table = read_csv(out / "report.csv")
    assert {k: (v["runs"], v["failed"]) for k, v in table.items()} == {
        "vanilla": ("4", "2"),
        "hinge": ("3", "1"),
        "wgan": ("1", "1"),
    }
    expected = results_by_loss(sweep)  # the original, healthy runs only
    assert_stats_match(table["vanilla"], expected["vanilla"])
    assert_stats_match(table["hinge"], expected["hinge"])
    assert all(table["wgan"][f"{column}_mean"] == "" for _, column in FIELDS)
    assert table["wgan"]["best_run"] == ""
    assert [row.group for row in report.rows][-1] == "wgan"  # no value: ranked last

    text = report.markdown.read_text()
    assert "| wgan | 1 | 1 | – |" in text
    assert "status 'diverged'; final.loss_g is null" in text
    assert "no results.json" in text
    for name in ("curves.png", "final_box.png", "samples.png"):
        assert_png(out / name)


def test_runs_without_tb_or_samples_still_render(sweep: Path, tmp_path: Path) -> None:
    sweep2 = tmp_path / "sweep"
    shutil.copytree(sweep, sweep2, ignore=shutil.ignore_patterns("checkpoints", "tb", "samples"))
    report = build_report(sweep2, tmp_path / "out")
    assert report.plots["curves"] is None and report.plots["samples"] is None
    assert_png(report.plots["final_box"])
    assert "_not drawn: no data for it in any run_" in report.markdown.read_text()


# --- summarize on hand-made runs (no training) ----------------------------------------------


def fake_run(name: str, loss: str, status: str = "completed", **metrics) -> Run:
    results = {
        "status": status,
        "loss": loss,
        "final": {"loss_d": 1.0, "loss_g": 2.0},
        "throughput": {"it_per_s": 100.0},
        "metrics": metrics,
    }
    return Run(Path(name), name, results, {}, label=name)


def test_fid_is_the_primary_metric_when_present() -> None:
    runs = [
        fake_run("a0", "a", fid=10.0, recall=0.5, classifier_hash="x"),
        fake_run("a1", "a", fid=30.0, recall=0.7),
        fake_run("b0", "b", fid=5.0, recall=0.1),
        fake_run("b1", "b", fid=None, recall=0.9),  # NaN FID: a failure
    ]
    rows = summarize(runs)
    assert [row.group for row in rows] == ["b", "a"]  # lower FID first
    a, b = rows[1], rows[0]
    assert a.best.name == "a0" and b.best.name == "b0"
    assert a.stats["fid"].mean == 20.0 and a.stats["fid"].sd == pytest.approx(math.sqrt(200))
    assert b.stats["fid"].n == 1 and b.stats["fid"].sd is None  # one value: no sd
    assert b.stats["recall"].mean == 0.1  # the failed run's recall is left out
    assert [run.name for run in b.failed] == ["b1"] and "fid is null" in b.failed[0].failure
    assert "classifier_hash" not in a.stats  # text is not a metric
    assert format_stat(b.stats["fid"]) == "5"


def test_higher_is_better_metrics_pick_the_highest() -> None:
    runs = [fake_run("a0", "a", mnist_score=8.0), fake_run("a1", "a", mnist_score=9.0)]
    assert summarize(runs, primary="mnist_score")[0].best.name == "a1"


def test_format_stat_rounds_to_the_sd() -> None:
    from ganlab.report import Stat

    assert format_stat(Stat.of([0.87, 0.90])) == "0.885 ± 0.021"
    assert format_stat(Stat.of([150.0, 162.0])) == "156.0 ± 8.5"
    assert format_stat(Stat.of([])) == "–"


# --- command line ---------------------------------------------------------------------------


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ganlab.report", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd)


def test_cli_writes_the_report_and_says_where(sweep: Path, tmp_path: Path) -> None:
    proc = run_cli(str(sweep), "--out", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == f"wrote {tmp_path / 'report.md'}"
    assert (tmp_path / "report.csv").is_file()


def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = run_cli(str(tmp_path / "nope"), cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ")
    assert "nope" in proc.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_cli(str(empty), cwd=tmp_path)
    assert proc.returncode == 2 and "no runs" in proc.stderr


def test_cli_rejects_an_unknown_metric(sweep: Path, tmp_path: Path) -> None:
    proc = run_cli(str(sweep), "--out", str(tmp_path), "--metric", "fdi", cwd=tmp_path)
    assert proc.returncode == 2
    assert "fdi" in proc.stderr and "final.loss_g" in proc.stderr


def test_slim_copies_of_a_sweep_give_the_same_report_without_the_bulk(sweep, tmp_path):
    """scripts/slim_runs.py (how docs/loss_study was committed): no checkpoints, no images in
    the events, the same scalars and the same report numbers."""
    slim = tmp_path / "slim"
    script = Path(__file__).resolve().parents[1] / "scripts" / "slim_runs.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(sweep), str(slim), "--grids-every", "10"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(p.parent.name for p in sweep.glob("*/results.json"))
    assert sorted(p.parent.name for p in slim.glob("*/results.json")) == runs
    assert not list(slim.rglob("*.gif")) and not list(slim.rglob("checkpoints"))
    # the final G alone stays (the MLP's raw G here: the fixture's runs keep no EMA)
    assert sorted(p.parent.name for p in slim.rglob("*.pt")) == runs
    for name in runs:
        kept = torch.load(slim / name / "generator.pt", weights_only=True)
        last = torch.load(sweep / name / "checkpoints" / "last.pt", weights_only=True)
        assert kept["step"] == last["step"] and "D" not in kept and "opt_G" not in kept
        for key, value in last["G"].items():
            torch.testing.assert_close(kept["G"][key].float(), value, atol=1e-3, rtol=1e-3)
    tags = ["loss/G", "loss/D"]
    for name in runs:
        assert read_scalars(slim / name, tags) == read_scalars(sweep / name, tags)
        assert read_scalars(slim / name, tags)["loss/G"]  # not two empty dicts
    a, b = build_report(sweep, tmp_path / "a"), build_report(slim, tmp_path / "b")
    assert [(r.group, r.stats[a.primary]) for r in a.rows] == [
        (r.group, r.stats[b.primary]) for r in b.rows
    ]
    again = subprocess.run(
        [sys.executable, str(script), str(sweep), str(slim)], capture_output=True, text=True
    )
    assert again.returncode == 2 and "already holds" in again.stderr  # nothing overwritten


def test_runs_measured_with_different_feature_networks_are_not_ranked_together(sweep, tmp_path):
    """A run re-scored (or trained) with another feature network has FIDs on another scale:
    the report refuses, in one line naming the runs and the hashes, unless --mixed-metrics;
    a run from before metrics v3 (no hash recorded) counts as a network of its own."""
    mixed = tmp_path / "mixed"
    runs = sorted(p for p in sweep.iterdir() if (p / "results.json").is_file())
    hashes = ["a" * 64, "a" * 64, "b" * 64, None]
    for run, sha in zip(runs, hashes, strict=True):
        copy = copy_run(run, mixed / run.name)
        results = json.loads((copy / "results.json").read_text())
        results["metrics"] = {"fid": 10.0 + len(results["loss"])}
        results["evaluation"] = {} if sha is None else {"feature_network_sha256": sha}
        (copy / "results.json").write_text(json.dumps(results))
    before = {p: p.read_bytes() for p in mixed.rglob("*") if p.is_file()}
    out = tmp_path / "report"
    proc = run_cli(str(mixed), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "different feature networks" in proc.stderr and "--mixed-metrics" in proc.stderr
    for name in ("aaaaaaaaaaaa", "bbbbbbbbbbbb", "none recorded", runs[2].name, runs[3].name):
        assert name in proc.stderr
    assert not out.exists()  # refused before anything was written
    assert {p: p.read_bytes() for p in mixed.rglob("*") if p.is_file()} == before

    proc = run_cli(str(mixed), "--out", str(out), "--mixed-metrics", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (out / "report.md").is_file()
