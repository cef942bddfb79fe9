"""What ganlab says at the end: a run's results table, the command that continues an
interrupted run in place, and a sweep's one-screen summary.

Plain functions from numbers to text; the run (``ganlab.run``) and the sweep's end
(``ganlab.callbacks``) print them.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from ganlab.metrics import DIRECTIONS
from ganlab.rundir import parse_overrides

TRAIN_COMMAND = "python -m ganlab.train"
MISSING = "–"
_SHELL_SAFE = re.compile(r"[\w@%+=:,./-]+")


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING if value is None else str(value)
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return f"{int(value):,}" if abs(value) >= 1e4 else str(int(value))
    return f"{value:.4g}"


def _align(rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    """Columns padded to their widths: the first ``left`` flush left, the others right."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def results_table(metrics: Mapping[str, float], evaluation: Mapping[str, Any] | None) -> str:
    """``metric  value  floor  better`` for each metric of a run's final evaluation, under one
    line saying what the numbers compare (``10,000 samples vs mnist/test, classifier ...``)."""
    rows = [("metric", "value", "real floor", "better")]
    for key in DIRECTIONS:
        if key in metrics:
            floor = metrics.get(f"{key}_floor")
            better = "lower" if DIRECTIONS[key] == "min" else "higher"
            shown = "" if floor is None else _number(floor)
            rows.append((key, _number(metrics[key]), shown, better))
    head = "results"
    if evaluation:
        head += (
            f" ({evaluation.get('n_samples', 0):,} samples vs {evaluation.get('reference')}; "
            f"label reader {str(evaluation.get('classifier_sha256', ''))[:12]}, "
            f"features {str(evaluation.get('feature_network_sha256', 'none'))[:12]})"
        )
    return "\n".join([f"{head}:", *("  " + line for line in _align(rows, left=1))])


# --- the command that continues a run -------------------------------------------------------


def _hydra_value(key: str, value: str) -> str:
    """``key=value`` as Hydra's override parser reads it back to ``value``: quoted if need be
    (a sweep job's folder holds ``=`` and ``,``, which would make it a sweep)."""
    parser = OverridesParser.create()
    for quoted in (value, f"'{value}'", f'"{value}"'):
        try:
            override = parser.parse_override(f"{key}={quoted}")
        except HydraException:
            continue
        if not override.is_sweep_override() and override.value() == value:
            return f"{key}={quoted}"
    return f"{key}={value}"


def _shell(arg: str) -> str:
    if _SHELL_SAFE.fullmatch(arg):
        return arg
    if not any(c in arg for c in '"$`\\!'):
        return f'"{arg}"'
    return shlex.quote(arg)


def continue_command(overrides: Sequence[str], run_dir: Path) -> str:
    """The command that continues the run in its own folder: its command line (less an
    ``overwrite``, which would clear it), then ``trainer.resume=auto hydra.run.dir=<run dir>``."""
    replaced = ("trainer.resume", "trainer.overwrite", "hydra.run.dir")
    kept = [o for o in overrides if o.partition("=")[0].lstrip("+~") not in replaced]
    args = [*kept, "trainer.resume=auto", _hydra_value("hydra.run.dir", str(run_dir))]
    return " ".join([TRAIN_COMMAND, *map(_shell, args)])


# --- a sweep's summary ----------------------------------------------------------------------


@dataclass
class Job:
    """One job of a sweep, as its folder says: overrides, results.json, seconds it took."""

    path: Path
    overrides: dict[str, str]
    results: dict[str, Any]
    seconds: float | None


def labels(jobs: Sequence[Job]) -> list[str]:
    """Each job by the overrides that differ between the jobs (``loss=hinge,seed=1``)."""
    keys = list(dict.fromkeys(k for job in jobs for k in job.overrides))
    varying = [k for k in keys if len({job.overrides.get(k) for job in jobs}) > 1]
    labels = [",".join(f"{k}={j.overrides[k]}" for k in varying if k in j.overrides) for j in jobs]
    return [label or job.path.name for label, job in zip(labels, jobs, strict=True)]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return MISSING
    if seconds < 100:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 6000 else f"{seconds / 3600:.1f} h"


def sweep_summary(root: Path, jobs: Sequence[Job], seconds: float | None) -> list[str]:
    """One screen: a line per job (status, the primary metric, time, why it failed), the
    counts, and what to do next."""
    statuses = [job.results.get("status") or "no results.json" for job in jobs]
    counts = {s: statuses.count(s) for s in dict.fromkeys(statuses)}
    fid = any("fid" in job.results.get("metrics", {}) for job in jobs)
    metric, header = ("metrics", "fid") if fid else ("final", "loss_g")
    rows = [("job", "status", header, "time")]
    reasons = []
    for label, job, status in zip(labels(jobs), jobs, statuses, strict=True):
        value = job.results.get(metric, {}).get(header)
        rows.append((label, status, _number(value), _duration(job.seconds)))
        if job.results.get("reason"):
            reasons.append(f"    {label}: {' '.join(str(job.results['reason']).split())}")
    total = f" in {_duration(seconds)}" if seconds is not None else ""
    counted = ", ".join(f"{n} {s}" for s, n in counts.items())
    lines = [f"sweep {root}: {len(jobs)} job(s){total}: {counted}"]
    lines += ["  " + line for line in _align(rows, left=2)]
    lines += (["  failed because:", *reasons] if reasons else []) + [
        f"  compare them: python -m ganlab.report {_shell(str(root))}  (report.md, plots)",
        f"  dashboards:   tensorboard --logdir {_shell(str(root))}",
    ]
    return lines


def job_of(path: Path, overrides: Sequence[str], results: dict[str, Any]) -> Job:
    """A sweep job from its folder: the seconds from Hydra's start of the job (its
    ``.hydra/config.yaml``) to the last write of its results.json."""
    started, ended = path / ".hydra" / "config.yaml", path / "results.json"
    seconds = None
    if started.is_file() and ended.is_file():
        seconds = max(0.0, ended.stat().st_mtime - started.stat().st_mtime)
    return Job(path, parse_overrides(overrides), results, seconds)


__all__ = ["Job", "continue_command", "job_of", "labels", "results_table", "sweep_summary"]
