"""Images from a generator: seeded noise, batches of any size, PNG grids and ``.npz`` files.

The same seed gives the same z on every device (z is drawn on the CPU from its own
generator), and the caller's RNG stream (the one training draws from) is left untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchvision.utils import save_image

from ganlab.runtime import to_uint8

Generate = Callable[[int], Tensor]  # batch size -> images [B, 1, 28, 28] in [-1, 1]
BATCH = 1000  # images per forward pass: memory stays flat for any n
FORMATS = (".png", ".npz")


def sample_fn(
    G: Callable[[Tensor], Tensor], z_dim: int, device: torch.device | str, seed: int = 0
) -> Generate:
    """A ``Generate`` feeding G with z ~ N(0, I) from its own seeded CPU generator.

    Put G in eval mode first (or pass a function that does).
    """
    rng = torch.Generator().manual_seed(seed)
    return lambda batch: G(torch.randn(batch, z_dim, generator=rng).to(device))


@torch.no_grad()
def generate(
    G: Callable[[Tensor], Tensor], z_dim: int, n: int, seed: int, device: torch.device
) -> Tensor:
    """n images [n, 1, 28, 28] in [-1, 1] on the CPU, from z ~ N(0, I) seeded by ``seed``."""
    draw = sample_fn(G, z_dim, device, seed)
    return torch.cat([draw(min(BATCH, n - start)).cpu() for start in range(0, n, BATCH)])


def save_samples(images: Tensor, out: Path, nrow: int) -> None:
    """``.png``: one grid, nrow images per row; ``.npz``: uint8 [n, 28, 28] under "images"."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".png":
        save_image(images, out, nrow=nrow, normalize=True, value_range=(-1, 1))
    else:
        np.savez_compressed(out, images=to_uint8(images)[:, 0].numpy())
