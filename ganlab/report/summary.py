"""Statistics over a sweep's runs: which metrics there are, which way is better, the ranking.

``summarize`` groups the runs (by default per loss) and gives each group the mean ± sample sd
of every metric over its successful runs, its best run, and its place (best group first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ganlab.metrics import DIRECTIONS as METRIC_DIRECTIONS
from ganlab.metrics import FLOOR_KEYS
from ganlab.report.runs import (
    TRAINING_METRICS,
    ReportError,
    Run,
    failure_reason,
    group_of,
    metric_names,
    metric_value,
)

# Which way is better: the metrics' own registry, the real-vs-real floors written beside
# them (informative, never a target), and the training numbers every run has (the final G
# loss is train()'s objective when metrics are off). Unlisted names count as higher-is-better.
DIRECTIONS: dict[str, str] = {
    **METRIC_DIRECTIONS,
    **{floor: METRIC_DIRECTIONS[floor.removesuffix("_floor")] for floor in FLOOR_KEYS},
    "final.loss_d": "min",
    "final.loss_g": "min",
    "throughput.it_per_s": "max",
}
# Table order: sample-quality metrics first (in this order, unknown ones after), then the
# training ones.
METRIC_ORDER = (*METRIC_DIRECTIONS, *FLOOR_KEYS)
DEFAULT_PRIMARY = ("fid", "final.loss_g")  # the first one present in any results.json


def direction(name: str) -> str:
    """``"min"`` or ``"max"``; nested metrics (``kid.mean``) follow their top name."""
    # the metrics' registry is read live: a plugin metric registers its direction there
    table = {**METRIC_DIRECTIONS, **DIRECTIONS}
    return table.get(name, table.get(name.split(".")[0], "max"))


def better(name: str) -> str:
    """``"lower"`` or ``"higher"``: which values of the metric are better, in words."""
    return "lower" if direction(name) == "min" else "higher"


def _metric_sort_key(name: str) -> tuple[int, int, str]:
    if name in TRAINING_METRICS:
        return (2, TRAINING_METRICS.index(name), name)
    top = name.split(".")[0]
    return (0, METRIC_ORDER.index(top), name) if top in METRIC_ORDER else (1, 0, name)


def find_metrics(runs: Sequence[Run]) -> list[str]:
    """Metric names present in any run: the leaves under ``metrics.`` plus the training ones."""
    names = {name for run in runs for name in metric_names(run)}
    return sorted(names, key=_metric_sort_key) + list(TRAINING_METRICS)


def resolve_metric(requested: str | None, metrics: Sequence[str]) -> str:
    """The primary metric's name: ``requested`` (``fid`` or ``metrics.fid``) or the default."""
    if requested is None:
        return next((m for m in DEFAULT_PRIMARY if m in metrics), TRAINING_METRICS[1])
    name = requested.removeprefix("metrics.")
    if name not in metrics:
        raise ReportError(f"--metric {requested!r} is in no results.json; choose from {metrics}")
    return name


@dataclass
class Stat:
    """Mean and sample sd (ddof=1; None for fewer than two values) over ``n`` values."""

    n: int
    mean: float | None
    sd: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        arr = np.asarray(values, dtype=np.float64)
        mean = float(arr.mean()) if arr.size else None
        sd = float(arr.std(ddof=1)) if arr.size > 1 else None
        return cls(int(arr.size), mean, sd)


@dataclass
class GroupRow:
    """One row of the report table."""

    group: str
    runs: list[Run]
    stats: dict[str, Stat] = field(default_factory=dict)
    best: Run | None = None

    @property
    def failed(self) -> list[Run]:
        return [run for run in self.runs if run.failed]

    @property
    def ok(self) -> list[Run]:
        return [run for run in self.runs if not run.failed]


def values_of(runs: Sequence[Run], name: str) -> list[float]:
    """The metric's finite values over ``runs`` (those without one left out)."""
    return [v for run in runs if (v := metric_value(run, name)) is not None]


def _best_run(runs: Sequence[Run], primary: str) -> Run | None:
    scored = [(v, run) for run in runs if (v := metric_value(run, primary)) is not None]
    if not scored:
        return None
    pick = min if direction(primary) == "min" else max
    return pick(scored, key=lambda pair: pair[0])[1]


def _rank_key(row: GroupRow, primary: str) -> tuple[int, float, str]:
    # Best group first; groups without a value for the primary metric last, by name.
    mean = row.stats[primary].mean
    if mean is None:
        return (1, 0.0, row.group)
    return (0, mean if direction(primary) == "min" else -mean, row.group)


def summarize(
    runs: Sequence[Run],
    group_by: str = "loss",
    primary: str | None = None,
    metrics: Sequence[str] | None = None,
) -> list[GroupRow]:
    """One row per group, best group first by the primary metric.

    Failed runs are counted, never averaged: each statistic is over the group's successful
    runs that have that metric. Marks each run's ``failure`` as a side effect.
    """
    metrics = list(metrics) if metrics is not None else find_metrics(runs)
    primary = resolve_metric(primary, metrics)
    groups: dict[str, list[Run]] = {}
    for run in runs:
        run.failure = failure_reason(run, primary)
        groups.setdefault(group_of(run, group_by), []).append(run)
    rows = []
    for group, members in groups.items():
        row = GroupRow(group, members)
        for name in metrics:
            row.stats[name] = Stat.of(values_of(row.ok, name))
        row.best = _best_run(row.ok, primary)
        rows.append(row)
    return sorted(rows, key=lambda row: _rank_key(row, primary))
