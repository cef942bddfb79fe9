"""Typed schema of the Hydra config, and the checks a type cannot express.

The dataclasses are registered in Hydra's ConfigStore on import, as ``base_config``; the
YAML tree in ``conf/`` fills them in. Each default lives once: here, or (where the schema says
MISSING) in the YAML of its group option; tests/test_config.py checks that no YAML repeats
a default of the schema. Because every node is typed and in struct mode,
a misspelt key (``trainer.batchsize=8``) or a wrong type (``trainer.steps=abc``) fails
before any work, and Hydra names the key. ``validate`` adds the range checks.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import MISSING, DictConfig

from ganlab.augment import OPERATIONS
from ganlab.auxiliary import TERMS
from ganlab.backbones import BACKBONES, DEFAULT_BACKBONE, METRIC_BACKBONE
from ganlab.data import DEFAULT_ROOT, SPLITS, image_channels
from ganlab.errors import GanlabError
from ganlab.execution import AMP_CHOICES, BACKENDS, COMPILE_MODES, MEMORY_FORMAT_CHOICES
from ganlab.losses import LOSSES
from ganlab.models.layers import CONDITIONINGS
from ganlab.optimizers import OPTIMIZERS
from ganlab.penalties import PENALTIES
from ganlab.runtime import DEVICE_TYPES, check_memory, resolve_device
from ganlab.sampling import SEED_MAX
from ganlab.schedules import SCHEDULES
from ganlab.stacked import MODE_SAMPLES

log = logging.getLogger(__name__)


def config_dir() -> Path:
    """The directory holding ``config.yaml``.

    Wheels carry the YAML inside the package (``ganlab/conf``); a source checkout or an
    editable install reads the top-level ``conf/`` it was made from.
    """
    packaged = Path(__file__).resolve().parent / "conf"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[1] / "conf"


def hydra_compose(
    overrides: Sequence[str] = (), hydra_node: bool = False, job_name: str = "ganlab"
) -> DictConfig:
    """The config as the command line composes it from ``overrides`` (with Hydra's own node,
    ``hydra.*``, when ``hydra_node``); Hydra's global state is left as it was found: clear."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(
            version_base="1.3", config_dir=str(config_dir()), job_name=job_name
        ):
            return compose("config", overrides=list(overrides), return_hydra_config=hydra_node)
    finally:
        GlobalHydra.instance().clear()


Split = Enum("Split", {name: name for name in SPLITS})  # the names live in ganlab.data


class OnDivergence(Enum):
    stop = "stop"  # keep the last good checkpoint, mark results.json "diverged"
    rollback = "rollback"  # reload the last good checkpoint and retry with fresh noise


@dataclass
class ModelConfig:
    name: str = MISSING  # a key of ganlab.models.MODELS
    z_dim: int = 100
    init: str = "default"  # or dcgan: N(0, 0.02) weights (Radford et al. 2016)
    # Keyword arguments of the registered classes (channels, hidden), checked when built.
    generator: Any = MISSING
    discriminator: Any = MISSING


@dataclass
class LossConfig:
    name: str = MISSING
    n_critic: int = 1
    clip: float | None = None  # D weights clipped to [-clip, clip] after each D step (wgan)


@dataclass
class PenaltyConfig:
    name: str = MISSING  # a key of ganlab.penalties.PENALTIES
    weight: float = MISSING  # λ (gp, dragan) or γ (r1, r2: D adds γ/2 · R)
    every: int = 1  # lazy regularisation: every k-th D step, weight × k


@dataclass
class NetworkOptimizer:
    """Per-network overrides of optimizer.lr / optimizer.betas (None: the shared value)."""

    lr: float | None = None
    betas: list[float] | None = None


@dataclass
class CondConfig:
    name: str = MISSING  # none, projection or acgan (ganlab.models.layers.CONDITIONINGS)
    weight: float = 1.0  # acgan: weight of the class cross-entropy in both objectives


@dataclass
class AugConfig:
    name: str = MISSING  # the aug group's option (aug=): none or diffaugment
    policy: list[str] = MISSING  # operations applied in turn: color, translation, cutout
    translation: float = 0.125  # translation: shift of up to this fraction of the image
    cutout: float = 0.5  # cutout: side of the erased square, a fraction of the image


@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = MISSING
    betas: list[float] | None = None  # Adam's; RMSprop has none
    generator: NetworkOptimizer = field(default_factory=NetworkOptimizer)
    discriminator: NetworkOptimizer = field(default_factory=NetworkOptimizer)


