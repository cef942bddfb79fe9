"""The config tree: every group option composes, defaults match the contract, bad values fail
(or an unusual combination is said once), and the recipes and presets compose what they say."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from ganlab.build import build_trainer, optimizer
from ganlab.config import config_dir, validate
from ganlab.errors import GanlabError
from ganlab.execution import native_bf16_cpu
from ganlab.losses import LOSSES
from ganlab.models import build_models
from tests.conftest import TINY_RUN


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))


def test_groups_hold_the_contracted_options():
    assert options("model") == ["dcgan", "mlp"]
    assert options("loss") == sorted(LOSSES)
    assert options("optimizer") == ["adam", "rmsprop"]
    assert options("data") == ["mnist", "mnist_sample", "stacked_mnist"]


def test_defaults_match_the_contract(make_cfg):
    cfg = make_cfg()
    assert (cfg.model.name, cfg.loss.name, cfg.data.name) == ("dcgan", "vanilla", "mnist")
    assert cfg.trainer.batch_size == 64 and cfg.device == "auto"
    assert (cfg.optimizer.name, cfg.optimizer.lr, list(cfg.optimizer.betas)) == (
        "adam",
        2e-4,
        [0.5, 0.999],
    )
    assert cfg.optimizer.generator.lr is None and cfg.optimizer.discriminator.lr is None
    assert (cfg.penalty.name, cfg.trainer.ema, cfg.model.init) == ("none", 0.0, "default")


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_n_critic_defaults_from_the_loss(make_cfg, loss):
    cfg = make_cfg(f"loss={loss}")
    assert cfg.loss.name == loss
    assert cfg.trainer.n_critic == (5 if loss in ("wgan", "wgan_gp") else 1)
    validate(cfg)


def test_one_lr_sets_both_optimizers_and_each_can_differ(make_cfg):
    cfg = make_cfg("optimizer.lr=1e-3", "optimizer.discriminator.lr=4e-4")
    G, D = build_models(cfg.model)
    opt_G = optimizer(cfg.optimizer, "generator", G)
    opt_D = optimizer(cfg.optimizer, "discriminator", D)
    assert isinstance(opt_G, torch.optim.Adam)
    assert opt_G.param_groups[0]["lr"] == 1e-3 and opt_D.param_groups[0]["lr"] == 4e-4
    assert opt_G.param_groups[0]["betas"] == (0.5, 0.999)


@pytest.mark.parametrize(
    "override, key",
    [
        ("trainer.batch_size=0", "trainer.batch_size"),
        ("trainer.n_critic=0", "trainer.n_critic"),
        ("trainer.steps=-5", "trainer.steps"),
        ("optimizer.lr=-1e-4", "optimizer.lr"),
        ("optimizer.discriminator.lr=0", "optimizer.discriminator.lr"),
        ("optimizer.betas=[0.5,1.5]", "optimizer.betas"),
        ("penalty.weight=-1", "penalty.weight"),
        ("trainer.log_every=-1", "trainer.log_every"),
        ("device=gpu0", "device"),
        ("trainer.compile=fast", "trainer.compile"),
        ("trainer.amp=fp8", "trainer.amp"),
        ("trainer.compile_backend=tvm", "trainer.compile_backend"),
        ("trainer.cpu_minutes=-1", "trainer.cpu_minutes"),
    ],
)
def test_invalid_values_name_their_key(make_cfg, override, key):
    with pytest.raises(GanlabError, match=f"invalid value for {key}:"):
        validate(make_cfg(override))


@pytest.mark.parametrize(
    "override",
    ["trainer.batchsize=3", "loss=hinje", "data.split=val", "trainer.steps=abc", "los=hinge"],
)
def test_typos_and_wrong_types_fail_at_composition(make_cfg, override):
    with pytest.raises(ConfigCompositionException):
        make_cfg(override)


@pytest.mark.parametrize(
    "experiment, launcher_or_sweeper",
    [
        ("slurm", "SlurmLauncher"),
        ("local_parallel", "JoblibLauncher"),
        ("optuna_search", "OptunaSweeper"),
        ("loss_sweep", "BasicSweeper"),
        ("stacked_mnist", "BasicSweeper"),
        ("loss_study", "BasicSweeper"),
        ("[loss_study,slurm]", "SlurmLauncher"),  # the study on a cluster
    ],
)
def test_shipped_experiments_compose_with_their_plugins(make_cfg, experiment, launcher_or_sweeper):
    cfg = make_cfg(f"+experiment={experiment}", return_hydra_config=True)
    targets = cfg.hydra.launcher._target_ + cfg.hydra.sweeper._target_
    assert launcher_or_sweeper in targets
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"


def test_the_loss_study_sweeps_every_loss_both_recipes_three_seeds_resumably(make_cfg):
    cfg = make_cfg("+experiment=loss_study", return_hydra_config=True)
    params = dict(cfg.hydra.sweeper.params)
    assert params == {"recipe": "card,paper", "loss": "glob(*)", "seed": "0,1,2"}
    # run again, the same command continues it: a fixed folder, every job resumed or skipped
    assert "${now" not in str(OmegaConf.to_container(cfg.hydra.sweep)["dir"])
    assert cfg.trainer.resume == "auto" and cfg.trainer.ema > 0
    assert cfg.trainer.ckpt_every and cfg.trainer.steps % cfg.trainer.ckpt_every == 0


@pytest.mark.parametrize("loss", ["vanilla", "wgan", "wgan_gp", "hinge"])
def test_recipe_card_is_the_default_settings_under_a_name(make_cfg, loss):
    """recipe=card exists so a sweep can list the default beside recipe=paper: it must
    change nothing but the recipe key."""
    default = OmegaConf.to_container(make_cfg(f"loss={loss}"), resolve=True)
    card = OmegaConf.to_container(make_cfg(f"loss={loss}", "recipe=card"), resolve=True)
    paper = OmegaConf.to_container(make_cfg(f"loss={loss}", "recipe=paper"), resolve=True)
    assert card.pop("recipe") == "card" and paper["recipe"] == "paper"
    assert default.pop("recipe") is None and card == default


# --- validate: silently accepted before, now refused (or said in one INFO line) -----------------


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("seed=-1", "seed: -1"),
        (f"seed={2**32}", f"seed: {2**32}"),
        ("device=meta", "device: 'meta'"),
        ("optimizer.lr=inf", "optimizer.lr: inf"),
        ("optimizer.lr=nan", "optimizer.lr: nan"),
        ("optimizer.discriminator.lr=inf", "optimizer.discriminator.lr: inf"),
        ("optimizer.betas=[nan,0.9]", "optimizer.betas"),
        ("+aux.feature_matching=inf", "aux.feature_matching: inf"),
        ("+aux.feature_matching=nan", "aux.feature_matching: nan"),
        ("penalty.weight=inf", "penalty.weight: inf"),
        ("loss.clip=inf", "loss.clip: inf"),
        ("aux_params.contrastive_margin=inf", "aux_params.contrastive_margin: inf"),
    ],
)
def test_validate_refuses(make_cfg, override, says):
    with pytest.raises(GanlabError, match="invalid value for ") as info:
        validate(make_cfg(override))
    assert says in str(info.value)


@pytest.mark.parametrize("override", [f"seed={2**32 - 1}", "seed=0", "device=cpu", "device=cuda:1"])
def test_validate_accepts_the_edges(make_cfg, override):
    validate(make_cfg(override))


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (
            ["loss=wgan", "penalty=gp"],
            "loss=wgan with penalty=gp (weight 10) and loss.clip=0.01: weight clipping and the "
            "gradient penalty both apply",
        ),
        (["loss=vanilla", "loss.clip=0.01"], "loss=vanilla with loss.clip=0.01: D's weights"),
        (["loss=wgan"], None),
        (["loss=wgan_gp"], None),
    ],
)
def test_unusual_but_valid_combinations_are_said_once(make_cfg, caplog, overrides, says):
    with caplog.at_level(logging.INFO, logger="ganlab.config"):
        validate(make_cfg(*overrides))
    lines = [r.getMessage() for r in caplog.records if r.name == "ganlab.config"]
    if says is None:
        assert lines == []
    else:
        assert len(lines) == 1 and lines[0].startswith(says), lines


# --- recipes and presets ----------------------------------------------------------------------


def test_loss_wgan_gp_still_means_wgan_with_the_gradient_penalty(make_cfg):
    cfg = make_cfg("loss=wgan_gp")
    assert (cfg.penalty.name, cfg.penalty.weight, cfg.trainer.n_critic) == ("gp", 10.0, 5)
    assert make_cfg("loss=wgan_gp", "penalty=r1").penalty.name == "r1"  # the command line wins
    assert make_cfg("loss=hinge").penalty.name == "none"


PAPER = {  # loss -> (optimizer, lr, betas, n_critic, clip, penalty, spectral norm)
    "minimax": ("adam", 2e-4, [0.5, 0.999], 1, None, "none", False),
    "vanilla": ("adam", 2e-4, [0.5, 0.999], 1, None, "none", False),
    "lsgan": ("adam", 2e-4, [0.5, 0.999], 1, None, "none", False),
    "wgan": ("rmsprop", 5e-5, None, 5, 0.01, "none", False),
    "wgan_gp": ("adam", 1e-4, [0.5, 0.9], 5, None, "gp", False),
    "rsgan": ("adam", 2e-4, [0.5, 0.999], 1, None, "none", False),
    "ragan": ("adam", 2e-4, [0.5, 0.999], 1, None, "none", False),
    "hinge": ("adam", 2e-4, [0.0, 0.9], 5, None, "none", True),
}


@pytest.mark.parametrize("loss", sorted(PAPER))
def test_recipe_paper_composes_each_papers_settings(make_cfg, loss):
    cfg = make_cfg(f"loss={loss}", "recipe=paper")
    validate(cfg)
    opt = cfg.optimizer
    got = (
        opt.name,
        opt.lr,
        None if opt.betas is None else list(opt.betas),
        cfg.trainer.n_critic,
        cfg.loss.clip,
        cfg.penalty.name,
        bool(cfg.model.discriminator.get("spectral_norm", False)),
    )
    assert got == PAPER[loss]
    trainer = build_trainer(make_cfg(*TINY_RUN, f"loss={loss}", "recipe=paper"), "cpu")
    expected = torch.optim.RMSprop if PAPER[loss][0] == "rmsprop" else torch.optim.Adam
    assert type(trainer.opt_D) is expected and trainer.opt_D.param_groups[0]["lr"] == PAPER[loss][1]


def _is_best_trial(cfg, study: str, lr_rel: float, measured: dict | None = None) -> dict:
    """Assert that ``cfg`` composes every parameter of docs/<study>'s best trial (Optuna's
    answer, read from the study's own file), its lr within ``lr_rel``, except the keys of
    ``measured``, changed since by measurement (docs/losses.md); returns that trial."""
    import yaml  # PyYAML: the study file is plain YAML

    path = Path(__file__).resolve().parents[1] / "docs" / study / "optimization_results.yaml"
    best = yaml.safe_load(path.read_text())["best_params"]
    measured = measured or {}
    for key, value in measured.items():
        assert best[key] != value and OmegaConf.select(cfg, key) == value, key
    for key, value in best.items():
        if key in measured:
            continue
        if key == "optimizer.lr":
            assert cfg.optimizer.lr == pytest.approx(value, rel=lr_rel)
        elif key == "optimizer.betas":  # the sweeper's choice() records a list as its text
            assert list(cfg.optimizer.betas) == yaml.safe_load(value)
        elif key == "aug":  # a config group: the trial chose its option by name
            assert cfg.aug.name == value
        else:
            assert OmegaConf.select(cfg, key) == value, key
    return best


def test_preset_fast_composes_the_studys_best_trial_rounded(make_cfg):
    """+preset=fast is docs/preset_study's best trial, its lr rounded to 1.5e-3; it validates
    and builds a trainer, any loss."""
    cfg = make_cfg("+preset=fast", "loss=hinge")
    validate(cfg)
    _is_best_trial(cfg, "preset_study", lr_rel=0.05)
    trainer = build_trainer(make_cfg("+preset=fast", "data=mnist_sample"), "cpu")
    assert trainer.ema is not None and trainer.ema.decay == 0.999


def test_preset_fast10_composes_the_10_minute_studys_best_trial_and_lazy_r1(make_cfg):
    """+preset=fast10 is docs/preset_study_10min's best trial, its lr rounded, plus what was
    measured on top of it (docs/losses.md): lazy R1 (gamma 1, every 16th D step), bf16
    where the CPU runs it natively and batch 64 instead of the trial's 128; it sets the
    study's 10 CPU-minutes, validates and builds a trainer, any loss."""
    cfg = make_cfg("+preset=fast10", "loss=hinge")
    validate(cfg)
    measured = {"trainer.batch_size": 64}
    best = _is_best_trial(cfg, "preset_study_10min", lr_rel=0.01, measured=measured)
    assert {"trainer.lr_schedule", "aug"} <= best.keys()  # the 10-minute search's new axes
    assert cfg.trainer.cpu_minutes == 10 and cfg.trainer.amp == "auto"
    assert (cfg.penalty.name, cfg.penalty.weight, cfg.penalty.every) == ("r1", 1.0, 16)
    trainer = build_trainer(make_cfg("+preset=fast10", "data=mnist_sample"), "cpu")
    assert trainer.ema is not None and trainer.ema.decay == best["trainer.ema"]
    assert trainer.opt_D.param_groups[0]["lr"] == 7e-4
    due = [trainer.penalty_due(i) for i in range(32)]
    assert due == [i % 16 == 0 for i in range(32)]  # lazy: every 16th D step
    assert trainer.execution["amp"] == ("bf16" if native_bf16_cpu() else "off")


