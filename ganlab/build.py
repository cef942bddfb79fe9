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
from omegaconf import DictConfig
from torch import nn

from ganlab.augment import build_augment
from ganlab.auxiliary import TERMS
from ganlab.backbones import BACKBONES, DEFAULT_BACKBONE, METRIC_BACKBONE, VGGFeatures
from ganlab.checkpoint import locate
from ganlab.data import MNIST, image_channels, load_mnist, load_stacked
from ganlab.ema import EMA, recalibrate_batchnorm
from ganlab.errors import GanlabError
from ganlab.execution import MEMORY_FORMATS, resolve_compile, resolve_memory_format
from ganlab.losses import get_loss
from ganlab.metrics.classifier import (
    CLASSIFIER,
    FEATURES,
    PERCEPTUAL,
    cached_sha256,
    load_or_train_classifier,
    load_or_train_perceptual,
    weights_sha256,
)
from ganlab.metrics.session import EvaluationSession
from ganlab.models import build_models
from ganlab.models.layers import CONDITIONINGS
from ganlab.objective import Objective
from ganlab.optimizers import build_optimizer
from ganlab.plugins import check_recorded
from ganlab.schedules import LrSchedule, ScheduledLr
from ganlab.trainer import Trainer

log = logging.getLogger(__name__)

GENERATORS = ("auto", "ema", "raw")  # which generator of a checkpoint to sample from


def build_trainer(cfg: DictConfig, device: torch.device) -> Trainer:
    """Data, models, optimizers and objective from the config, ready to step."""
    device = torch.device(device)
    data = build_data(cfg.data, device)
    log.info("data: %d images (%s) on %s", len(data), data.source, device)
    G, D = build_models(cfg.model, cfg.cond.name, data.channels)
    layout, layout_why = resolve_memory_format(cfg.trainer.memory_format, device)
    G, D = (net.to(device, memory_format=MEMORY_FORMATS[layout]) for net in (G, D))
    # CUDA graphs replay the optimizer steps only with their step counts on the device; a
    # schedule keeps the iteration eager (ScheduledLr.compile_blocker).
    schedule = LrSchedule(cfg.trainer.lr_schedule, cfg.trainer.lr_warmup)
    compiled = resolve_compile(cfg.trainer.compile, device)[0] != "off" and not schedule.active
    capturable = device.type == "cuda" and compiled
    opt_G, opt_D = (
        optimizer(cfg.optimizer, part, net, capturable)
        for part, net in (("generator", G), ("discriminator", D))
    )
    backbone = None
    if any(weight and TERMS[name].reads == "backbone" for name, weight in cfg.aux.items()):
        backbone = load_backbone(cfg.aux_params.perceptual_backbone, cfg.data.root, device)
    objective = Objective(
        get_loss(cfg.loss.name),
        penalty=cfg.penalty.name,
        penalty_weight=cfg.penalty.weight,
        penalty_every=cfg.penalty.every,
        clip=cfg.loss.clip,
        aux=dict(cfg.aux),
        aux_params=dict(cfg.aux_params),
        backbone=backbone,
        cond=CONDITIONINGS[cfg.cond.name],
        cond_weight=cfg.cond.weight,
        augment=build_augment(cfg.aug.policy, cfg.aug),
    )
    z_dim = cfg.model.z_dim
    ema = EMA(G, cfg.trainer.ema, z_dim) if cfg.trainer.ema > 0 else None
    t = cfg.trainer
    trainer = Trainer(
        G,
        D,
        opt_G,
        opt_D,
        data,
        objective,
        t.batch_size,
        z_dim,
        ema,
        t.n_critic,
        ScheduledLr(schedule, (opt_G, opt_D)) if schedule.active else None,
    )
    trainer.execution |= {"memory_format": layout, "memory_format_why": layout_why}
    mode = trainer.compile(t.compile, t.amp, t.compile_backend)
    how = "eager" if mode == "off" else f"compiled, {mode} ({t.compile_backend})"
    record = trainer.execution
    whys = "; ".join(filter(None, (record.get(k) for k in ("why", "amp_why", "memory_format_why"))))
    log.info("iteration: %s, trainer.amp=%s, %s: %s", how, record["amp"], layout, whys)
    return trainer


def build_data(cfg: DictConfig, device: torch.device | str) -> MNIST:
    """The dataset of the data config node (split may be an Enum from a structured config)."""
    split = getattr(cfg.split, "name", cfg.split)
    if image_channels(cfg.name) != 1:
        return load_stacked(
            cfg.root, split, cfg.download, cfg.strict, cfg.num_images, cfg.seed, device
        )
    return load_mnist(cfg.name, cfg.root, split, cfg.download, cfg.strict, device)