@dataclass
class DataConfig:
    name: str = MISSING
    root: str = DEFAULT_ROOT
    split: Split = Split.train
    download: bool = True
    strict: bool = False  # true: missing MNIST is an error instead of the 5,000-image sample
    num_images: int | None = None  # stacked_mnist: images in the dataset (null: not stacked)
    seed: int | None = None  # stacked_mnist: seed of the digits drawn, apart from the run's seed


@dataclass
class TrainerConfig:
    steps: int = 5000  # generator updates
    batch_size: int = 64
    n_critic: int = "${loss.n_critic}"  # type: ignore[assignment]  # D updates per G update
    log_every: int = 100
    sample_every: int = 500
    ckpt_every: int = 1000
    eval_every: int = 0  # metrics every N steps (metrics.eval_samples); 0: only at the end
    resume: str | None = None  # "auto" (this run dir), a run dir, or a checkpoint file
    overwrite: bool = False  # start afresh in a folder that holds another run (clears it)
    ema: float = 0.0  # decay of the EMA of G's weights (0: off); samples and metrics use it
    cpu_minutes: float = 0.0  # stop after this many CPU-minutes of training (0: off; steps caps)
    lr_schedule: str = "constant"  # or linear, cosine: lr decay over the run (ganlab.schedules)
    lr_warmup: float = 0.0  # fraction of the run over which lr first rises from 0 (0: none)
    compile: str = "auto"  # off, default, reduce-overhead, max-autotune; auto: per device (docs)
    amp: str = "off"  # bf16: the forward passes under bfloat16 autocast; auto: bf16 where native
    compile_backend: str = "inductor"  # torch.compile's backend; aot_eager/eager to debug
    memory_format: str = "auto"  # channels_last or contiguous weights; auto: per device (docs)
    keep_checkpoints: int = 2  # numbered copies kept beside last.pt (fallbacks if it's damaged)
    on_divergence: OnDivergence = OnDivergence.stop  # NaN/Inf losses or |D score| too large
    max_abs_score: float = 1.0e6  # mean |D(x)| above this counts as a diverged D
    max_rollbacks: int = 3
    progress: bool = True  # tqdm bar (shown only on a terminal)


@dataclass
class MetricsConfig:
    enabled: bool = True  # final evaluation, and every trainer.eval_every steps
    n_samples: int = 10_000  # generated (and real) images in the final evaluation
    eval_samples: int = 2_000  # in the periodic evaluations, cheaper
    floor: bool = True  # also the real train-vs-test values (fid_floor, kid_floor)
    mode_samples: int = MODE_SAMPLES  # stacked_mnist: samples whose modes are counted


@dataclass
class AuxParams:
    contrastive_margin: float = 1.0  # real-fake pairs are pushed at least this far apart
    perceptual_backbone: str = DEFAULT_BACKBONE  # a 2nd MNIST net; vgg19; mnist_classifier
    allow_metric_backbone: bool = False  # true: G may train on the metrics network (flagged)


@dataclass
class Config:
    model: ModelConfig = MISSING
    loss: LossConfig = MISSING
    penalty: PenaltyConfig = MISSING
    cond: CondConfig = MISSING
    aug: AugConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    data: DataConfig = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    # Auxiliary loss weights by term, e.g. +aux.feature_matching=1.0 (ganlab.auxiliary).
    aux: dict[str, float] = field(default_factory=dict)
    aux_params: AuxParams = field(default_factory=AuxParams)
    recipe: Any = None  # recipe=paper: conf/recipe_loss/paper/<loss>.yaml; card: the defaults
    seed: int = 0
    device: str = "auto"


ConfigStore.instance().store(name="base_config", node=Config)


MIN_SAMPLES = 100  # metrics.n_samples / eval_samples: k-NN radii (k=5) and KID's subsets


def _check(ok: bool, key: str, value: Any, rule: str) -> None:
    if not ok:
        raise GanlabError(f"invalid value for {key}: {value!r} ({rule})")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _check_positive(key: str, value: Any, rule: str = "must be a finite number > 0") -> None:
    _check(_finite(value) and value > 0, key, value, rule)


