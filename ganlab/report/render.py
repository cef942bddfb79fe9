"""Writing the report: ``report.md`` and ``report.csv`` beside the plots, with the
comparisons between groups (``significance.csv``, ``ranks.csv``; see ``sections``).

``build_report`` runs the whole chain (collect → summarize → plot → write) and says what it
wrote; ``write_report`` is the same, returning only report.md's path.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ganlab.metrics import FLOOR_KEYS
from ganlab.report.markdown import cell, md_table
from ganlab.report.plots import draw_plots
from ganlab.report.ranks import SeedRanks, rank_per_seed
from ganlab.report.runs import (
    FINAL_LOSSES,
    MISSING,
    TRAINING_METRICS,
    ReportError,
    check_feature_networks,
    check_group_by,
    collect_runs,
    metric_value,
)
from ganlab.report.sections import (
    RANKS_CSV,
    SIGNIFICANCE_CSV,
    ranks_section,
    significance_section,
    write_ranks_csv,
    write_significance_csv,
)
from ganlab.report.significance import Pair, compare_groups
from ganlab.report.summary import (
    GroupRow,
    Stat,
    better,
    direction,
    find_metrics,
    resolve_metric,
    summarize,
)
from ganlab.rundir import RESULTS_FILE


def format_stat(stat: Stat) -> str:
    """``0.878 ± 0.027``: the sd to two significant digits, the mean to the same decimals."""
    if stat.mean is None:
        return MISSING
    if stat.sd is None or not math.isfinite(stat.sd):
        return f"{stat.mean:.4g}"
    if stat.sd == 0:
        return f"{stat.mean:.4g} ± 0"
    decimals = min(6, max(0, 1 - math.floor(math.log10(stat.sd))))
    return f"{stat.mean:.{decimals}f} ± {stat.sd:.{decimals}f}"


# --- report.md ------------------------------------------------------------------------------


def _arrow(name: str) -> str:
    return "↓" if direction(name) == "min" else "↑"


def _link(target: Path, out_dir: Path, text: str) -> str:
    rel = Path(os.path.relpath(target, out_dir)).as_posix()
    # a run folder ends in "/": its name may hold dots (trainer.steps=3000), which would
    # read as a file's extension (MkDocs looks for such a file and finds none)
    slash = "/" if target.is_dir() else ""
    return f"[{cell(text)}]({quote(rel, safe='/=,+:@')}{slash})"


def _summary_table(
    rows: Sequence[GroupRow], metrics: Sequence[str], group_by: str, arrows: bool = True
) -> list[str]:
    header = [group_by, "runs", "failed", *(f"{m} {_arrow(m)}" if arrows else m for m in metrics)]
    body = []
    for row in rows:
        cells = [cell(row.group), str(len(row.runs)), str(len(row.failed))]
        for name in metrics:
            stat = row.stats[name]
            text = format_stat(stat)
            if 0 < stat.n < len(row.ok):  # some successful runs lack this metric
                text += f" (n={stat.n})"
            cells.append(text)
        body.append(cells)
    return md_table(header, body)


def _training_section(rows: Sequence[GroupRow], names: Sequence[str], group_by: str) -> list[str]:
    if not names:
        return []
    return [
        "### Training numbers and real floors",
        "",
        "The final D and G losses, each on its own loss's scale (they compare runs of one loss,"
        " never two losses: no direction is better), the speed, and the real-vs-real floors"
        " of the metrics (where measured).",
        "",
        *_summary_table(rows, names, group_by, arrows=False),
        "",
    ]


def _runs_table(rows: Sequence[GroupRow], primary: str, group_by: str, out_dir: Path) -> list[str]:
    names = list(dict.fromkeys([primary, *FINAL_LOSSES]))
    header = ["run", group_by, "status", *names]
    body = []
    for row in rows:
        for run in row.runs:
            values = [metric_value(run, n) for n in names]
            cells = [MISSING if v is None else f"{v:.4g}" for v in values]
            status = run.results.get("status") or "no results.json"
            if run.failed and status == "completed":
                status += " (failed)"  # finished, but with a NaN
            if (run.results.get("evaluation") or {}).get("metric_backbone_used"):
                status += " (G trained on the metrics network)"  # its metrics can't be trusted
            body.append([_link(run.path, out_dir, run.label), cell(row.group), status, *cells])
    return md_table(header, body)


def _plots_section(plots: dict[str, Path | None], primary: str, group_by: str) -> list[str]:
    captions = {
        "curves": "Training curves (mean over seeds, band min–max)",
        "curves_cpu": "Training curves against CPU-minutes (x = step × the group's mean"
        " `throughput.cpu_s_per_it` / 60: each group's curves.png curve, rescaled)",
        "final_box": f"Final `{primary}` per {group_by}",
        "samples": f"Samples of each {group_by}'s best run",
        "progress": f"Samples over training, each {group_by}'s best run",
    }
    lines = ["## Plots", ""]
    for key, caption in captions.items():
        png = plots.get(key)
        body = f"![{key}]({png.name})" if png else "_not drawn: no data for it in any run_"
        lines += [f"### {caption}", "", body, ""]
    return lines


def render_markdown(
    sweep_dir: Path,
    out_dir: Path,
    rows: Sequence[GroupRow],
    metrics: Sequence[str],
    primary: str,
    group_by: str,
    plots: dict[str, Path | None],
    comparisons: Sequence[str] = (),
) -> str:
    """report.md's text; ``metrics`` in table order (the primary one first); ``comparisons``:
    the lines of the sections between groups, after the summary table."""
    runs = [run for row in rows for run in row.runs]
    failed = [run for run in runs if run.failed]
    why = "" if primary != "final.loss_g" else " (no run has `metrics.fid` yet)"
    # the losses and the speed apart: a loss's value is on its own scale (wgan_gp's -8 does
    # not beat vanilla's 0.7), so it has no better direction across groups
    apart = (*TRAINING_METRICS, *FLOOR_KEYS)  # and the real floors: the same for every group
    training = [m for m in metrics if m in apart and m != primary]
    compared = [m for m in metrics if m not in training]
    lines = [
        f"# Sweep report: {sweep_dir.name}",
        "",
        f"- Sweep: `{sweep_dir.resolve()}`",
        f"- Runs: {len(runs)} ({len(runs) - len(failed)} successful, {len(failed)} failed),"
        f" {len(rows)} groups by `{group_by}`",
        f"- Primary metric: `{primary}`, {better(primary)} is better{why}",
        "",
        f"## Summary by {group_by}",
        "",
        "Mean ± sample sd (ddof=1) over each group's successful runs; a single value has no sd;"
        f" {MISSING} where no successful run has the metric. Best group first; ↓/↑: lower/higher"
        " is better.",
        "",
        *_summary_table(rows, compared, group_by),
        "",
        *_training_section(rows, training, group_by),
        *comparisons,
        f"## Best run per {group_by} (by `{primary}`)",
        "",
    ]
    for row in rows:
        if row.best is None:
            lines.append(f"- **{row.group}**: none (no successful run with `{primary}`)")
        else:
            value = metric_value(row.best, primary)
            link = _link(row.best.path, out_dir, row.best.label)
            lines.append(f"- **{row.group}**: {link}: `{primary}` = {value:.4g}")
    lines += ["", "## Failed runs", ""]
    lines += [f"- {_link(r.path, out_dir, r.label)}: {r.failure}" for r in failed] or ["None."]
    lines += ["", *_plots_section(plots, primary, group_by)]
    lines += ["## All runs", "", *_runs_table(rows, primary, group_by, out_dir), ""]
    return "\n".join(lines)


# --- report.csv -----------------------------------------------------------------------------


def write_csv(path: Path, rows: Sequence[GroupRow], metrics: Sequence[str], group_by: str) -> Path:
    """The summary table with separate numeric columns; empty cells where there is no number."""
    header = [group_by, "runs", "failed", "best_run"]
    header += [f"{m}_{s}" for m in metrics for s in ("mean", "sd")]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            cells: list[Any] = [row.group, len(row.runs), len(row.failed)]
            cells.append(row.best.label if row.best else "")
            for name in metrics:
                stat = row.stats[name]
                cells += [
                    "" if stat.mean is None else stat.mean,
                    "" if stat.sd is None else stat.sd,
                ]
            writer.writerow(cells)
    return path


# --- the whole report -----------------------------------------------------------------------


@dataclass
class Report:
    """What ``build_report`` wrote, for the caller to print or test."""

    markdown: Path
    csv: Path
    plots: dict[str, Path | None]
    rows: list[GroupRow]
    primary: str
    pairs: list[Pair] = field(default_factory=list)  # by Holm p, as in significance.csv
    ranks: list[SeedRanks] = field(default_factory=list)  # by mean rank, as in ranks.csv
    tables: dict[str, Path] = field(default_factory=dict)  # "significance", "ranks": the CSVs


def build_report(
    sweep_dir: str | Path,
    out_dir: str | Path | None = None,
    group_by: str = "loss",
    metric: str | None = None,
    mixed_metrics: bool = False,
) -> Report:
    """Collect, summarize, plot and write everything into ``out_dir`` (default: the sweep).

    Runs measured with different feature networks are refused unless ``mixed_metrics``."""
    sweep_dir = Path(sweep_dir)
    runs = collect_runs(sweep_dir)
    if not runs:
        raise ReportError(f"no runs under {sweep_dir} (no folder holds {RESULTS_FILE} or .hydra)")
    check_group_by(runs, group_by)
    check_feature_networks(runs, mixed_metrics)
    metrics = find_metrics(runs)
    primary = resolve_metric(metric, metrics)
    out = _out_dir(Path(out_dir) if out_dir is not None else sweep_dir)
    rows = summarize(runs, group_by, primary, metrics)
    pairs = compare_groups(rows, primary)
    seeds, ranked = rank_per_seed(rows, primary)
    comparisons = [
        *significance_section(rows, pairs, primary),
        *ranks_section(seeds, ranked, primary, group_by),
    ]
    try:
        plots = draw_plots(rows, primary, group_by, out)
        ordered = [primary, *(m for m in metrics if m != primary)]
        csv_path = write_csv(out / "report.csv", rows, ordered, group_by)
        tables = {
            "significance": write_significance_csv(out / SIGNIFICANCE_CSV, pairs, primary),
            "ranks": write_ranks_csv(out / RANKS_CSV, seeds, ranked, group_by),
        }
        md_path = out / "report.md"
        text = render_markdown(sweep_dir, out, rows, ordered, primary, group_by, plots, comparisons)
        md_path.write_text(text, encoding="utf-8")
    except OSError as e:  # checked above, but a disk can fill up
        raise ReportError(f"cannot write the report into {out}: {e.strerror or e}") from None
    return Report(md_path, csv_path, plots, rows, primary, pairs, ranked, tables)


def _out_dir(out: Path) -> Path:
    """``out``, created if need be; a ReportError (--out) if it is a file or not writable."""
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = f"--out {out}" if existing == out else f"--out {out}: {existing}"
        raise ReportError(f"{where} is a file, not a folder; give a folder for the report")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReportError(f"--out {out}: cannot create the folder ({e.strerror or e})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ReportError(f"--out {out}: cannot write in this folder (permission denied)")
    return out


def write_report(
    sweep_dir: str | Path,
    out_dir: str | Path | None = None,
    group_by: str = "loss",
    metric: str | None = None,
) -> Path:
    """Write report.md, report.csv and the plots into ``out_dir`` (default: the sweep dir).

    Returns the path of report.md.
    """
    return build_report(sweep_dir, out_dir, group_by, metric).markdown
