"""Frozen feature networks for the perceptual auxiliary term (besides ganlab's own classifier).

Each has ``features(x)`` for x in [-1, 1], [N, 1, 28, 28]. Which one a run uses is chosen by
``aux_params.perceptual_backbone`` and built in ``ganlab.build``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganlab.errors import GanlabError

BACKBONES = ("mnist_classifier", "vgg19")


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
                "aux_params.perceptual_backbone=mnist_classifier (offline)"
            ) from e
        self.body = net.features[:18]
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def features(self, x: Tensor) -> Tensor:
        x = F.interpolate((x + 1) / 2, size=64, mode="bilinear", align_corners=False)
        x = (x.expand(-1, 3, -1, -1) - self.mean) / self.std
        return self.body(x).mean((2, 3))