def optimizer(
    cfg: DictConfig, part: str, net: nn.Module, capturable: bool = False
) -> torch.optim.Optimizer:
    """``optimizer.name`` for one network, with its own lr/betas where the config sets them."""
    own = cfg[part]
    lr = cfg.lr if own.lr is None else own.lr
    betas = cfg.betas if own.betas is None else own.betas
    betas = None if betas is None else list(betas)
    return build_optimizer(cfg.name, net.parameters(), lr, betas, capturable)


def load_backbone(name: str, data_root: str | Path, device: torch.device) -> nn.Module:
    """A frozen network with ``features(x)`` for x in [-1, 1], [N, 1, 28, 28].

    Only ``mnist_classifier`` (which the config check allows only with
    ``aux_params.allow_metric_backbone=true``) is the metrics classifier: any other backbone
    whose weights hash to a cached metric network's (the classifier's, the feature network's)
    is refused, whatever its name.
    """
    if name == METRIC_BACKBONE:
        net, info = load_or_train_classifier(data_root=data_root, device=device)
        log.warning(
            "perceptual backbone: the metrics classifier itself (sha256 %s; "
            "aux_params.allow_metric_backbone=true): G trains on the network that measures "
            "it, so every metric of this run is flagged",
            info["weights_sha256"][:12],
        )
        return net.eval().requires_grad_(False)
    if name == DEFAULT_BACKBONE:
        net, info = load_or_train_perceptual(data_root=data_root, device=device)
        log.info(
            "perceptual backbone %s, %.2f%% on %s",
            *(info["weights_sha256"][:12], 100 * info["test_accuracy"], info["test_source"]),
        )
    elif name == "vgg19":
        net = VGGFeatures()
    else:
        raise GanlabError(
            f"invalid value for aux_params.perceptual_backbone: {name!r} "
            f"(one of {', '.join(BACKBONES)})"
        )
    sha = weights_sha256(net)
    for metric_net in (CLASSIFIER, FEATURES):
        if sha == cached_sha256(metric_net):
            raise GanlabError(
                f"the perceptual backbone {name} has the {metric_net.what}'s weights (sha256 "
                f"{sha[:12]}): G would train on the network that measures it; rebuild the "
                f"backbone with {PERCEPTUAL.rebuild}"
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
    path: str | Path, device: torch.device, generator: str = "auto"
) -> tuple[nn.Module, Path, dict[str, Any]]:
    """(G in eval mode on device, checkpoint file, its state) from a checkpoint or run dir.

    G is built from the checkpoint's ``config.model`` through the model registry: its name
    and checked arguments, never a ``_target_`` (an old checkpoint's is ignored); its image
    channels are those of the checkpoint's ``data.name`` (1 before stacked MNIST existed).
    ``generator``: ``auto`` (the EMA generator when the run kept one, else G), ``ema`` or
    ``raw``; ``state["generator"]`` says which was loaded.
    """
    if generator not in GENERATORS:
        raise GanlabError(f"generator={generator!r} is not one of {', '.join(GENERATORS)}")
    path, state = locate(path, required=("config",))  # a checkpoint, or a GENERATOR_FILE
    check_recorded(state.get("plugins"), f"the checkpoint {path}", kinds=("model",))
    model_cfg = state["config"].get("model") if isinstance(state["config"], dict) else None
    if not isinstance(model_cfg, dict):
        raise GanlabError(f"{path} is not a ganlab training checkpoint (no model config)")
    cond = state["config"].get("cond", {}).get("name", "none")  # absent: before conditioning
    data_name = (state["config"].get("data") or {}).get("name", "mnist")
    try:
        G, _ = build_models(model_cfg, cond, image_channels(data_name))
    except GanlabError as e:
        raise GanlabError(f"{path}: its model config is not one ganlab builds ({e})") from None
    has_ema = isinstance(state.get("G_ema"), dict) and "G" in state["G_ema"]
    if generator == "ema" and not has_ema:
        raise GanlabError(f"{path} holds no EMA generator (the run had trainer.ema=0)")
    if "G" not in state and (generator == "raw" or not has_ema):
        kept = "only the EMA generator" if has_ema else "no generator"
        raise GanlabError(f"{path} holds {kept}: it cannot give generator={generator}")
    use_ema = has_ema and generator != "raw"
    try:
        G.load_state_dict(state["G_ema"]["G"] if use_ema else state["G"])
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise GanlabError(f"{path}: G does not match its model config ({first})") from None
    G = G.to(device)
    if use_ema:  # its BatchNorm statistics are recomputed, as during training
        recalibrate_batchnorm(G, model_cfg["z_dim"], device)
    return G.eval(), path, {**state, "generator": "ema" if use_ema else "raw"}
