"""Gradient penalties (GP, R1, R2, DRAGAN) against their closed forms in float64, in a D step
(lazily too), and WGAN's weight clipping."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ganlab.build import build_trainer
from ganlab.config import validate
from ganlab.penalties import (
    clip_weights_,
    dragan_penalty,
    gradient_penalty,
    r1_penalty,
    r2_penalty,
)
from tests.conftest import TINY_RUN


class Linear(nn.Module):
    """D(x) = <w, x>: its input gradient is w everywhere."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        return (x.flatten(1) * self.w).sum(1)


def images(seed: int, n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 28, 28, generator=g), torch.randn(n, 1, 28, 28, generator=g)


def test_gp_is_zero_for_a_unit_gradient_critic():
    w = torch.randn(784, dtype=torch.float64)
    D = Linear(w / w.norm()).double()
    real, fake = (x.double() for x in images(0))
    gp = gradient_penalty(D, real, fake)
    assert gp.shape == (32,)
    assert gp.abs().max().item() < 1e-20


def test_gp_norm_is_per_sample_and_alpha_per_sample():
    # D(x) = ½‖x‖²: ∇D(x̂) = x̂, so each sample's penalty is (‖x̂_i‖ − 1)² with its own α_i.
    class HalfSquare(nn.Module):
        def forward(self, x):
            return 0.5 * x.flatten(1).pow(2).sum(1)

    real, fake = (x.double() for x in images(2, n=64))
    torch.manual_seed(7)
    gp = gradient_penalty(HalfSquare(), real, fake)
    torch.manual_seed(7)
    alpha = torch.rand(64, 1, 1, 1)  # the draw gradient_penalty makes
    x_hat = alpha * real + (1 - alpha) * fake
    expected = (x_hat.flatten(1).norm(dim=1) - 1) ** 2
    torch.testing.assert_close(gp, expected)
    assert alpha.flatten().unique().numel() == 64  # one α per sample, not one per batch


def test_gp_trains_the_critic():
    D = Linear(torch.randn(784))
    real, fake = images(3)
    gradient_penalty(D, real, fake).mean().backward()
    assert D.w.grad is not None and D.w.grad.abs().sum() > 0


def test_clip_weights_bounds_every_parameter():
    D = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 1))
    with torch.no_grad():
        for p in D.parameters():
            p.mul_(100)
    clip_weights_(D, 0.01)
    for p in D.parameters():
        assert p.abs().max().item() <= 0.01


def batch(seed: int, n: int = 16) -> torch.Tensor:
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)).double()


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
