"""Lipschitz constraints for critics: the gradient penalty and weight clipping."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def gradient_penalty(D: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    r"""Per-sample gradient penalty of WGAN-GP (Gulrajani et al. 2017), shape [N].

    (‖∇ₓ D(x̂)‖₂ − 1)² at x̂ = α·x + (1 − α)·G(z), with one α ~ U[0, 1] per sample and the
    norm taken per sample (not over the batch). The graph is kept (create_graph) so the
    penalty trains D; ``fake`` should be detached from G.
    """
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2)


@torch.no_grad()
def clip_weights_(D: nn.Module, c: float) -> None:
    """WGAN weight clipping (Arjovsky et al. 2017): every D parameter into [−c, c], in place."""
    for p in D.parameters():
        p.clamp_(-c, c)
