r"""Auxiliary losses added to the adversarial ones, each with a weight from config.

    G minimises  L_G = L_adv + λ_fm·L_fm + λ_per·L_per
    D minimises  L_D = L_adv (+ penalty) + λ_con·L_con

Config: ``aux`` maps a term's name to its weight (``+aux.feature_matching=1.0``), and
``aux_params`` holds the terms' settings (contrastive margin, perceptual backbone).

Each function takes features and returns a scalar; which network the gradients reach is
decided by the caller (real features are computed without grad, the backbone is frozen).
``TERMS`` is the registry: each term's network, the features it reads and its function, read
by the config check and by the trainer alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor


def mean_feature_distance(real: Tensor, fake: Tensor) -> Tensor:
    r"""‖mean_i φ(x_i) − mean_j φ(G(z_j))‖₂², over features [N, F] and [M, F].

    Feature matching (Salimans et al. 2016) with φ = D's last hidden layer; the perceptual
    term with φ = a frozen pretrained network. Zero when the feature means coincide.
    """
    return (real.flatten(1).mean(0) - fake.flatten(1).mean(0)).pow(2).sum()


def feature_matching(real_features: Tensor, fake_features: Tensor) -> Tensor:
    """Salimans et al. (2016): G matches the mean of D's intermediate features on real data."""
    return mean_feature_distance(real_features, fake_features)


def perceptual(real_features: Tensor, fake_features: Tensor) -> Tensor:
    """The same matching on a frozen pretrained network's features (ganlab's MNIST classifier
    by default, VGG19 as an option)."""
    return mean_feature_distance(real_features, fake_features)


def contrastive(real: Tensor, fake: Tensor, margin: float) -> Tensor:
    r"""Pairwise margin loss (Hadsell et al. 2006) on D's embedding e, for D:

        mean_{i≠j} ‖e(x_i) − e(x_j)‖²  +  mean_{i,j} max(0, m − ‖e(x_i) − e(G(z_j))‖)²

    Real–real pairs are pulled together, real–fake pairs pushed at least m apart. Zero when
    the real embeddings coincide and every fake lies m or more away from them.
    """
    real, fake = real.flatten(1), fake.flatten(1)
    n = real.shape[0]
    pull = torch.cdist(real, real).pow(2).sum() / (n * (n - 1))  # the diagonal is zero
    push = F.relu(margin - torch.cdist(real, fake)).pow(2).mean()
    return pull + push


@dataclass(frozen=True)
class AuxTerm:
    """An auxiliary loss: whose objective it joins, which features it compares, the
    ``aux_params`` it takes and what it cannot be combined with. The config check, the
    builder and the trainer read these fields; none of them names a term."""

    network: str  # "G" or "D": the network that minimises it
    reads: str  # "D": D's last hidden layer (D.features); "backbone": the frozen backbone
    fn: Callable[..., Tensor]  # (real features, fake features, **params)
    params: dict[str, str] = field(default_factory=dict)  # fn's keyword -> aux_params key
    one_channel: bool = False  # reads 1-channel digits only (not data=stacked_mnist)
    min_packs: int = 1  # D must score at least this many packs per batch


TERMS: dict[str, AuxTerm] = {
    "feature_matching": AuxTerm("G", "D", feature_matching),
    # the backbone (aux_params.perceptual_backbone) reads 1-channel digits
    "perceptual": AuxTerm("G", "backbone", perceptual, one_channel=True),
    # it compares D's embeddings of two packs or more
    "contrastive": AuxTerm("D", "D", contrastive, {"margin": "contrastive_margin"}, min_packs=2),
}
