r"""The eight adversarial losses, from raw discriminator scores.

Notation: r = D(x) on a real batch, f = D(G(z)) on a generated batch (raw scores, no
sigmoid inside D), σ the logistic sigmoid. Every term is a batch mean. The log-sigmoid
terms use softplus identities, which stay finite at any score (log σ(100) underflows
nothing, log(1 − σ(100)) = −100):

    −log σ(s)     = softplus(−s)
    −log(1 − σ(s)) = softplus(s)

Each function takes logits and returns a scalar: no backward, no optimizer, no `.item()`.
Penalties and weight clipping that belong to a loss live in ``ganlab.penalties`` and are
switched on by the config (``penalty``, ``loss.clip``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from ganlab.errors import GanlabError


def _bce_d(r: Tensor, f: Tensor) -> Tensor:
    # D: push real logits up, generated logits down.
    return F.softplus(-r).mean() + F.softplus(f).mean()


def minimax_d(r: Tensor, f: Tensor) -> Tensor:
    r"""Goodfellow et al. (2014), D: −log σ(r) − log(1 − σ(f))."""
    return _bce_d(r, f)


def minimax_g(f: Tensor, r: Tensor) -> Tensor:
    r"""Goodfellow et al. (2014), saturating G: log(1 − σ(f)) = −softplus(f)."""
    return -F.softplus(f).mean()


def vanilla_d(r: Tensor, f: Tensor) -> Tensor:
    r"""Non-saturating GAN, D: −log σ(r) − log(1 − σ(f)) (same as minimax)."""
    return _bce_d(r, f)


def vanilla_g(f: Tensor, r: Tensor) -> Tensor:
    r"""Non-saturating G: −log σ(f) = softplus(−f)."""
    return F.softplus(-f).mean()


def lsgan_d(r: Tensor, f: Tensor) -> Tensor:
    r"""Least squares GAN (Mao et al. 2017), a, b, c = 0, 1, 1. D: (r − 1)² + f²."""
    return (r - 1).pow(2).mean() + f.pow(2).mean()


def lsgan_g(f: Tensor, r: Tensor) -> Tensor:
    r"""LSGAN G: (f − 1)²."""
    return (f - 1).pow(2).mean()


def wgan_d(r: Tensor, f: Tensor) -> Tensor:
    r"""Wasserstein GAN (Arjovsky et al. 2017), critic: f − r.

    −(D loss) estimates the Wasserstein-1 distance when D is 1-Lipschitz (weight clipping
    for ``wgan``, the gradient penalty for ``wgan_gp``, Gulrajani et al. 2017).
    """
    return f.mean() - r.mean()


def wgan_g(f: Tensor, r: Tensor) -> Tensor:
    r"""WGAN G: −f."""
    return -f.mean()


def rsgan_d(r: Tensor, f: Tensor) -> Tensor:
    r"""Relativistic standard GAN (Jolicoeur-Martineau 2018), D: −log σ(r − f), pairs (r_i, f_i)."""
    return F.softplus(-(r - f)).mean()


def rsgan_g(f: Tensor, r: Tensor) -> Tensor:
    r"""RSGAN G: −log σ(f − r), pairs (f_i, r_i)."""
    return F.softplus(-(f - r)).mean()


def ragan_d(r: Tensor, f: Tensor) -> Tensor:
    r"""Relativistic average GAN (Jolicoeur-Martineau 2018), D:
    −log σ(r − mean f) − log(1 − σ(f − mean r)).
    """
    return F.softplus(-(r - f.mean())).mean() + F.softplus(f - r.mean()).mean()


def ragan_g(f: Tensor, r: Tensor) -> Tensor:
    r"""RaGAN G, the D loss with real and generated swapped:
    −log σ(f − mean r) − log(1 − σ(r − mean f)).
    """
    return F.softplus(-(f - r.mean())).mean() + F.softplus(r - f.mean()).mean()


def hinge_d(r: Tensor, f: Tensor) -> Tensor:
    r"""Hinge loss (Lim & Ye 2017; Miyato et al. 2018), D: relu(1 − r) + relu(1 + f)."""
    return F.relu(1 - r).mean() + F.relu(1 + f).mean()


def hinge_g(f: Tensor, r: Tensor) -> Tensor:
    r"""Hinge G: −f."""
    return -f.mean()


@dataclass(frozen=True)
class GANLoss:
    """D objective ``d(real_logits, fake_logits)``, G objective ``g(fake_logits, real_logits)``."""

    d: Callable[[Tensor, Tensor], Tensor]
    g: Callable[[Tensor, Tensor | None], Tensor]
    # Relativistic G objectives compare against D(real): the G step then needs a real batch.
    g_uses_real: bool = False
    # -(D loss) estimates a distance worth plotting (Wasserstein-1 for the WGANs).
    estimates_wasserstein: bool = False
    # How this loss keeps D a 1-Lipschitz critic, when its theory needs one: "clip" (weight
    # clipping, loss.clip) or "penalty" (a gradient penalty with weight > 0); None: no need.
    lipschitz: str | None = None


LOSSES: dict[str, GANLoss] = {
    "minimax": GANLoss(minimax_d, minimax_g),
    "vanilla": GANLoss(vanilla_d, vanilla_g),
    "lsgan": GANLoss(lsgan_d, lsgan_g),
    "wgan": GANLoss(wgan_d, wgan_g, estimates_wasserstein=True, lipschitz="clip"),
    "wgan_gp": GANLoss(wgan_d, wgan_g, estimates_wasserstein=True, lipschitz="penalty"),
    "rsgan": GANLoss(rsgan_d, rsgan_g, g_uses_real=True),
    "ragan": GANLoss(ragan_d, ragan_g, g_uses_real=True),
    "hinge": GANLoss(hinge_d, hinge_g),
}


def get_loss(name: str) -> GANLoss:
    """The loss registered as ``name``; a GanlabError listing the valid names otherwise."""
    try:
        return LOSSES[name]
    except KeyError:
        raise GanlabError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}") from None


__all__ = ["GANLoss", "LOSSES", "get_loss"]
