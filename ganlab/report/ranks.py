"""Each group's rank at each seed on the primary metric, and its mean rank over the seeds.

Unlike the means, ranks count failures: a group whose run failed (or is missing, or has no
value) at a seed shares the last places there. A seed is the run's ``seed`` (results.json,
else its overrides, else its .hydra config); runs without one are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ganlab.report.runs import MISSING, Run, group_of
from ganlab.report.stats import ranks
from ganlab.report.summary import GroupRow, direction, values_of

NO_RUN, FAILED, NO_VALUE = "no run", "failed", "no value"


@dataclass
class SeedRanks:
    """One group's rank per seed (1 = best); ``unranked[seed]`` says why a place is last
    without a value; ``averaged[seed]`` counts runs averaged where a seed has several."""

    group: str
    rank: dict[str, float] = field(default_factory=dict)
    unranked: dict[str, str] = field(default_factory=dict)
    averaged: dict[str, int] = field(default_factory=dict)

    @property
    def mean_rank(self) -> float:
        return sum(self.rank.values()) / len(self.rank) if self.rank else float("nan")


def seed_of(run: Run) -> str:
    return group_of(run, "seed")


def seed_key(seed: str) -> tuple[int, int, str]:
    """Sorts seeds numerically where they are numbers, the others after them by name."""
    return (0, int(seed), seed) if seed.lstrip("-").isdigit() else (1, 0, seed)


def seeds(rows: Sequence[GroupRow]) -> list[str]:
    """The seeds of the sweep's runs, numerically where they are numbers."""
    found = {seed_of(run) for row in rows for run in row.runs} - {MISSING}
    return sorted(found, key=seed_key)


def _score(row: GroupRow, seed: str, primary: str, out: SeedRanks) -> float | None:
    """The group's value at the seed (the mean where several runs share it), or None with
    the reason recorded in ``out.unranked``."""
    at_seed = [run for run in row.runs if seed_of(run) == seed]
    values = values_of([run for run in at_seed if not run.failed], primary)
    if not values:
        failed = any(run.failed for run in at_seed)
        out.unranked[seed] = FAILED if failed else NO_VALUE if at_seed else NO_RUN
        return None
    if len(values) > 1:
        out.averaged[seed] = len(values)
    mean = sum(values) / len(values)
    return mean if direction(primary) == "min" else -mean  # rank 1 = best either way


def rank_per_seed(rows: Sequence[GroupRow], primary: str) -> tuple[list[str], list[SeedRanks]]:
    """The seeds, and per group its rank at each (ties share the mean place), sorted by mean
    rank (ties in summary order)."""
    found = seeds(rows)
    table = [SeedRanks(row.group) for row in rows]
    for seed in found:
        scores = [_score(row, seed, primary, out) for row, out in zip(rows, table, strict=True)]
        for out, rank in zip(table, ranks(scores), strict=True):
            out.rank[seed] = rank
    if not found:
        return [], table
    return found, sorted(table, key=lambda out: out.mean_rank)
