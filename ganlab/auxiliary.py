r"""Auxiliary losses added to the adversarial ones, each with a weight from config.

    G minimises  L_G = L_adv + λ_fm·L_fm + λ_per·L_per
    D minimises  L_D = L_adv (+ penalty) + λ_con·L_con

Config: ``aux`` maps a term's name to its weight (``+aux.feature_matching=1.0``), and
``aux_params`` holds the terms' settings (contrastive margin, perceptual backbone).

Each function takes features and returns a scalar; which network the gradients reach is
decided by the caller (real features are computed without grad, the backbone is frozen).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganlab.errors import GanlabError

log = logging.getLogger(__name__)

G_TERMS = ("feature_matching", "perceptual")  # added to G's objective
D_TERMS = ("contrastive",)  # added to D's objective
TERMS = G_TERMS + D_TERMS
D_FEATURE_TERMS = ("feature_matching", "contrastive")  # read D.features(x)
BACKBONES = ("mnist_classifier", "vgg19")


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


class VGGFeatures(nn.Module):
    """VGG19 conv features up to relu3_4, average-pooled to [N, 256], for 28x28 grey digits."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import VGG19_Weights, vgg19

        try:
            net = vgg19(weights=VGG19_Weights.IMAGENET1K_V1)
        except Exception as e:  # offline: URLError, or a half-downloaded file
            raise GanlabError(
                "aux_params.perceptual_backbone=vgg19 needs the ImageNet VGG19 weights, which "
                f"could not be downloaded ({' '.join(str(e).split())[:200]}); use "
                "aux_params.perceptual_backbone=mnist_classifier (offline)"
            ) from e
        self.body = net.features[:18]
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def features(self, x: Tensor) -> Tensor:
        x = F.interpolate((x + 1) / 2, size=64, mode="bilinear", align_corners=False)
        x = (x.expand(-1, 3, -1, -1) - self.mean) / self.std
        return self.body(x).mean((2, 3))


def load_backbone(name: str, data_root: str | Path, device: torch.device) -> nn.Module:
    """A frozen network with ``features(x)`` for x in [-1, 1], [N, 1, 28, 28]."""
    if name == "mnist_classifier":
        from ganlab.metrics.classifier import load_or_train_classifier

        net, info = load_or_train_classifier(data_root=data_root, device=device)
        log.info("perceptual backbone: MNIST classifier sha256 %s", info["weights_sha256"][:12])
    elif name == "vgg19":
        net = VGGFeatures()
    else:
        raise GanlabError(
            f"invalid value for aux_params.perceptual_backbone: {name!r} "
            f"(one of {', '.join(BACKBONES)})"
        )
    return net.to(device).eval().requires_grad_(False)
