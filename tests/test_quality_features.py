"""EMA generator, penalties, spectral normalisation, optimizers and paper recipes: each
against its definition (float64 where it matters), and end to end."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from ganlab.build import build_trainer, load_generator
from ganlab.config import validate
from ganlab.ema import BN_BATCH_SIZE, BN_BATCHES, BN_SEED, EMA, recalibrate_batchnorm
from ganlab.models import build_models
from ganlab.penalties import dragan_penalty, gradient_penalty, r1_penalty, r2_penalty
from ganlab.rundir import read_results
from ganlab.train import train
from tests.conftest import tiny

TINY_RUN = [*tiny("mlp"), "data=mnist_sample", "trainer.sample_every=0"]


class Linear(nn.Module):
    """D(x) = <w, x>: its input gradient is w everywhere."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        return (x.flatten(1) * self.w).sum(1)


def batch(seed: int, n: int = 16) -> torch.Tensor:
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)).double()


# --- penalties: closed forms ------------------------------------------------------------------


@pytest.mark.parametrize("penalty", [r1_penalty, r2_penalty])
def test_r1_and_r2_of_a_linear_critic_are_its_squared_weight_norm(penalty):
    w = torch.randn(784, dtype=torch.float64)
    got = penalty(Linear(w).double(), batch(0), batch(1))
    torch.testing.assert_close(got, torch.full((16,), float(w.pow(2).sum()), dtype=torch.float64))


@pytest.mark.parametrize("penalty", [gradient_penalty, dragan_penalty])
@pytest.mark.parametrize("norm, expected", [(1.0, 0.0), (3.0, 4.0), (0.5, 0.25)])
def test_gp_and_dragan_of_a_critic_with_known_gradient_norm(penalty, norm, expected):
    w = torch.randn(784, dtype=torch.float64)
    D = Linear(norm * w / w.norm()).double()  # ‖∇D‖ = norm everywhere: (norm − 1)²
    got = penalty(D, batch(2), batch(3))
    torch.testing.assert_close(got, torch.full((16,), expected, dtype=torch.float64))


@pytest.mark.parametrize("name", ["gp", "r1", "r2", "dragan"])
def test_a_penalised_d_step_trains_d_and_leaves_g_alone(make_cfg, name):
    cfg = make_cfg(*TINY_RUN, f"penalty={name}", "penalty.weight=5")
    validate(cfg)
    torch.manual_seed(0)
    trainer = build_trainer(cfg, torch.device("cpu"))
    G0 = copy.deepcopy(trainer.G.state_dict())
    logs = trainer.d_step()
    assert logs[f"penalty/{name}"] > 0
    assert all(p.grad is None for p in trainer.G.parameters())
    assert all(torch.equal(G0[k], v) for k, v in trainer.G.state_dict().items())


def test_lazy_r1_applies_every_kth_d_step_with_k_times_the_weight(make_cfg):
    cfg = make_cfg(*TINY_RUN, "penalty=r1", "penalty.every=4")
    trainer = build_trainer(cfg, torch.device("cpu"))
    logged = [("penalty/r1" in trainer.d_step()) for _ in range(8)]
    assert logged == [True, False, False, False, True, False, False, False]


def test_loss_wgan_gp_still_means_wgan_with_the_gradient_penalty(make_cfg):
    cfg = make_cfg("loss=wgan_gp")
    assert (cfg.penalty.name, cfg.penalty.weight, cfg.trainer.n_critic) == ("gp", 10.0, 5)
    assert make_cfg("loss=wgan_gp", "penalty=r1").penalty.name == "r1"  # the command line wins
    assert make_cfg("loss=hinge").penalty.name == "none"


# --- EMA ------------------------------------------------------------------------------------------


def test_one_ema_update_is_the_weighted_average_in_float64():
    G, _ = build_models({"name": "mlp", "z_dim": 4, "generator": {"hidden": [8]}})
    G = G.double()
    ema = EMA(G, decay=0.999, z_dim=4)
    old = [p.detach().clone() for p in ema.G.parameters()]
    with torch.no_grad():
        for p in G.parameters():
            p.add_(torch.randn_like(p))
    r = ema.rate()
    assert r == pytest.approx(min(0.999, 1 / 10))  # the warm-up at t = 0
    ema.update(G)
    for averaged, o, new in zip(ema.G.parameters(), old, G.parameters(), strict=True):
        torch.testing.assert_close(averaged, r * o + (1 - r) * new, rtol=0, atol=1e-15)
    assert ema.rate() == pytest.approx(2 / 11)  # t = 1


def test_decay_zero_makes_the_ema_the_raw_generator():
    G, _ = build_models({"name": "dcgan", "z_dim": 4, "generator": {"channels": 4}})
    ema = EMA(G, decay=0.0, z_dim=4)
    with torch.no_grad():
        for p in G.parameters():
            p.mul_(3).add_(1)
    ema.update(G)
    assert all(torch.equal(a, b) for a, b in zip(ema.G.parameters(), G.parameters(), strict=True))


