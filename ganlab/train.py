"""``python -m ganlab.train [overrides]``: train one GAN (or a sweep, with ``-m``).

``train(cfg, out_dir)`` is the importable function and the loop, one short commented section
per concern (each section's work is a method of ``ganlab.run.TrainingRun``); ``main`` is the
thin Hydra entry point.
"""

from __future__ import annotations

import math
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ganlab.cli import entry_point
from ganlab.config import config_dir, validate
from ganlab.run import TrainingRun
from ganlab.runtime import every
from ganlab.signals import stop_requests

DIVERGED = 3  # exit status of a single run that diverged


def train(cfg: DictConfig, out_dir: Path) -> float:
    """Train one GAN into ``out_dir``; return the sweep objective (lower is better).

    The objective is the final FID (the final G loss with ``metrics.enabled=false``); NaN
    when the run diverged or was interrupted.
    """
    validate(cfg)
    run, t = TrainingRun(cfg, Path(out_dir)), cfg.trainer  # built, and resumed if asked to
    with stop_requests() as stop:  # SIGINT/SIGTERM: finish the step, save, then stop
        with run.progress():
            while run.trainer.step < t.steps:
                # --- one iteration: n_critic D updates, then one G update
                run.iterate()
                step, last = run.trainer.step, run.trainer.step == t.steps
                # --- divergence: the interval's means are checked before anything is saved
                if every(step, t.log_every) or every(step, t.ckpt_every) or last or stop:
                    if run.check() and run.rollback():
                        continue
                    if run.problem:
                        run.diverge()
                        break
                # --- log scalars, then the fixed-noise grid
                if every(step, t.log_every) or last:
                    run.log(step)
                if every(step, t.sample_every) or last:
                    run.save_grid(step)
                # --- periodic evaluation (the final one follows the loop)
                if run.session and every(step, t.eval_every) and not last:
                    run.evaluate(step, stop)
                # --- checkpoint, and stop when asked to
                if every(step, t.ckpt_every) or last or stop:
                    run.checkpoint()
                if stop:
                    run.interrupt()
                    break
        run.final_evaluation(stop)
    return run.finish(stop)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
@entry_point
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    objective = train(cfg, Path(hydra_cfg.runtime.output_dir))
    # A diverged single run fails the command; in a sweep the other jobs go on (the report
    # counts it as a failure).
    if math.isnan(objective) and hydra_cfg.mode == RunMode.RUN:
        raise SystemExit(DIVERGED)
    return objective


if __name__ == "__main__":
    main()