def test_preset_mlp_is_the_measured_mlp_recipe_and_trains(make_cfg):
    """+preset=mlp composes what docs/losses.md's MLP-recipe command measured (its command
    is read from the page), and builds: an MLP whose D sees groups of 16, Adam at 8e-4, EMA."""
    page = Path(__file__).resolve().parents[1] / "docs" / "losses.md"
    marker = "python -m ganlab.train model=mlp trainer.ema=0.999 model.discriminator.minibatch"
    (command,) = [line for line in page.read_text().splitlines() if line.startswith(marker)]
    documented = make_cfg(*command.split()[3:])
    preset = make_cfg("+preset=mlp")
    validate(preset)
    for key in ("model", "optimizer", "trainer"):
        assert OmegaConf.to_container(preset[key]) == OmegaConf.to_container(documented[key])
    assert preset.model.name == "mlp" and preset.model.discriminator.minibatch_std == 16
    trainer = build_trainer(make_cfg("+preset=mlp", *TINY_RUN[1:]), "cpu")
    assert trainer.opt_G.param_groups[0]["lr"] == 8e-4 and trainer.ema.decay == 0.999
    x = torch.rand(16, 1, 28, 28) * 2 - 1  # one group of 16 identical samples or 16 others
    assert not torch.allclose(trainer.D(x[:1].expand(16, -1, -1, -1))[0], trainer.D(x)[0])
