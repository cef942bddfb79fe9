"""``python -m ganlab.train [overrides]``: train one GAN (or a sweep, with ``-m``).

``train(cfg, out_dir)`` is the importable function; ``main`` is the Hydra entry point.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ganlab.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from ganlab.config import config_dir, validate
from ganlab.data import load_data
from ganlab.errors import GanlabError
from ganlab.losses import get_loss
from ganlab.models import build_models
from ganlab.results import update_results
from ganlab.tracking import RunLogger
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


def checkpoint_to_resume(resume: str | None, out_dir: Path) -> Path | None:
    if resume is None:
        return None
    if resume == "auto":
        last = out_dir / "checkpoints" / "last.pt"
        return last if last.is_file() else None
    path = Path(resume).expanduser()
    if not path.is_file():
        raise GanlabError(f"trainer.resume: no checkpoint at {path}")
    return path


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The knobs a sweep compares, as TensorBoard HParams wants them (scalars and strings)."""
    return {
        "loss": cfg.loss.name,
        "model": cfg.model.name,
        "seed": cfg.seed,
        "lr": cfg.optimizer.lr,
        "beta1": cfg.optimizer.betas[0],
        "beta2": cfg.optimizer.betas[1],
        "batch_size": cfg.trainer.batch_size,
        "n_critic": cfg.trainer.n_critic,
        "steps": cfg.trainer.steps,
        "z_dim": cfg.model.z_dim,
        "data": cfg.data.name,
    }


def build_trainer(cfg: DictConfig, device: torch.device) -> Trainer:
    """Data, models, optimizers and loss from the config, ready to step."""
    data = load_data(cfg.data, device)
    log.info("data: %d images (%s) on %s", len(data), data.source, device)
    G, D = build_models(cfg.model)
    G, D = G.to(device), D.to(device)
    opt_G = instantiate(cfg.optimizer.generator)(G.parameters())
    opt_D = instantiate(cfg.optimizer.discriminator)(D.parameters())
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
    )


def train(cfg: DictConfig, out_dir: Path) -> float:
    """Train one GAN into ``out_dir``; return the sweep objective (lower is better).

    The objective is the final G loss until sample-quality metrics exist.
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
    ckpt_path = out_dir / "checkpoints" / "last.pt"

    def checkpoint() -> None:
        save_checkpoint(
            ckpt_path,
            {
                **trainer.state_dict(),
                "rng": rng_state(),
                "config": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
            },
        )

    # --- resume ---------------------------------------------------------------------------
    resume_from = checkpoint_to_resume(t.resume, out_dir)
    if resume_from is not None:
        state = load_checkpoint(resume_from, map_location=device)
        trainer.load_state_dict(state)
        set_rng_state(state["rng"])
        log.info("resumed from %s at step %d", resume_from, trainer.step)
    logger = RunLogger(out_dir / "tb", purge_step=trainer.step + 1 if resume_from else None)

    # --- the loop: n_critic D steps, one G step -------------------------------------------
    start_step, final = trainer.step, {}
    bar = tqdm(
        total=t.steps,
        initial=start_step,
        disable=None if t.progress else True,
        desc=f"{cfg.loss.name}/{cfg.model.name}",
        dynamic_ncols=True,
    )
    t0 = t_log = time.perf_counter()
    step_log = start_step
    with logging_redirect_tqdm():
        for step in range(start_step + 1, t.steps + 1):
            for _ in range(t.n_critic):
                logger.accumulate(trainer.d_step())
            logger.accumulate(trainer.g_step())
            bar.update(1)

            if every(step, t.log_every) or step == t.steps:
                final = logger.write(step)  # reads the losses back: the interval's one sync
                now = time.perf_counter()
                logger.scalar("perf/it_per_s", (step - step_log) / (now - t_log), step)
                t_log, step_log = now, step
                bar.set_postfix(
                    D=f"{final['loss/D']:.3f}", G=f"{final['loss/G']:.3f}", refresh=False
                )
            if every(step, t.sample_every) or step == t.steps:
                logger.images(
                    trainer.generate(fixed_z), step, out_dir / "samples" / f"step_{step:06d}.png"
                )
            if every(step, t.ckpt_every) or step == t.steps:
                checkpoint()
    bar.close()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    it_per_s = (t.steps - start_step) / elapsed if elapsed > 0 else float("nan")

    # --- results --------------------------------------------------------------------------
    results = update_results(
        out_dir,
        {
            "status": "completed",
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
        },
    )
    logger.hparams(
        flat_hparams(cfg),
        {
            "hparam/loss_d": final.get("loss/D", float("nan")),
            "hparam/loss_g": final.get("loss/G", float("nan")),
        },
    )
    logger.close()
    log.info(
        "done: %d steps at %.1f it/s; final loss D %.4f, G %.4f; run dir %s",
        trainer.step,
        it_per_s,
        final.get("loss/D", float("nan")),
        final.get("loss/G", float("nan")),
        out_dir,
    )
    objective = results["final"]["loss_g"]
    return float("nan") if objective is None else float(objective)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def main(cfg: DictConfig) -> float:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        return train(cfg, out_dir)
    except GanlabError as e:
        # A user error: one readable line, no traceback.
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
