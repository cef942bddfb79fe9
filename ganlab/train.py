"""``python -m ganlab.train [overrides]``: train one GAN (or a sweep, with ``-m``).

``train(cfg, out_dir)`` is the importable function and the loop, one short commented section
per concern (each section's work is a method of ``ganlab.run.TrainingRun``); ``main`` is the
thin Hydra entry point.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ganlab import helptext
from ganlab.claim import claim_folder
from ganlab.cli import entry_point, record_failure, report
from ganlab.config import config_dir, validate
from ganlab.errors import GanlabError, Refused
from ganlab.plugins import check_resumed, load_plugins, origins
from ganlab.run import TrainingRun, skip, starting_point
from ganlab.rundir import record_refusal
from ganlab.runtime import every
from ganlab.signals import StopRequest, stop_requests
from ganlab.tracking import save_hydra_record

DIVERGED = 3  # exit status of a single run that diverged


def train(cfg: DictConfig, out_dir: Path) -> float:
    """Train one GAN into ``out_dir``; return the sweep objective (lower is better).

    The objective is the final FID (the final G loss with ``metrics.enabled=false``); NaN
    when the run diverged, failed or was interrupted.
    """
    load_plugins()  # a sweep's worker process imports them too
    validate(cfg)
    out_dir, t = Path(out_dir), cfg.trainer
    with claim_folder(out_dir, t.resume, t.overwrite):  # one process, one run per folder
        start = starting_point(cfg, out_dir)  # the checkpoint to resume, checked
        if start.finished(cfg):
            return skip(cfg, out_dir, start)
        run = TrainingRun(cfg, out_dir, start)  # built, and resumed if asked to
        save_hydra_record(out_dir, cfg)  # this run owns the folder now: its record
        # SIGINT/SIGTERM: finish the step, save, then stop; errors mark results.json failed
        with run.failures_recorded(), stop_requests() as stop:
            loop(run, stop)
            run.final_evaluation(stop)
        return run.finish(stop)


def loop(run: TrainingRun, stop: StopRequest) -> None:
    """n_critic D updates and one G update per step, until trainer.steps (or a stop)."""
    t = run.cfg.trainer
    with run.progress.start(run.device):
        while run.trainer.step < t.steps:
            # --- one iteration: n_critic D updates, then one G update
            run.iterate()
            step = run.trainer.step
            last = step == t.steps or run.out_of_budget()  # trainer.cpu_minutes, when set
            # --- divergence: the interval's means are checked before anything is saved
            if every(step, t.log_every) or every(step, t.ckpt_every) or last or stop:
                if run.check() and run.rollback():
                    continue
                if run.record.problem:
                    run.diverge()
                    break
            # --- log scalars, then the fixed-noise grid
            if every(step, t.log_every) or last:
                run.log(step)
            if every(step, t.sample_every) or last:
                run.save_grid(step)
            # --- periodic evaluation (the final one follows the loop)
            if every(step, t.eval_every) and not last:
                run.evaluate(step, stop)
            # --- checkpoint, and stop when asked to
            if every(step, t.ckpt_every) or last or stop:
                run.checkpoint()
            if stop:
                run.interrupt()
                break
            if last:
                break


@entry_point
def main() -> float:
    """The console script: the plugins first (their names are config options), then Hydra."""
    load_plugins()
    if origins() and {"--help", "-h"} & set(sys.argv[1:]):
        # the committed help file lists ganlab's own options; this one the plugins' too
        print(helptext.generate().replace("$$", "$"))
        return float("nan")
    check_resumed(sys.argv[1:])
    return hydra_main()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
@entry_point
def hydra_main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return sweep_job(cfg, out_dir)
    objective = train(cfg, out_dir)
    # A diverged single run fails the command; in a sweep the other jobs go on (the report
    # counts it as a failure).
    if math.isnan(objective) and hydra_cfg.mode == RunMode.RUN:
        raise SystemExit(DIVERGED)
    return objective


def sweep_job(cfg: DictConfig, out_dir: Path) -> float:
    """One job of a sweep: its error is reported and recorded, and the other jobs go on
    (the sweep exits non-zero at its end; ganlab.callbacks). A refused job records nothing
    in its folder, whose records belong to another run: the refusal goes beside the jobs,
    in the sweep's folder, for the sweep's summary."""
    try:
        return train(cfg, out_dir)
    except Refused as e:
        report("refused", e)
        record_refusal(HydraConfig.get().sweep.dir, out_dir, str(e))
        return float("nan")
    except GanlabError as e:
        report("error", e)
        record_failure(out_dir, e)
        return float("nan")


if __name__ == "__main__":
    main()
