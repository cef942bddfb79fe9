"""The one place a config becomes objects: data, models, optimizers, trainer, evaluation.

Everything above (the training loop, the CLIs) asks here; everything below (trainer, metrics,
models, data) never reads a config. Models are built from ganlab's registry by name, also
when the config comes from a checkpoint, so a file can never choose code to run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from ganlab.backbones import BACKBONES, VGGFeatures
from ganlab.checkpoint import locate
from ganlab.data import load_data
from ganlab.errors import GanlabError
from ganlab.losses import get_loss
from ganlab.metrics.classifier import load_or_train_classifier
from ganlab.metrics.session import EvaluationSession
from ganlab.models import build_models
from ganlab.trainer import Objective, Trainer

log = logging.getLogger(__name__)


def build_trainer(cfg: DictConfig, device: torch.device) -> Trainer:
    """Data, models, optimizers and objective from the config, ready to step."""
    data = load_data(cfg.data, device)
    log.info("data: %d images (%s) on %s", len(data), data.source, device)
    G, D = build_models(cfg.model)
    G, D = G.to(device), D.to(device)
    opt_G = instantiate(cfg.optimizer.generator)(G.parameters())
    opt_D = instantiate(cfg.optimizer.discriminator)(D.parameters())
    backbone = None
    if cfg.aux.get("perceptual"):
        backbone = load_backbone(cfg.aux_params.perceptual_backbone, cfg.data.root, device)
    objective = Objective(
        get_loss(cfg.loss.name),
        gp_weight=cfg.loss.gp_weight,
        clip=cfg.loss.clip,
        aux=dict(cfg.aux),
        margin=cfg.aux_params.contrastive_margin,
        backbone=backbone,
    )
    return Trainer(G, D, opt_G, opt_D, data, objective, cfg.trainer.batch_size, cfg.model.z_dim)


def load_backbone(name: str, data_root: str | Path, device: torch.device) -> nn.Module:
    """A frozen network with ``features(x)`` for x in [-1, 1], [N, 1, 28, 28]."""
    if name == "mnist_classifier":
        net, info = load_or_train_classifier(data_root=data_root, device=device)
        log.info("perceptual backbone: MNIST classifier sha256 %s", info["weights_sha256"][:12])
    elif name == "vgg19":
        net = VGGFeatures()
    else:
        raise GanlabError(
            f"invalid value for aux_params.perceptual_backbone: {name!r} "
            f"(one of {', '.join(BACKBONES)})"
        )
    return net.to(device).eval().requires_grad_(False)


def build_session(cfg: DictConfig, device: torch.device) -> EvaluationSession | None:
    """The run's evaluation session (None with ``metrics.enabled=false``)."""
    if not cfg.metrics.enabled:
        return None
    return EvaluationSession(
        cfg.data.root,
        device,
        cfg.metrics.n_samples,
        download=cfg.data.download,
        floor=cfg.metrics.floor,
        seed=cfg.seed,
    )


def load_generator(
    path: str | Path, device: torch.device
) -> tuple[nn.Module, Path, dict[str, Any]]:
    """(G in eval mode on device, checkpoint file, its state) from a checkpoint or run dir.

    G is built from the checkpoint's ``config.model`` through the model registry: its name
    and checked arguments, never a ``_target_`` (an old checkpoint's is ignored).
    """
    path, state = locate(path, required=("G", "config"))
    model_cfg = state["config"].get("model") if isinstance(state["config"], dict) else None
    if not isinstance(model_cfg, dict):
        raise GanlabError(f"{path} is not a ganlab training checkpoint (no model config)")
    try:
        G, _ = build_models(model_cfg)
    except GanlabError as e:
        raise GanlabError(f"{path}: its model config is not one ganlab builds ({e})") from None
    try:
        G.load_state_dict(state["G"])
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise GanlabError(f"{path}: G does not match its model config ({first})") from None
    return G.to(device).eval(), path, state
