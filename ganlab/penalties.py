r"""Lipschitz and gradient penalties on D, and weight clipping.

Each penalty takes D, a real batch and a (detached) generated batch and returns a per-sample
value of shape [N]; D minimises ``scale · weight · mean(penalty)`` (``PENALTIES`` holds each
one's scale). Norms are per sample, and so is every random interpolation weight α.

    gp      Gulrajani et al. 2017 (WGAN-GP):  (‖∇ₓ D(x̂)‖₂ − 1)²,  x̂ = α·x + (1 − α)·G(z)
    r1      Mescheder et al. 2018:            ‖∇ₓ D(x)‖₂² on real x,      D adds (γ/2)·R1
    r2      Mescheder et al. 2018:            ‖∇ₓ D(G(z))‖₂² on fakes,   D adds (γ/2)·R2
    dragan  Kodali et al. 2017:               (‖∇ₓ D(x̂)‖₂ − 1)²,  x̂ = x + α·δ,
                                              δ = 0.5·std(x)·U[0, 1]  (noise around real data)

The graphs are kept (``create_graph``) so the penalty trains D.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn


def _input_gradient(D: nn.Module, x: Tensor) -> Tensor:
    """∇ₓ D(x) per sample, flattened: [N, C·H·W], with the graph kept for D's update."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    return grad.flatten(1)


def _alpha(x: Tensor) -> Tensor:
    """One α ~ U[0, 1] per sample, broadcastable over the image."""
    return torch.rand(x.shape[0], *([1] * (x.dim() - 1)), device=x.device)


def gradient_penalty(D: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    r"""Per-sample gradient penalty of WGAN-GP (Gulrajani et al. 2017), shape [N].

    (‖∇ₓ D(x̂)‖₂ − 1)² at x̂ = α·x + (1 − α)·G(z), with one α ~ U[0, 1] per sample and the
    norm taken per sample (not over the batch). ``fake`` should be detached from G.
    """
    alpha = _alpha(real)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2)


def r1_penalty(D: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    r"""R1 (Mescheder et al. 2018): ‖∇ₓ D(x)‖₂² on real images, shape [N]."""
    return _input_gradient(D, real).pow(2).sum(1)


def r2_penalty(D: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    r"""R2 (Mescheder et al. 2018): ‖∇ₓ D(x)‖₂² on generated images, shape [N]."""
    return _input_gradient(D, fake).pow(2).sum(1)


def dragan_penalty(D: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    r"""DRAGAN (Kodali et al. 2017): (‖∇ₓ D(x̂)‖₂ − 1)² around the data, shape [N].

    x̂ = x + α·δ with δ = 0.5·std(x)·u, u ~ U[0, 1] per pixel (std over the whole real batch)
    and one α ~ U[0, 1] per sample: points in a neighbourhood of the real images.
    """
    delta = 0.5 * real.std() * torch.rand_like(real)
    x_hat = real + _alpha(real) * delta
    return (_input_gradient(D, x_hat).norm(2, dim=1) - 1).pow(2)


@dataclass(frozen=True)
class Penalty:
    fn: Callable[[nn.Module, Tensor, Tensor], Tensor]
    scale: float  # D adds scale · weight · mean(fn): 1/2 is R1/R2's γ/2 convention
    # A conditional D scores the penalty's points with the labels of this batch: the real
    # one (gp's interpolates and dragan's neighbours take the real image's label) or the fake.
    labels: str = "real"


PENALTIES: dict[str, Penalty | None] = {
    "none": None,
    "gp": Penalty(gradient_penalty, 1.0),
    "r1": Penalty(r1_penalty, 0.5),
    "r2": Penalty(r2_penalty, 0.5, labels="fake"),
    "dragan": Penalty(dragan_penalty, 1.0),
}


@torch.no_grad()
def clip_weights_(D: nn.Module, c: float) -> None:
    """WGAN weight clipping (Arjovsky et al. 2017): every D parameter into [−c, c], in place."""
    for p in D.parameters():
        p.clamp_(-c, c)