def validate(cfg: DictConfig) -> None:
    """Range checks the schema's types cannot express; raises GanlabError naming the key.

    Settings that are valid but unusual together are said in one INFO line, not refused.
    """
    unknown = _unknown_keys(cfg, Config)
    if unknown:
        raise GanlabError(
            f"unknown config key {unknown[0]} (nothing reads it; check the spelling, or see "
            "python -m ganlab.train --info config)"
        )
    _check(cfg.loss.name in LOSSES, "loss.name", cfg.loss.name, f"one of {', '.join(LOSSES)}")
    _check_trainer(cfg.trainer)
    _check(cfg.model.z_dim >= 1, "model.z_dim", cfg.model.z_dim, "must be >= 1")
    _check_loss(cfg.loss, cfg.penalty)
    _check(
        cfg.cond.name in CONDITIONINGS,
        "cond.name",
        cfg.cond.name,
        f"one of {', '.join(CONDITIONINGS)}",
    )
    _check(
        _finite(cfg.cond.weight) and cfg.cond.weight >= 0,
        "cond.weight",
        cfg.cond.weight,
        "must be a finite number >= 0",
    )
    _check_optimizer(cfg.optimizer)
    _check_aug(cfg.aug)
    for key in ("n_samples", "eval_samples"):
        value = cfg.metrics[key]
        rule = f"must be >= {MIN_SAMPLES} for stable k-NN metrics"
        _check(value >= MIN_SAMPLES, f"metrics.{key}", value, rule)
    _check(
        cfg.metrics.mode_samples >= 1,
        "metrics.mode_samples",
        cfg.metrics.mode_samples,
        "must be >= 1",
    )
    _check_aux(cfg)
    _check_data(cfg)
    _check_pack(cfg)
    seed = cfg.seed
    _check(0 <= seed <= SEED_MAX, "seed", seed, f"must be an integer in 0..{SEED_MAX}")
    _check(
        cfg.device == "auto" or _is_device(cfg.device),
        "device",
        cfg.device,
        "'auto', 'cpu', 'cuda' or 'cuda:N': ganlab trains on cpu or cuda devices",
    )
    _check_memory(cfg)


def _check_trainer(t: DictConfig) -> None:
    for key in ("steps", "batch_size", "n_critic"):
        _check(t[key] >= 1, f"trainer.{key}", t[key], "must be >= 1")
    for key in (
        "log_every",
        "sample_every",
        "ckpt_every",
        "eval_every",
        "keep_checkpoints",
        "max_rollbacks",
    ):
        _check(t[key] >= 0, f"trainer.{key}", t[key], "must be >= 0; 0 turns it off")
    _check(t.max_abs_score > 0, "trainer.max_abs_score", t.max_abs_score, "must be > 0")
    _check(0 <= t.ema < 1, "trainer.ema", t.ema, "an EMA decay in [0, 1); 0 turns it off")
    _check(
        t.compile in COMPILE_MODES,
        "trainer.compile",
        t.compile,
        f"one of {', '.join(COMPILE_MODES)}",
    )
    _check(t.amp in AMP_CHOICES, "trainer.amp", t.amp, f"one of {', '.join(AMP_CHOICES)}")
    _check(
        t.memory_format in MEMORY_FORMAT_CHOICES,
        "trainer.memory_format",
        t.memory_format,
        f"one of {', '.join(MEMORY_FORMAT_CHOICES)}",
    )
    _check(
        t.compile_backend in BACKENDS,
        "trainer.compile_backend",
        t.compile_backend,
        f"one of {', '.join(BACKENDS)}",
    )
    _check(
        _finite(t.cpu_minutes) and t.cpu_minutes >= 0,
        "trainer.cpu_minutes",
        t.cpu_minutes,
        "must be a finite number >= 0; 0 turns the budget off",
    )
    _check(
        t.lr_schedule in SCHEDULES,
        "trainer.lr_schedule",
        t.lr_schedule,
        f"one of {', '.join(SCHEDULES)}",
    )
    _check(
        _finite(t.lr_warmup) and 0 <= t.lr_warmup < 1,
        "trainer.lr_warmup",
        t.lr_warmup,
        "a fraction of the run in [0, 1); 0: no warm-up",
    )


