"""Frozen feature networks for the perceptual auxiliary term.

Each has ``features(x)`` for x in [-1, 1], [N, 1, 28, 28]. Which one a run uses is chosen by
``aux_params.perceptual_backbone`` and built in ``ganlab.build``:

- ``mnist_perceptual`` (the default): ``MNISTPerceptual``, a second MNIST network that ganlab
  trains and caches like its metrics classifier (``ganlab.metrics.classifier``), of another
  architecture and seed: G never trains on the network that measures it.
- ``mnist_classifier``: the metrics classifier itself. Matching its features lowers FID, KID
  and PRDC by construction, so it is refused unless ``aux_params.allow_metric_backbone=true``,
  and then every metric of the run is flagged.
- ``vgg19``: ImageNet VGG19 (needs downloadable weights).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganlab.errors import GanlabError

DEFAULT_BACKBONE = "mnist_perceptual"
METRIC_BACKBONE = "mnist_classifier"  # the evaluation network: allowed only on request
BACKBONES = (DEFAULT_BACKBONE, METRIC_BACKBONE, "vgg19")

# Stored with the weights; a change invalidates cached copies.
PERCEPTUAL_ARCH = "conv5x5-24-elu-avgpool-conv5x5-48-elu-avgpool-fc96-elu-fc10"


class MNISTPerceptual(nn.Module):
    """[N, 1, 28, 28] in [-1, 1] -> 96 features (ELU) -> 10 logits.

    Deliberately unlike the metrics classifier (3x3 convs, max pooling, batch norm, 128
    features): 5x5 kernels, average pooling, ELUs, no normalisation, another seed.
    """

    num_features = 96

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 24, 5, padding=2),
            nn.ELU(),
            nn.AvgPool2d(2),  # [N, 24, 14, 14]
            nn.Conv2d(24, 48, 5, padding=2),
            nn.ELU(),
            nn.AvgPool2d(2),  # [N, 48, 7, 7]
            nn.Flatten(),
            nn.Linear(48 * 7 * 7, self.num_features),
            nn.ELU(),  # [N, 96]: the perceptual features
        )
        self.head = nn.Linear(self.num_features, 10)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


class VGGFeatures(nn.Module):
    """VGG19 conv features up to relu3_4, average-pooled to [N, 256], for 28x28 grey digits."""

    def __init__(self) -> None:
        super().__init__()
        # torchvision.models is slow to import and only this optional backbone needs it.
        from torchvision.models import VGG19_Weights, vgg19

        try:
            net = vgg19(weights=VGG19_Weights.IMAGENET1K_V1)
        except Exception as e:  # offline: URLError, or a half-downloaded file
            raise GanlabError(
                "aux_params.perceptual_backbone=vgg19 needs the ImageNet VGG19 weights, which "
                f"could not be downloaded ({' '.join(str(e).split())[:200]}); use "
                f"aux_params.perceptual_backbone={DEFAULT_BACKBONE} (offline)"
            ) from e
        self.body = net.features[:18]
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def features(self, x: Tensor) -> Tensor:
        x = F.interpolate((x + 1) / 2, size=64, mode="bilinear", align_corners=False)
        x = (x.expand(-1, 3, -1, -1) - self.mean) / self.std
        return self.body(x).mean((2, 3))
