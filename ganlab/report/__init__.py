"""Compare the runs of a Hydra sweep: ``python -m ganlab.report <sweep dir>``.

Reads every run's ``results.json`` and TensorBoard scalars and writes, next to the runs:

- ``report.md``: one row per group (by default per loss) with mean ± sd of each metric over
  the group's successful seeds, the best run, the failed runs and why, the plots;
- ``report.csv``: the same table, one numeric column per statistic (``fid_mean``, ``fid_sd``);
- ``curves.png``, ``final_box.png``, ``samples.png``, ``progress.png``: the metric (and the
  losses) against the step with a band over seeds (dots where a curve has few points), the
  final primary metric per group, the best run's last samples, and its samples over training.

``collect_runs`` (runs) → ``summarize`` (summary) → ``write_report`` (render, with plots) are
importable; ``main`` (``__main__``) is the console script.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ganlab.report.render import Report, build_report, format_stat, write_report
from ganlab.report.runs import ReportError, Run, collect_runs
from ganlab.report.summary import GroupRow, Stat, summarize

if TYPE_CHECKING:
    from ganlab.report.__main__ import main

__all__ = [
    "GroupRow",
    "Report",
    "ReportError",
    "Run",
    "Stat",
    "build_report",
    "collect_runs",
    "format_stat",
    "main",
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
