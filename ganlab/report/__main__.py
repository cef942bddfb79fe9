"""``python -m ganlab.report <sweep dir>`` (the ``ganlab-report`` console script)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ganlab.cli import entry_point
from ganlab.report.render import Report, build_report, format_stat
from ganlab.report.sections import ALPHA
from ganlab.report.summary import better


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ganlab-report",
        description="Summarize a ganlab sweep: report.md, report.csv and PNG plots.",
    )
    parser.add_argument("sweep_dir", type=Path, help="the Hydra sweep dir (hydra.sweep.dir)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: sweep dir)")
    parser.add_argument(
        "--group-by",
        default="loss",
        help="results/override key(s) to group by: loss (default), loss,seed",
    )
    parser.add_argument(
        "--metric",
        default=None,
        help="primary metric for ranking, e.g. fid or final.loss_g"
        " (default: fid when present, else final.loss_g)",
    )
    return parser


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    """Write the report and print where, with each group's primary metric; exit 2 on a bad sweep."""
    args = _parser().parse_args(argv)
    report = build_report(args.sweep_dir, args.out, args.group_by, args.metric)
    out = report.markdown.parent
    drawn = [p.name for p in report.plots.values() if p is not None]
    tables = [p.name for p in report.tables.values()]
    print(f"wrote {report.markdown}")
    print(f"  also in {out}: {', '.join([report.csv.name, *tables, *drawn])}")
    print(f"  primary metric {report.primary} ({better(report.primary)} is better):")
    for row in report.rows:
        best = f", best {row.best.label}" if row.best else ""
        stat = format_stat(row.stats[report.primary])
        print(f"  {row.group}: {stat} over {len(row.ok)} of {len(row.runs)} runs{best}")
    print(f"  {_significance_line(report)}")
    return 0


def _significance_line(report: Report) -> str:
    tested = [pair for pair in report.pairs if pair.holm_p is not None]
    if not tested:
        return f"significance: no pair of groups has a test (see {report.markdown.name})"
    below = sum(pair.holm_p < ALPHA for pair in tested)
    return (
        f"significance: {below} of {len(tested)} pair{'s' if len(tested) != 1 else ''}"
        f" with Holm-adjusted Welch p < {ALPHA}"
        f" (see {report.markdown.name})"
    )


if __name__ == "__main__":
    sys.exit(main())
