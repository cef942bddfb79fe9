"""Hydra callbacks: checks before Hydra itself touches the disk, a sweep's job names, and a
sweep's summary."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ganlab.claim import holds_a_run, refusal
from ganlab.config import validate
from ganlab.console import Job, job_of, labels, sweep_summary
from ganlab.errors import GanlabError
from ganlab.hparams import run_columns, sweep_columns
from ganlab.rundir import (
    REFUSALS_FILE,
    RESULTS_FILE,
    TB_DIR,
    check_writable,
    read_refusals,
    read_results,
)
from ganlab.runtime import resolve_device
from ganlab.tracking import (
    Column,
    MetricColumn,
    experiment_summary,
    read_experiment,
    session_summaries,
    write_hparams,
)


def _make_writable_dir(path: str, key: str) -> None:
    """The folder, made and written to (a full disk is found here, before Hydra or the run
    write anything there); else one line and exit 2."""
    if not str(path).strip():
        # Path("") is the working directory: the run's files would be strewn there
        print(
            f"error: {key} is empty: the run's files would go into the working directory; "
            f"give a folder ({key}=outputs/my_run)",
            file=sys.stderr,
        )
        raise SystemExit(2)
    try:
        check_writable(path, f"the output folder {key}={path}")
    except GanlabError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def _validate(config: DictConfig) -> None:
    """The config's range checks (``ganlab.config.validate``), before Hydra makes the run
    folder: a run with an invalid value leaves no folder behind. train() checks again (and
    says its INFO notes then, once)."""
    quiet = logging.getLogger("ganlab.config")
    disabled, quiet.disabled = quiet.disabled, True
    try:
        validate(config)
    except GanlabError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        quiet.disabled = disabled


def _check_device(name: str) -> None:
    """A device this machine lacks (``device=mps``, ``cuda:7``), before the run folder is made
    (validate accepts any device name: a config may be composed on another machine)."""
    try:
        resolve_device(name)
    except GanlabError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        raise SystemExit(2) from None


class CheckOutputDir(Callback):
    """Fail with one line when the config is invalid (no folder is made then), or when the
    run or sweep folder cannot be created or written."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _validate(config)
        _check_device(config.device)
        _make_writable_dir(config.hydra.run.dir, "hydra.run.dir")
        # Refuse a folder holding another run before Hydra opens its train.log (train()
        # checks again, under a lock, for sweeps and the Python API).
        t = config.trainer
        if holds_a_run(Path(config.hydra.run.dir)) and t.resume != "auto" and not t.overwrite:
            print(f"error: {refusal(Path(config.hydra.run.dir))}", file=sys.stderr)
            raise SystemExit(2)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _make_writable_dir(config.hydra.sweep.dir, "hydra.sweep.dir")


def shared_keys(task: list[str], params: list[str]) -> list[str]:
    """The command line's keys that every job of a sweep shares (one value, not a sweep), when
    the jobs differ in others: ``+preset=fast loss=vanilla,hinge seed=0,1`` → ``["preset"]``.
    ``params`` are the sweeper's own (``hydra.sweeper.params``: each a sweep). None when
    nothing is swept: a one-job sweep keeps its whole name."""
    overrides = OverridesParser.create().parse_overrides(task)
    given = {o.key_or_group for o in overrides}
    swept = {o.key_or_group for o in overrides if o.is_sweep_override()} | (set(params) - given)
    # a key given once and swept later on the same line (model.z_dim=8 ... model.z_dim=0,16)
    # is swept: Hydra's last value wins
    return sorted(given - swept) if swept else []


