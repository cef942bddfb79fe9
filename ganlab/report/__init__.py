"""Compare the runs of a Hydra sweep: ``python -m ganlab.report <sweep dir>``.

Reads every run's ``results.json`` and TensorBoard scalars and writes, next to the runs:

- ``report.md``: one row per group (by default per loss) with mean ± sd of each metric over
  the group's successful seeds, the best run, the failed runs and why, the plots;
- ``report.csv``: the same table, one numeric column per statistic (``fid_mean``, ``fid_sd``);
- ``significance.csv``: every pair of groups on the primary metric, Welch's t-test with
  Holm-adjusted p and a bootstrap CI of the difference of means, and, on the seeds both
  groups completed, the paired t-test and Wilcoxon's signed-rank test (each Holm-adjusted)
  with the test each pair is read by (report.md lists the pairs that matter);
- ``ranks.csv``: each group's rank at each seed (failures last) and its mean rank;
- ``curves.png``, ``curves_cpu.png``, ``final_box.png``, ``samples.png``, ``progress.png``:
  the metric (and the losses) against the step with a band over seeds (dots where a curve has
  few points), the same against CPU-minutes, the final primary metric per group, the best
  run's last samples, and its samples over training.

``collect_runs`` (runs) → ``summarize`` (summary) → ``compare_groups`` (significance, with
``stats``) and ``rank_per_seed`` (ranks) → ``write_report`` (render, with plots and sections)
are importable; ``main`` (``__main__``) is the console script.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ganlab.report.ranks import SeedRanks, rank_per_seed
from ganlab.report.render import Report, build_report, format_stat, write_report
from ganlab.report.runs import ReportError, Run, collect_runs
from ganlab.report.significance import Pair, compare_groups
from ganlab.report.summary import GroupRow, Stat, summarize

if TYPE_CHECKING:
    from ganlab.report.__main__ import main

__all__ = [
    "GroupRow",
    "Pair",
    "Report",
    "ReportError",
    "Run",
    "SeedRanks",
    "Stat",
    "build_report",
    "collect_runs",
    "compare_groups",
    "format_stat",
    "main",
    "rank_per_seed",
    "summarize",
    "write_report",
]


def __getattr__(name: str) -> Any:
    # main is imported on first use: importing __main__ here would make `python -m
    # ganlab.report` find it already loaded, and runpy warns about that on stderr.
    if name == "main":
        from ganlab.report.__main__ import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
