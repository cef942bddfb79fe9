"""How ganlab trains its own MNIST networks (the metrics classifier, the perceptual backbone).

- ``augment``: small random shifts, rotations, scalings and an elastic distortion (Simard et
  al. 2003), one ``grid_sample`` for a whole batch, then pixel noise (Gaussian or salt and
  pepper) on a random part of the batch, so that a speckled but legible digit (what a young
  GAN draws) is read as that digit and not as one catch-all class;
- ``fit``: Adam with a one-cycle learning rate, cross-entropy, augmented batches.

Every random number (initialisation, order, augmentation) comes from ``seed``, drawn on the
CPU: the same data gives the same weights, bit for bit, in every process on one machine
(tests/test_classifier.py checks two), whatever the training device's own RNG does.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganlab.runtime import to_signed_unit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Augmentation:
    """Ranges of the random transform, each drawn uniformly per image (pixels of 28)."""

    rotate_degrees: float = 12.0
    shift_pixels: float = 2.0
    scale: float = 0.1  # zoom in [1 - scale, 1 + scale]
    elastic_pixels: float = 1.0  # std of the displacement field
    elastic_grid: int = 5  # the field: Gaussian noise on a 5x5 grid, upsampled bicubically
    # Pixel noise (scripts/bench_metrics.py --compare-features, docs/metrics): without it, 2 %
    # of salt pixels took the classifier from 99 % to 75 % accuracy, and it read the digits a
    # young GAN draws (legible, speckled) as one class; milder noise (σ <= 0.15, 3 % salt) still
    # read a 1,000-step MLP's ten clear rows of digits as 5 classes.
    noisy_fraction: float = 0.5  # images that get noise: half Gaussian, half salt and pepper
    noise_sigma: float = 0.4  # Gaussian: std drawn in [0, noise_sigma] (the image spans 2)
    salt_fraction: float = 0.1  # salt and pepper: fraction of pixels in [0, salt_fraction]


def augment(x: Tensor, generator: torch.Generator, aug: Augmentation = Augmentation()) -> Tensor:
    """Randomly shifted, rotated, scaled and elastically distorted copies of x (in [-1, 1]).

    The random parameters come from ``generator`` (a CPU one) and are moved to x's device;
    pixels from outside the image are background (-1).
    """
    n, device = x.shape[0], x.device

    def uniform(*shape: int) -> Tensor:
        return (torch.rand(*shape, generator=generator) * 2 - 1).to(device)

    angle = uniform(n) * math.radians(aug.rotate_degrees)
    zoom = 1 + uniform(n) * aug.scale
    shift = uniform(n, 2) * aug.shift_pixels / 14  # grid units: the image spans [-1, 1]
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    if aug.elastic_pixels > 0:
        size = aug.elastic_grid
        coarse = torch.randn(n, 2, size, size, generator=generator).to(device)
        coarse = coarse * (aug.elastic_pixels / 14)
        field = F.interpolate(coarse, size=x.shape[-2:], mode="bicubic", align_corners=True)
        grid = grid + field.permute(0, 2, 3, 1)
    warped = F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return pixel_noise(warped - 1, generator, aug)


def pixel_noise(x: Tensor, generator: torch.Generator, aug: Augmentation) -> Tensor:
    """x with Gaussian noise on a random ``noisy_fraction / 2`` of the images and salt and
    pepper (pixels set to -1 or 1) on another, each image with its own random strength."""
    if aug.noisy_fraction <= 0:
        return x
    n, device = x.shape[0], x.device
    kind = torch.rand(n, generator=generator)
    gauss = (kind < aug.noisy_fraction / 2).view(n, 1, 1, 1).to(device)
    salt = ((kind >= aug.noisy_fraction / 2) & (kind < aug.noisy_fraction)).view(n, 1, 1, 1)
    sigma = (torch.rand(n, 1, 1, 1, generator=generator) * aug.noise_sigma).to(device)
    noise = torch.randn(x.shape, generator=generator).to(device) * sigma
    rate = torch.rand(n, 1, 1, 1, generator=generator) * aug.salt_fraction
    u = torch.rand(x.shape, generator=generator)
    flip = (u < rate).to(device)
    value = torch.where(u < rate / 2, 1.0, -1.0).to(device)
    x = torch.where(gauss, (x + noise).clamp(-1, 1), x)
    return torch.where(salt.to(device) & flip, value, x)


def forked_rng(device: torch.device) -> contextlib.AbstractContextManager:
    """Seed freely inside: the caller's CPU (and CUDA device's) RNG state is restored after."""
    cuda = [device.index or torch.cuda.current_device()] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=cuda)


def fit(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    epochs: int,
    *,
    generator: torch.Generator,
    batch_size: int = 100,
    lr: float = 2e-3,
    augmentation: Augmentation | None = Augmentation(),
    name: str = "classifier",
) -> nn.Module:
    """Train ``model`` in place on uint8 images [N, 1, 28, 28] and int labels [N].

    ``augmentation`` (None: none) transforms every batch.
    Each epoch visits the images in a new random order, in full batches (a last partial
    batch is dropped: batch norm gets no 8-image batches). The learning rate follows one
    cycle (warm-up, then cosine decay) over all the steps. Returns the model in eval mode.
    """
    device = next(model.parameters()).device
    x, y = to_signed_unit(images.to(device)), labels.to(device)
    batch_size = min(batch_size, len(x))
    steps_per_epoch = len(x) // batch_size
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * steps_per_epoch)
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(x), generator=generator)[: steps_per_epoch * batch_size]
        for idx in order.to(device).split(batch_size):
            batch = x[idx] if augmentation is None else augment(x[idx], generator, augmentation)
            loss = F.cross_entropy(model(batch), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
        log.info("%s epoch %d/%d: last batch loss %.4f", name, epoch, epochs, loss.item())
    return model.eval().requires_grad_(False)
