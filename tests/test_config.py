"""The config tree: every group option composes, defaults match the contract, bad values fail."""

from __future__ import annotations

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from ganlab.build import optimizer
from ganlab.config import config_dir, validate
from ganlab.errors import GanlabError
from ganlab.losses import LOSSES
from ganlab.models import build_models


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


@pytest.mark.parametrize("model", ["mlp", "dcgan"])
def test_models_instantiate_and_d_returns_raw_scores(make_cfg, model):
    cfg = make_cfg(f"model={model}", "model.z_dim=12")
    G, D = build_models(cfg.model)
    z = torch.randn(5, 12)
    x = G(z)
    assert x.shape == (5, 1, 28, 28) and x.abs().max() <= 1
    scores = D(x)
    assert scores.shape == (5,)
    # No sigmoid in D: scores leave [0, 1] once the output layer is scaled up.
    with torch.no_grad():
        list(D.parameters())[-1].add_(10.0)
    assert D(x).min() > 1


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


def test_a_bad_model_argument_is_reported_with_its_key(make_cfg):
    cfg = make_cfg("model=mlp", "+model.generator.width=3")
    with pytest.raises(GanlabError, match="model.generator"):
        build_models(cfg.model)


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
