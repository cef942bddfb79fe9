"""``python -m ganlab.train [overrides]``: train one GAN (or a sweep, with ``-m``).

``train(cfg, out_dir)`` is the importable function; ``main`` is the Hydra entry point.
"""

from __future__ import annotations

import logging
import math
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ganlab.auxiliary import load_backbone
from ganlab.checkpoint import CheckpointDir, find_resume, rng_state, set_rng_state
from ganlab.config import config_dir, validate
from ganlab.data import load_data
from ganlab.divergence import divergence
from ganlab.errors import GanlabError
from ganlab.losses import get_loss
from ganlab.metrics.training import TrainingEvaluator
from ganlab.models import build_models
from ganlab.results import update_results
from ganlab.signals import RunInterrupted, stop_requests
from ganlab.tracking import RunLogger, flat_hparams, run_overrides
from ganlab.trainer import Trainer

log = logging.getLogger(__name__)

N_FIXED = 64  # images in each sample grid (8 x 8)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # CPU and every CUDA device


def every(step: int, interval: int) -> bool:
    return interval > 0 and step % interval == 0


def build_trainer(cfg: DictConfig, device: torch.device) -> Trainer:
    """Data, models, optimizers and loss from the config, ready to step."""
    data = load_data(cfg.data, device)
    log.info("data: %d images (%s) on %s", len(data), data.source, device)
    G, D = build_models(cfg.model)
    G, D = G.to(device), D.to(device)
    opt_G = instantiate(cfg.optimizer.generator)(G.parameters())
    opt_D = instantiate(cfg.optimizer.discriminator)(D.parameters())
    backbone = None
    if cfg.aux.get("perceptual"):
        backbone = load_backbone(cfg.aux_params.perceptual_backbone, cfg.data.root, device)
    return Trainer(
        G,
        D,
        get_loss(cfg.loss.name),
        opt_G,
        opt_D,
        data,
        cfg.trainer.batch_size,
        cfg.model.z_dim,
        gp_weight=cfg.loss.gp_weight,
        clip=cfg.loss.clip,
        aux=dict(cfg.aux),
        margin=cfg.aux_params.contrastive_margin,
        backbone=backbone,
    )


