from __future__ import annotations

import torch
from torch import nn

from ganlab.penalties import clip_weights_, gradient_penalty


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


def test_gp_is_positive_otherwise_and_matches_closed_form():
    w = torch.randn(784, dtype=torch.float64)
    D = Linear(3 * w / w.norm()).double()  # ‖∇D‖ = 3 everywhere: penalty (3 − 1)² = 4
    real, fake = (x.double() for x in images(1))
    torch.testing.assert_close(
        gradient_penalty(D, real, fake), torch.full((32,), 4.0, dtype=torch.float64)
    )


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