class NameJobsByWhatDiffers(Callback):
    """A sweep's job folders (and so its TensorBoard runs) named by the swept keys alone:
    ``loss=hinge,seed=1``, not ``+preset=fast,loss=hinge,seed=1,trainer.steps=1500``. The
    shared keys join ``hydra.job.config.override_dirname.exclude_keys`` through the sweep's
    hydra overrides, which Hydra composes every job from (``load_sweep_config``), whatever the
    launcher. So a sweep run again with another shared value (``trainer.steps=4000
    trainer.resume=auto``) continues in the same folders."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        params = config.hydra.sweeper.get("params") or {}
        shared = shared_keys(list(config.hydra.overrides.task), list(params))
        if not shared:
            return
        excluded = list(config.hydra.job.config.override_dirname.exclude_keys)
        keys = ",".join(f"'{key}'" for key in dict.fromkeys([*excluded, *shared]))
        config.hydra.overrides.hydra.append(
            f"hydra.job.config.override_dirname.exclude_keys=[{keys}]"
        )


def _jobs(root: Path) -> list[tuple[Job, list[str]]]:
    """The sweep's job folders (a results.json or Hydra's .hydra/), with their overrides."""
    jobs = []
    for dirpath, dirnames, _ in os.walk(root):
        path = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if path == root or not ((path / RESULTS_FILE).is_file() or (path / ".hydra").is_dir()):
            continue
        dirnames.clear()  # a job's own folders (tb/, samples/) hold no jobs
        try:
            results = read_results(path) or {"status": None}
        except GanlabError as e:
            results = {"status": "failed", "reason": str(e)}
        overrides = _read_list(path / ".hydra" / "overrides.yaml")
        jobs.append((job_of(path, overrides, results), overrides))
    return jobs


def _read_list(path: Path) -> list[str]:
    try:
        listed = yaml.safe_load(path.read_text()) if path.is_file() else []
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    return [str(item) for item in listed] if isinstance(listed, list) else []


def _record_hparams(root: Path, jobs: list[tuple[Job, list[str]]]) -> None:
    """Every job's HParams session again, now with a short Trial ID (the overrides that
    differ between the jobs, then the sweep's folder) and the status a failed job never
    wrote; the first job's file also holds the experiment of the whole sweep: every column,
    ticked where the jobs differ, and every metric a job declared. (Each job wrote its own
    experiment; TensorBoard would take any one of them.)"""
    sessions: list[tuple[Path, list[Column], str, str, tuple[float, float]]] = []
    metrics: dict[str, MetricColumn] = {}
    for (job, overrides), label in zip(jobs, labels([job for job, _ in jobs]), strict=True):
        config = job.path / ".hydra" / "config.yaml"
        if not config.is_file():
            continue
        cfg = OmegaConf.load(config)
        status = job.results.get("status") or "failed"
        source = job.results.get("data", {}).get("source") or str(cfg.data.name)
        columns = run_columns(cfg, overrides, source, status)
        started = config.stat().st_mtime
        sessions.append((job.path, columns, status, label, (started, started + (job.seconds or 0))))
        declared = read_experiment(job.path / TB_DIR)
        for info in declared.metric_infos if declared is not None else []:
            metrics.setdefault(info.name.tag, MetricColumn(info.name.tag, info.description))
    if not sessions:
        return
    every = [columns for _, columns, _, _, _ in sessions]
    experiment = experiment_summary(sweep_columns(every), list(metrics.values()))
    for i, (path, columns, status, label, times) in enumerate(sessions):
        session = session_summaries(columns, status, f"{label} ({root.name})", times)
        write_hparams(path / TB_DIR, [experiment, *session] if i == 0 else session)


class SweepSummary(Callback):
    """At a sweep's end: the HParams experiment of all its jobs, one screen of summary (per
    job its status, FID, time; then the report command), and exit 1 if any job failed."""

    def __init__(self) -> None:
        self.started: float | None = None  # perf_counter at the sweep's start

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.perf_counter()
        # refusals are this invocation's: an earlier one's are answered or repeated by now
        (Path(config.hydra.sweep.dir) / REFUSALS_FILE).unlink(missing_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        root = Path(config.hydra.sweep.dir)
        jobs = _jobs(root)
        try:
            _record_hparams(root, jobs)
        except Exception as e:  # the dashboards' table; the summary and exit status matter more
            print(f"warning: the sweep's HParams were not written ({e})", file=sys.stderr)
        started = self.started
        seconds = None if started is None else time.perf_counter() - started
        for line in sweep_summary(root, [job for job, _ in jobs], seconds):
            print(line, file=sys.stderr)
        refused = read_refusals(root)
        for job, reason in refused.items():
            print(f"  refused {Path(job).name}: {reason}", file=sys.stderr)
        failed = [job for job, _ in jobs if job.results.get("status") in ("failed", None)]
        refused_paths = {Path(job).resolve() for job in refused}
        failed = [job for job in failed if job.path.resolve() not in refused_paths]
        if refused:
            print(
                f"error: {len(refused)} job(s) of the sweep were refused their folders (left "
                "as they were); with trainer.resume=auto a sweep skips its finished jobs and "
                "continues the others",
                file=sys.stderr,
            )
        if failed:
            print(f"error: {len(failed)} job(s) of the sweep failed", file=sys.stderr)
        if refused or failed:
            raise SystemExit(1)