def train(cfg: DictConfig, out_dir: Path) -> float:
    """Train one GAN into ``out_dir``; return the sweep objective (lower is better).

    The objective is the final FID (the final G loss with ``metrics.enabled=false``); NaN
    when the run diverged or was interrupted.
    """
    validate(cfg)
    out_dir = Path(out_dir)
    t = cfg.trainer
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)

    trainer = build_trainer(cfg, device)
    data = trainer.data
    # Fixed noise from its own generator: the grids stay comparable across runs and resumes.
    fixed_z = torch.randn(
        N_FIXED, cfg.model.z_dim, generator=torch.Generator().manual_seed(cfg.seed)
    ).to(device)
    ckpts = CheckpointDir(out_dir / "checkpoints", keep=t.keep_checkpoints)
    evaluator = None
    if cfg.metrics.enabled:
        m = cfg.metrics
        evaluator = TrainingEvaluator(
            cfg.data.root, cfg.data.download, m.n_samples, m.eval_samples, m.floor, device, cfg.seed
        )
    plain_cfg = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)

    def restore(state: dict[str, Any]) -> None:
        trainer.load_state_dict(state)
        set_rng_state(state["rng"])

    # --- resume ---------------------------------------------------------------------------
    found = find_resume(t.resume, out_dir, device)
    if found is not None:
        restore(found[1])
        log.info("resumed from %s at step %d", found[0], trainer.step)
    logger = RunLogger(out_dir / "tb", purge_step=trainer.step + 1 if found else None)

    def evaluate(step: int, final: bool) -> dict[str, float]:
        result = evaluator(trainer.generate, cfg.model.z_dim, device, final)
        result["evaluation"]["step"] = step
        for key, value in result["metrics"].items():
            logger.scalar(f"metrics/{key}", value, step)
        update_results(out_dir, result)
        return result["metrics"]

    def checkpoint() -> None:
        logger.flush()  # events up to this step reach the disk before the state that follows
        ckpts.save(trainer.step, {**trainer.state_dict(), "rng": rng_state(), "config": plain_cfg})

    # --- the loop: n_critic D steps, one G step -------------------------------------------
    start_step, final, status, rollbacks = trainer.step, {}, "completed", 0
    problem, metrics = None, {}
    bar = tqdm(
        total=t.steps,
        initial=start_step,
        disable=None if t.progress else True,
        desc=f"{cfg.loss.name}/{cfg.model.name}",
        dynamic_ncols=True,
    )
    t0 = t_log = time.perf_counter()
    step_log = start_step
    with logging_redirect_tqdm(), stop_requests() as stop:
        while trainer.step < t.steps:
            for _ in range(t.n_critic):
                logger.accumulate(trainer.d_step())
            logger.accumulate(trainer.g_step())
            step, last = trainer.step, trainer.step == t.steps
            bar.update(1)

            # Divergence: checked on the interval's means before they are logged or saved.
            if every(step, t.log_every) or every(step, t.ckpt_every) or last:
                means = logger.means()  # reads the losses back: the interval's one sync
                problem = divergence(means, t.max_abs_score)
                if problem and t.on_divergence.name == "rollback" and rollbacks < t.max_rollbacks:
                    good = ckpts.load_newest_valid(device)
                    if good is not None:
                        rollbacks += 1
                        restore(good[1])
                        torch.manual_seed(cfg.seed + 1_000_003 * rollbacks)  # other noise
                        logger.restart(purge_step=trainer.step + 1)
                        bar.n = step_log = trainer.step
                        log.warning(
                            "diverged at step %d (%s); rolled back to step %d (%d/%d)",
                            step,
                            problem,
                            trainer.step,
                            rollbacks,
                            t.max_rollbacks,
                        )
                        problem = None
                        continue
                if problem:
                    final, status = logger.write(step, means), "diverged"
                    kept = (
                        f"the last good checkpoint is kept in {ckpts.last}"
                        if ckpts.last.is_file()
                        else "no checkpoint had been written yet"
                    )
                    log.error("diverged at step %d: %s; %s", step, problem, kept)
                    break
            if every(step, t.log_every) or last:
                final = logger.write(step, means)  # a log step always checked divergence
                now = time.perf_counter()
                logger.scalar("perf/it_per_s", (step - step_log) / (now - t_log), step)
                t_log, step_log = now, step
                bar.set_postfix(
                    D=f"{final['loss/D']:.3f}", G=f"{final['loss/G']:.3f}", refresh=False
                )
            if every(step, t.sample_every) or last:
                logger.images(
                    trainer.generate(fixed_z), step, out_dir / "samples" / f"step_{step:06d}.png"
                )
            if evaluator and every(step, t.eval_every) and not last:
                evaluate(step, final=False)
            if every(step, t.ckpt_every) or last or stop:
                checkpoint()
            if stop:
                final, status = final or logger.write(step), "interrupted"
                break
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    it_per_s = (trainer.step - start_step) / elapsed if elapsed > 0 else float("nan")
    if evaluator and status == "completed":
        metrics = evaluate(trainer.step, final=True)

    # --- results --------------------------------------------------------------------------
    results = update_results(
        out_dir,
        {
            "status": status,
            "loss": cfg.loss.name,
            "model": cfg.model.name,
            "seed": cfg.seed,
            "steps": trainer.step,
            "d_updates": trainer.d_updates,
            "n_critic": t.n_critic,
            "batch_size": t.batch_size,
            "device": str(device),
            "data": {"source": data.source, "num_images": len(data)},
            "throughput": {"it_per_s": it_per_s, "images_per_s": it_per_s * t.batch_size},
            "final": {"loss_d": final.get("loss/D"), "loss_g": final.get("loss/G")},
            **({"rollbacks": rollbacks} if rollbacks else {}),
            **({"divergence": {"step": trainer.step, "reason": problem}} if problem else {}),
        },
    )
    logger.hparams(
        flat_hparams(cfg, run_overrides()),
        {
            "hparam/loss_d": final.get("loss/D", float("nan")),
            "hparam/loss_g": final.get("loss/G", float("nan")),
            **{f"hparam/{key}": value for key, value in metrics.items()},
        },
    )
    logger.close()
    if stop:
        name = signal.Signals(stop[0]).name
        raise RunInterrupted(
            stop[0],
            f"{name} at step {trainer.step}: checkpoint saved in "
            f"{ckpts.path}; continue with trainer.resume={out_dir}",
        )
    log.info(
        "%s: %d steps at %.1f it/s; final loss D %.4f, G %.4f%s; run dir %s",
        status,
        trainer.step,
        it_per_s,
        final.get("loss/D", float("nan")),
        final.get("loss/G", float("nan")),
        "".join(f", {k} {metrics[k]:.4g}" for k in ("fid", "mnist_score") if k in metrics),
        out_dir,
    )
    if status != "completed":
        return float("nan")
    objective = metrics["fid"] if "fid" in metrics else results["final"]["loss_g"]
    return float("nan") if objective is None else float(objective)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        objective = train(cfg, out_dir)
    except GanlabError as e:
        # A user error: one readable line, no traceback.
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except RunInterrupted as e:
        print(f"interrupted: {e}", file=sys.stderr)
        raise SystemExit(128 + e.signum) from None
    # A diverged single run fails the command; in a sweep the other jobs go on (the report
    # counts it as a failure).
    if math.isnan(objective) and hydra_cfg.mode == RunMode.RUN:
        raise SystemExit(3)
    return objective


if __name__ == "__main__":
    main()
