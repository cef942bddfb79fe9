"""``python -m ganlab.report <sweep dir>`` (the ``ganlab-report`` console script)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ganlab.cli import entry_point
from ganlab.plugins import load_plugins
from ganlab.report.render import Report, build_report, format_stat
from ganlab.report.sections import ALPHA
from ganlab.report.significance import PAIRED
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
    parser.add_argument(
        "--mixed-metrics",
        action="store_true",
        help="rank runs measured with different feature networks together (their FID, KID and "
        "PRDC do not compare; refused without it)",
    )
    return parser


@entry_point
def main(argv: Sequence[str] | None = None) -> int:
    """Write the report and print where, with each group's primary metric; exit 2 on a bad sweep."""
    args = _parser().parse_args(argv)
    load_plugins()  # a plugin metric's direction (better="min") ranks its column
    report = build_report(args.sweep_dir, args.out, args.group_by, args.metric, args.mixed_metrics)
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


def _count(below: int, of: int) -> str:
    return f"{below} of {of} pair{'s' if of != 1 else ''}"


def _significance_line(report: Report) -> str:
    welch = [pair.holm_p for pair in report.pairs if pair.holm_p is not None]
    used = [pair.used_holm_p for pair in report.pairs if pair.used_holm_p is not None]
    if not used:
        return f"significance: no pair of groups has a test (see {report.markdown.name})"
    below_welch = _count(sum(p < ALPHA for p in welch), len(welch))
    paired = sum(pair.test == PAIRED for pair in report.pairs)
    if not paired:
        return (
            f"significance: {below_welch} with Holm-adjusted Welch p < {ALPHA}"
            f" (see {report.markdown.name})"
        )
    # Pairs that share seeds are read by the paired t: lead with it, Welch's count beside it.
    ranked = [p for pair in report.pairs if (p := pair.by_seed.wilcoxon_holm_p) is not None]
    return (
        f"significance: {_count(sum(p < ALPHA for p in used), len(used))} with Holm-adjusted"
        f" p < {ALPHA} by the test used (paired t on shared seeds for {paired}, Welch for"
        f" {len(used) - paired}); Welch alone: {below_welch}, Wilcoxon:"
        f" {_count(sum(p < ALPHA for p in ranked), len(ranked))} (see {report.markdown.name})"
    )


if __name__ == "__main__":
    sys.exit(main())