def _check_loss(loss: DictConfig, penalty: DictConfig) -> None:
    _check(
        penalty.name in PENALTIES, "penalty.name", penalty.name, f"one of {', '.join(PENALTIES)}"
    )
    gp, clip = penalty.weight, loss.clip
    _check(_finite(gp) and gp >= 0, "penalty.weight", gp, "must be a finite number >= 0")
    _check(penalty.every >= 1, "penalty.every", penalty.every, "must be >= 1")
    gp = gp if PENALTIES[penalty.name] is not None else 0.0
    lipschitz = LOSSES[loss.name].lipschitz
    _check(
        lipschitz != "penalty" or gp > 0,
        "penalty.name" if PENALTIES[penalty.name] is None else "penalty.weight",
        penalty.name if PENALTIES[penalty.name] is None else penalty.weight,
        f"loss={loss.name} is the WGAN loss with a gradient penalty; without one D is an "
        "unconstrained critic and the loss diverges: use a penalty with a weight > 0 (the "
        "loss selects penalty=gp, weight 10), or loss=wgan for weight clipping",
    )
    if clip is not None:
        _check_positive("loss.clip", clip, "must be a finite number > 0, or null for no clipping")
    # Legal, and sometimes meant, but easy to get by accident: say so once.
    if clip is not None and gp > 0:
        log.info(
            "loss=%s with penalty=%s (weight %g) and loss.clip=%g: weight clipping and the "
            "gradient penalty both apply",
            loss.name,
            penalty.name,
            gp,
            clip,
        )
    elif clip is not None and lipschitz is None:
        log.info(
            "loss=%s with loss.clip=%g: D's weights are clipped after each D step, although "
            "%s is not a WGAN loss",
            loss.name,
            clip,
            loss.name,
        )


def _check_optimizer(opt: DictConfig) -> None:
    _check(opt.name in OPTIMIZERS, "optimizer.name", opt.name, f"one of {', '.join(OPTIMIZERS)}")
    _check_positive("optimizer.lr", opt.lr)
    if opt.betas is not None:
        _check_betas("optimizer.betas", opt.betas)
    for part in ("generator", "discriminator"):  # per-network overrides (e.g. TTUR)
        node = opt[part]
        if node.lr is not None:
            _check_positive(f"optimizer.{part}.lr", node.lr)
        if node.betas is not None:
            _check_betas(f"optimizer.{part}.betas", node.betas)


def _check_aug(aug: DictConfig) -> None:
    for name in aug.policy:
        _check(name in OPERATIONS, "aug.policy", name, f"operations are {', '.join(OPERATIONS)}")
    _check(
        len(set(aug.policy)) == len(aug.policy),
        "aug.policy",
        list(aug.policy),
        "each operation at most once",
    )
    _check(
        (aug.name == "none") == (not aug.policy),
        "aug.policy",
        list(aug.policy),
        "aug=none applies no operation: choose aug=diffaugment for a policy"
        if aug.name == "none"
        else f"aug={aug.name} needs at least one operation ({', '.join(OPERATIONS)})",
    )
    for key in sorted({op.param for op in OPERATIONS.values() if op.param}):  # their ratios
        value = aug[key]
        ok = _finite(value) and 0 < value <= 1
        _check(ok, f"aug.{key}", value, "a fraction of the image in (0, 1]")


def _check_aux(cfg: DictConfig) -> None:
    for name, weight in cfg.aux.items():
        _check(name in TERMS, "aux", name, f"auxiliary terms are {', '.join(TERMS)}")
        _check(
            _finite(weight) and weight >= 0, f"aux.{name}", weight, "must be a finite number >= 0"
        )
    margin, backbone = cfg.aux_params.contrastive_margin, cfg.aux_params.perceptual_backbone
    _check_positive("aux_params.contrastive_margin", margin)
    _check(
        backbone in BACKBONES,
        "aux_params.perceptual_backbone",
        backbone,
        f"one of {', '.join(BACKBONES)}",
    )
    reads_backbone = any(TERMS[name].reads == "backbone" for name in _active_terms(cfg))
    metric_net = backbone == METRIC_BACKBONE and reads_backbone
    _check(
        not metric_net or cfg.aux_params.allow_metric_backbone,
        "aux_params.perceptual_backbone",
        backbone,
        "the metrics classifier: G would match its features and lower FID/KID/PRDC by "
        "construction; use mnist_perceptual (the default), or allow it with "
        "aux_params.allow_metric_backbone=true and every metric of the run is flagged",
    )


def _active_terms(cfg: DictConfig) -> list[str]:
    """The auxiliary terms the run adds (a registered name with a weight other than 0)."""
    return [name for name, weight in cfg.aux.items() if name in TERMS and weight]


