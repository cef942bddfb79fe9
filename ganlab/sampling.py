"""Images from a generator: seeded noise, batches of any size, PNG grids and ``.npz`` files.

The same seed gives the same z on every device (z is drawn on the CPU from its own
generator), and the caller's RNG stream (the one training draws from) is left untouched.
An ``.npz`` is written a batch at a time, so memory stays flat for any number of images.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchvision.utils import save_image

from ganlab.errors import GanlabError
from ganlab.runtime import to_uint8

Generate = Callable[[int], Tensor]  # batch size -> images [B, 1, 28, 28] in [-1, 1]
BATCH = 1000  # images per forward pass: memory stays flat for any n
FORMATS = (".png", ".npz")
SEED_MAX = 2**63 - 1  # torch.Generator.manual_seed's range
MAX_SAMPLES = 1_000_000  # images per ganlab-sample call (an .npz of 784 MB)
MAX_GRID = 10_000  # images in one PNG grid (3,000 x 3,000 pixels at nrow=100)


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


def check_writable(path: Path, name: str) -> None:
    """Raise GanlabError (naming ``name``, e.g. ``out=grid.png``) unless a file can be
    written at ``path``, its missing folders created: before any work is done for it."""
    try:
        if path.is_dir():
            raise GanlabError(f"{name}: {path} is a folder; give a file name")
        existing = path.parent
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
    except PermissionError:  # a folder on the way cannot even be looked into
        raise GanlabError(f"{name}: cannot write {path} (permission denied)") from None
    if not existing.is_dir():
        raise GanlabError(f"{name}: {existing} is a file, not a folder; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK) or (
        path.exists() and not os.access(path, os.W_OK)
    ):
        raise GanlabError(f"{name}: cannot write {path} (permission denied in {existing})")


def save_samples(images: Tensor, out: Path, nrow: int) -> None:
    """``.png``: one grid, nrow images per row; ``.npz``: uint8 [n, 28, 28] under "images"."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".png":
        save_image(images, out, nrow=nrow, normalize=True, value_range=(-1, 1))
    else:
        np.savez_compressed(out, images=to_uint8(images)[:, 0].numpy())


@torch.no_grad()
def stream_npz(draw: Generate, n: int, out: Path) -> None:
    """n images from ``draw`` into ``out`` as ``np.savez_compressed`` would write them (uint8
    [n, 28, 28] under "images"), one batch at a time; atomically (a temp file, then a rename)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    header = {"descr": "|u1", "fortran_order": False, "shape": (n, 28, 28)}
    try:
        with (
            zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive,
            archive.open("images.npy", "w", force_zip64=True) as fh,
        ):
            np.lib.format.write_array_header_1_0(fh, header)
            for start in range(0, n, BATCH):
                batch = draw(min(BATCH, n - start))
                fh.write(to_uint8(batch.cpu())[:, 0].numpy().tobytes())
        os.replace(tmp, out)
    except OSError as e:  # disk full, folder removed meanwhile...
        tmp.unlink(missing_ok=True)
        raise GanlabError(f"cannot write {out}: {e.strerror or e}") from None
    except BaseException:  # Ctrl-C: no half-written file is left behind
        tmp.unlink(missing_ok=True)
        raise
