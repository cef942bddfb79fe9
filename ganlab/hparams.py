"""What runs are compared by in TensorBoard's HParams dashboard: the columns of a run (what
identifies it first), their domains, and the metric columns (the primary metric first).

``run_columns`` is the one list: each run writes it as its experiment and its session; a
sweep's end (``ganlab.callbacks``) rebuilds it for every job from the job's ``.hydra/`` and
``results.json`` and writes one experiment for the whole sweep, ticking the columns whose
values differ between the jobs.

TensorBoard itself lists the columns marked as differing first, each part sorted by name, and
ticks the first five: the declared order is what this module controls, the marks are what
decides what a user sees without clicking.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from ganlab.data import SOURCES as DATA_SOURCES
from ganlab.losses import LOSSES
from ganlab.metrics import DIRECTIONS, FLOOR_KEYS
from ganlab.models import MODELS
from ganlab.models.layers import CONDITIONINGS
from ganlab.optimizers import OPTIMIZERS
from ganlab.penalties import PENALTIES
from ganlab.rundir import TB_DIR
from ganlab.tracking import (
    STATUSES,
    Column,
    Counts,
    MetricColumn,
    experiment_summary,
    hp,
    session_summaries,
    write_hparams,
)

# What identifies a run, in this order: the first columns, and those ticked in a run's own
# experiment (a sweep ticks the columns that differ between its jobs, then these). status is
# among them so that a failed or diverged run shows without a click; n_critic follows the loss.
IDENTITY = ("loss", "model", "seed", "status", "lr")
SHOWN = 5  # columns TensorBoard ticks by default
_MAX = sys.float_info.max  # an interval open to the right: (0, ∞)

# Command-line keys that name no run (as hydra.job.config.override_dirname's exclude_keys),
# and those that are a column under a shorter name.
_NOT_COLUMNS = ("data.root", "trainer.progress", "trainer.resume", "trainer.overwrite")
_ALIASES = {
    "optimizer.lr": "lr",
    "trainer.n_critic": "n_critic",
    "trainer.batch_size": "batch_size",
    "trainer.ema": "ema",
}
# The quality metrics, the primary one (the sweep objective) first; TensorBoard shows five.
_FIRST_METRICS = ("fid", "mnist_score", "classes_covered", "precision", "recall")
_LOSS_TAGS = {"loss/G": "G's full objective", "loss/D": "D's full objective"}
_METRIC_PREFIXES = ("metrics_final/", "metrics/")  # the final evaluation's, the curve's


def _count(name: str, value: Any, description: str) -> Column:
    """A column of whole numbers (a seed, a count), written as their digits: TensorBoard's
    HParams table prints every number to five significant digits (seed 0 as "0.0000"), text
    as it is. Its domain is the values seen (``observed``; a sweep's: every job's, in
    numeric order)."""
    return Column(name, str(int(value)), None, description)


def _base_columns(cfg: DictConfig, data_source: str, status: str) -> list[Column]:
    t, opt, penalty = cfg.trainer, cfg.optimizer, cfg.penalty
    columns = [
        Column("loss", cfg.loss.name, hp.Discrete(sorted(LOSSES)), "loss="),
        Column("model", cfg.model.name, hp.Discrete(sorted(MODELS)), "model="),
        _count("seed", cfg.seed, "seed="),
        Column("status", status, hp.Discrete(list(STATUSES)), "how the run ended"),
        Column("lr", float(opt.lr), hp.RealInterval(0.0, _MAX), "optimizer.lr (both networks)"),
        _count("n_critic", t.n_critic, "D updates per G update"),
        _count("batch_size", t.batch_size, "trainer.batch_size"),
        Column("penalty", penalty.name, hp.Discrete(sorted(PENALTIES)), "penalty= on D"),
        Column("ema", float(t.ema), hp.RealInterval(0.0, 1.0), "EMA decay of G (0: off)"),
        Column(
            "data",
            data_source,
            hp.Discrete(list(DATA_SOURCES)),
            "the images trained on (results.json data.source; mnist_sample when MNIST was "
            "not found; stacked_ for Stacked MNIST)",
        ),
        *(  # class conditioning (configs of older runs have none)
            [Column("cond", cfg.cond.name, hp.Discrete(list(CONDITIONINGS)), "cond=")]
            if cfg.get("cond") is not None
            else []
        ),
        Column("penalty.weight", float(penalty.weight), hp.RealInterval(0.0, _MAX), "λ or γ"),
        Column("optimizer", opt.name, hp.Discrete(sorted(OPTIMIZERS)), "optimizer="),
    ]
    if opt.betas is not None:
        columns += [
            Column(f"beta{i + 1}", float(opt.betas[i]), hp.RealInterval(0.0, 1.0), "Adam")
            for i in range(2)
        ]
    return columns + [
        _count("trainer.steps", t.steps, "G updates"),
        _count("model.z_dim", cfg.model.z_dim, "noise size"),
    ]


def _plain(value: Any) -> str | float | bool:
    """A config value as an HParams value: numbers, booleans and strings; lists as text."""
    if isinstance(value, DictConfig):
        return str(value.get("name", OmegaConf.to_container(value)))
    if isinstance(value, ListConfig):
        return str(OmegaConf.to_container(value))
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):  # as _count's: its digits
        return str(value)
    if isinstance(value, float):
        return value
    return str(value)


def run_columns(
    cfg: DictConfig, overrides: Sequence[str], data_source: str, status: str
) -> list[Column]:
    """A run's columns: what identifies it, the data it trained on, its status, the other
    main settings, then every other key of its command line (the keys a sweep varies)."""
    columns = _base_columns(cfg, data_source, status)
    names = {c.name for c in columns}
    for override in overrides:
        key, sep, text = override.lstrip("+~").partition("=")
        key = _ALIASES.get(key, key)
        if not sep or key in names or key in _NOT_COLUMNS or key.startswith("hydra"):
            continue
        value = OmegaConf.select(cfg, key, default=text, throw_on_missing=False)
        columns.append(Column(key, _plain(value), None, f"{key}= on the command line"))
        names.add(key)
    return [Column(c.name, c.value, c.domain, c.description, c.name in IDENTITY) for c in columns]


def metric_columns(tags: Collection[str]) -> list[MetricColumn]:
    """The metric columns among the scalar tags a run wrote (TensorBoard shows the last value
    of each): the quality metrics, the primary one (FID, the sweep objective) first, each from
    the final evaluation (``metrics_final/``) where there is one, else its curve
    (``metrics/``); then the losses and the throughput."""
    order = [*_FIRST_METRICS, *(m for m in DIRECTIONS if m not in _FIRST_METRICS)]
    others = sorted({t.partition("/")[2] for t in tags if t.startswith(_METRIC_PREFIXES)})
    columns = []
    for name in dict.fromkeys([*order, *FLOOR_KEYS, *others]):
        found = [f"{p}{name}" for p in _METRIC_PREFIXES if f"{p}{name}" in tags]
        if found:
            columns.append(MetricColumn(found[0], f"{name} at the end of the run"))
    columns += [MetricColumn(tag, f"last logged {text}") for tag, text in _LOSS_TAGS.items()]
    return columns + [MetricColumn("perf/it_per_s", "G updates per second, last interval")]


def trial_id(run_dir: Path) -> str:
    """A run's Trial ID: its folder, then the folder above (unique, and readable cut short):
    ``09-05-38_vanilla_dcgan (2026-11-24)``."""
    return f"{run_dir.name} ({run_dir.parent.name})"


def record_run(
    run_dir: Path,
    cfg: DictConfig,
    overrides: Sequence[str],
    results: Mapping[str, Any],
    step: int,
    tags: Collection[str],
) -> None:
    """Write the run's experiment and session into ``<run_dir>/tb`` (a sweep's end rewrites
    them, with one experiment for all its jobs). ``tags``: the scalar tags it wrote."""
    source = results.get("data", {}).get("source") or str(cfg.data.name)
    status = results.get("status", "failed")
    columns = [  # a column of no fixed domain: the one value this run has
        c if c.domain is not None else replace(c, domain=_observed_domain([c.value]))
        for c in run_columns(cfg, overrides, source, status)
    ]
    summaries = [
        experiment_summary(columns, metric_columns(tags)),
        *session_summaries(columns, status, trial_id(run_dir)),
    ]
    write_hparams(run_dir / TB_DIR, summaries, step)


def _observed_domain(values: Iterable[Any]) -> hp.Discrete | None:
    distinct = set(values)
    kinds = {type(v) for v in distinct}
    if len(kinds) != 1 or len(distinct) > 50:
        return None
    if all(isinstance(v, str) and v.lstrip("-").isdigit() for v in distinct):
        return Counts(distinct)  # _count's columns: 2 before 10
    return hp.Discrete(distinct)


def sweep_columns(jobs: Sequence[Sequence[Column]]) -> list[Column]:
    """One experiment's columns for a sweep's jobs: every column of any job in the order
    first seen; ticked where the values differ between jobs, then by ``IDENTITY`` up to
    ``SHOWN``; a column without a domain gets the values seen."""
    first: dict[str, Column] = {}
    values: dict[str, list[Any]] = {}
    for columns in jobs:
        for column in columns:
            first.setdefault(column.name, column)
            values.setdefault(column.name, []).append(column.value)
    shown = [name for name in first if len(set(values[name])) > 1]
    shown += [n for n in IDENTITY if n in first and n not in shown][: max(0, SHOWN - len(shown))]
    return [
        Column(
            c.name,
            c.value,
            c.domain if c.domain is not None else _observed_domain(values[c.name]),
            c.description,
            c.name in shown,
        )
        for c in first.values()
    ]


__all__ = ["IDENTITY", "metric_columns", "record_run", "run_columns", "sweep_columns", "trial_id"]