def test_ema_batchnorm_statistics_are_those_of_its_own_activations():
    G, _ = build_models({"name": "dcgan", "z_dim": 4, "generator": {"channels": 4}})
    G.bn_probe = None
    recalibrate_batchnorm(G, 4, torch.device("cpu"))
    first_bn = G.net[1]  # BatchNorm2d after the first transposed conv
    # Independently: the mean over the same noise batches of the pre-BN activations' means.
    rng = torch.Generator().manual_seed(BN_SEED)
    means, variances = [], []
    with torch.no_grad():
        for _ in range(BN_BATCHES):
            z = torch.randn(BN_BATCH_SIZE, 4, generator=rng)
            h = G.net[0](z.view(-1, 4, 1, 1))
            means.append(h.mean((0, 2, 3)))
            variances.append(h.var((0, 2, 3), unbiased=True))
    torch.testing.assert_close(first_bn.running_mean, torch.stack(means).mean(0))
    torch.testing.assert_close(first_bn.running_var, torch.stack(variances).mean(0))
    assert not G.training


def test_ema_resume_is_bit_exact_and_sampling_uses_it(make_cfg, tmp_path):
    common = [*tiny("dcgan"), "data=mnist_sample", "trainer.sample_every=0", "trainer.ema=0.9"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(make_cfg(*common, "trainer.steps=6", "trainer.ckpt_every=3"), straight)
    train(make_cfg(*common, "trainer.steps=3", "trainer.ckpt_every=3"), resumed)
    train(make_cfg(*common, "trainer.steps=6", "trainer.resume=auto"), resumed)
    a = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)["G_ema"]
    b = torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)["G_ema"]
    assert a["updates"] == b["updates"] == 6
    assert all(torch.equal(a["G"][k], b["G"][k]) for k in a["G"])
    G, _, state = load_generator(straight, torch.device("cpu"))
    assert state["generator"] == "ema"
    raw, _, state = load_generator(straight, torch.device("cpu"), generator="raw")
    assert state["generator"] == "raw"
    z = torch.randn(4, 16)
    assert not torch.equal(G(z), raw(z))


def test_an_ema_run_reports_the_raw_generator_beside_the_ema_one(make_cfg, tmp_path, ganlab_cache):
    cfg = make_cfg(
        *TINY_RUN,
        "trainer.steps=4",
        "trainer.ema=0.5",
        "metrics.enabled=true",
        "metrics.n_samples=200",
        "metrics.floor=false",
    )
    train(cfg, tmp_path)
    results = read_results(tmp_path)
    assert results["evaluation"]["generator"] == "ema"
    assert set(results["metrics_raw"]) <= set(results["metrics"])
    assert results["metrics_raw"]["fid"] != results["metrics"]["fid"]


# --- spectral normalisation ----------------------------------------------------------------------


@pytest.mark.parametrize("model", ["mlp", "dcgan"])
def test_spectral_norm_keeps_each_d_layer_at_unit_top_singular_value(make_cfg, model):
    cfg = make_cfg(*tiny(model), "data=mnist_sample", "model.discriminator.spectral_norm=true")
    trainer = build_trainer(cfg, torch.device("cpu"))
    for _ in range(5):
        trainer.d_step()
        trainer.g_step()
    layers = [m for m in trainer.D.modules() if hasattr(m, "parametrizations")]
    assert len(layers) >= 3
    trainer.D.eval()  # no further power iteration: the weight as D now uses it
    for layer in layers:
        weight = layer.weight.detach().flatten(1)
        assert torch.linalg.matrix_norm(weight, ord=2).item() == pytest.approx(1.0, abs=0.05)


# --- optimizers and recipes ----------------------------------------------------------------------


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


def test_dcgan_init_draws_weights_from_n_0_002(make_cfg):
    cfg = make_cfg("model=dcgan", "model.init=dcgan")
    G, D = build_models(cfg.model)
    conv = G.net[3].weight  # 128 x 64 x 4 x 4 = 131k draws
    assert conv.mean().abs() < 1e-3 and conv.std().item() == pytest.approx(0.02, rel=0.02)
    assert G.net[1].weight.mean().item() == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize(
    "extra",
    [
        ["penalty=r1", "penalty.every=2", "model.discriminator.spectral_norm=true"],
        ["loss=hinge", "penalty=dragan", "trainer.ema=0.99"],
        ["loss=wgan", "recipe=paper"],
        ["loss=ragan", "penalty=r2", "model.init=dcgan"],
    ],
)
def test_new_options_train_end_to_end(make_cfg, tmp_path, extra):
    train(make_cfg(*TINY_RUN, "trainer.steps=6", "trainer.log_every=3", *extra), tmp_path)
    results = read_results(tmp_path)
    assert results["status"] == "completed" and results["steps"] == 6


def test_preset_fast_composes_the_studys_best_trial_rounded(make_cfg):
    """+preset=fast is docs/preset_study's best trial (Optuna's answer, read from the study's
    own file), its lr rounded to 1.5e-3; it validates and builds a trainer, any loss."""
    import yaml  # PyYAML: the study file is plain YAML

    study = Path(__file__).resolve().parents[1] / "docs" / "preset_study"
    best = yaml.safe_load((study / "optimization_results.yaml").read_text())["best_params"]
    cfg = make_cfg("+preset=fast", "loss=hinge")
    validate(cfg)
    assert cfg.model.generator.channels == best["model.generator.channels"]
    assert cfg.model.discriminator.channels == best["model.discriminator.channels"]
    assert list(cfg.optimizer.betas) == yaml.safe_load(best["optimizer.betas"])
    assert cfg.trainer.ema == best["trainer.ema"]
    assert cfg.trainer.batch_size == best["trainer.batch_size"]
    assert cfg.optimizer.lr == pytest.approx(best["optimizer.lr"], rel=0.05)
    trainer = build_trainer(make_cfg("+preset=fast", "data=mnist_sample"), "cpu")
    assert trainer.ema is not None and trainer.ema.decay == 0.999