def _check_data(cfg: DictConfig) -> None:
    """data.num_images and data.seed belong to data=stacked_mnist, which is unconditional."""
    data = cfg.data
    stacked = image_channels(data.name) != 1
    for key in ("num_images", "seed"):
        value = data[key]
        if not stacked:
            _check(value is None, f"data.{key}", value, "only data=stacked_mnist reads it")
        elif key == "num_images":
            _check(value is not None and value >= 1, "data.num_images", value, "must be >= 1")
        else:
            ok = value is not None and 0 <= value <= SEED_MAX
            _check(ok, "data.seed", value, f"must be an integer in 0..{SEED_MAX}")
    if stacked:
        _check(
            not CONDITIONINGS[cfg.cond.name].labels,
            "cond.name",
            cfg.cond.name,
            "must be none with data=stacked_mnist: its labels are 1,000 modes, not 10 classes",
        )
        for name in _active_terms(cfg):
            _check(
                not TERMS[name].one_channel,
                f"aux.{name}",
                cfg.aux[name],
                f"must be 0 with data=stacked_mnist: the {name} term reads 1-channel digits",
            )


def _check_pack(cfg: DictConfig) -> None:
    """PacGAN's pack (model.discriminator.pack): D scores packs of m samples of a batch."""
    D = cfg.model.discriminator
    m = D.get("pack", 1) if isinstance(D, DictConfig) else 1
    key, batch = "model.discriminator.pack", cfg.trainer.batch_size
    _check(isinstance(m, int) and not isinstance(m, bool) and m >= 1, key, m, "an integer >= 1")
    _check(batch % m == 0, key, m, f"must divide trainer.batch_size={batch} (D scores packs)")
    _check(
        m == 1 or not CONDITIONINGS[cfg.cond.name].labels,
        key,
        m,
        f"must be 1 with cond={cfg.cond.name}: a pack of samples has no one class label",
    )
    group = D.get("minibatch_std", 0) if isinstance(D, DictConfig) else 0
    if isinstance(group, int) and group >= 1 and batch % m == 0:  # its type: build_models
        n = batch // m
        _check(
            n % min(group, n) == 0,
            "model.discriminator.minibatch_std",
            group,
            f"D scores {n} packs per batch (trainer.batch_size / pack): a group size that "
            "divides them",
        )
    for name in _active_terms(cfg):
        packs = TERMS[name].min_packs
        _check(
            batch // m >= packs,
            key,
            m,
            f"aux.{name} compares D's embeddings of {packs} packs or more: at most "
            f"batch_size / {packs}",
        )


def _unknown_keys(node: DictConfig, schema: type, prefix: str = "") -> list[str]:
    """Keys of ``node`` that its dataclass does not declare (added with a ``+`` override).

    Free-form nodes (``aux``, ``model.generator``) are checked by their own registries.
    """
    hints = typing.get_type_hints(schema)
    unknown = []
    for key in node:
        if prefix == "" and key == "hydra":
            continue
        if key not in hints:
            unknown.append(f"{prefix}{key}")
        elif dataclasses.is_dataclass(hints[key]) and isinstance(node[key], DictConfig):
            unknown += _unknown_keys(node[key], hints[key], f"{prefix}{key}.")
    return unknown


def _check_betas(key: str, betas: Any) -> None:
    ok = len(betas) == 2 and all(_finite(b) and 0 <= b < 1 for b in betas)
    _check(ok, key, list(betas), "two values in [0, 1)")


def _is_device(name: str) -> bool:
    """A torch device string of a type ganlab trains on (not ``meta``, ``ipu``...)."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        return False
    return device.type in DEVICE_TYPES


MEMORY_CHECKED = 2**28  # bytes: below this, no need to ask the device (CUDA's first query)


def _check_memory(cfg: DictConfig) -> None:
    """A dataset or batch too large for the device: one line before any work, instead of the
    allocator's traceback after the folder is made. The sizes are lower bounds (the images
    alone), so a run that fits is never refused."""
    try:
        device = resolve_device(cfg.device)
    except GanlabError:
        return  # a device this machine lacks (validated elsewhere): refused when a run starts
    pixels = image_channels(cfg.data.name) * 28 * 28
    dataset = (cfg.data.num_images or 0) * pixels  # stacked_mnist: uint8 [N, 3, 28, 28]
    # a batch: the uint8 draw, real and generated float32 images, the noise
    batch = cfg.trainer.batch_size * (9 * pixels + 4 * cfg.model.z_dim)
    if dataset >= MEMORY_CHECKED:
        check_memory(device, dataset, f"data.num_images={cfg.data.num_images} (on the device)")
    if dataset + batch >= MEMORY_CHECKED:
        what = f"trainer.batch_size={cfg.trainer.batch_size} (one batch and the data)"
        check_memory(device, dataset + batch, what)
