"""Images from a generator: seeded noise, batches of any size, PNG grids and ``.npz`` files.

The same seed gives the same z on every device (z is drawn on the CPU from its own
generator), and the caller's RNG stream (the one training draws from) is left untouched.
An ``.npz`` is written a batch at a time, so memory stays flat for any number of images.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.utils import make_grid

from ganlab.errors import GanlabError
from ganlab.runtime import to_uint8

GRID_SCALE = 3  # saved grids are enlarged (nearest neighbour) so that digits are readable

Generate = Callable[[int], Tensor]  # batch size -> images [B, C, 28, 28] in [-1, 1]
BATCH = 1000  # images per forward pass: memory stays flat for any n
FORMATS = (".png", ".npz")
# A seed of a run or of a sample draw: NumPy's range (seed_everything seeds NumPy, torch and
# Python; torch.Generator would take up to 2**63 - 1)
SEED_MAX = 2**32 - 1
MAX_SAMPLES = 1_000_000  # images per ganlab-sample call (an .npz of 784 MB)
MAX_GRID = 10_000  # images in one PNG grid (3,000 x 3,000 pixels at nrow=100, x --scale)


def sample_fn(
    G: Callable[..., Tensor],
    z_dim: int,
    device: torch.device | str,
    seed: int = 0,
    n_classes: int = 0,
) -> Generate:
    """A ``Generate`` feeding G with z ~ N(0, I) from its own seeded CPU generator; for a
    class-conditional G (``n_classes`` > 0) also labels drawn uniformly from the same generator.

    Put G in eval mode first (or pass a function that does).
    """
    rng = torch.Generator().manual_seed(seed)

    def draw(batch: int) -> Tensor:
        z = torch.randn(batch, z_dim, generator=rng).to(device)
        if not n_classes:
            return G(z)
        return G(z, torch.randint(n_classes, (batch,), generator=rng).to(device))

    return draw


def class_rows(n_classes: int, per_class: int) -> Tensor:
    """Labels [n_classes · per_class] for a grid with one row per class: 0 0 ... 1 1 ..."""
    return torch.arange(n_classes).repeat_interleave(per_class)


@torch.no_grad()
def generate_labeled(
    G: Callable[..., Tensor], z_dim: int, labels: Tensor, seed: int, device: torch.device
) -> Tensor:
    """Images [n, 1, 28, 28] on the CPU for the given labels [n], z seeded by ``seed``."""
    rng = torch.Generator().manual_seed(seed)
    out = []
    for y in labels.split(BATCH):
        z = torch.randn(len(y), z_dim, generator=rng).to(device)
        out.append(G(z, y.to(device)).cpu())
    return torch.cat(out)


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


def _npz_images(images: Tensor) -> np.ndarray:
    """What an ``.npz`` holds: uint8 [n, 28, 28] of 1-channel images, [n, C, 28, 28] else."""
    pixels = to_uint8(images.cpu())
    return (pixels[:, 0] if pixels.shape[1] == 1 else pixels).numpy()


def save_samples(
    images: Tensor, out: Path, nrow: int, labels: Tensor | None = None, scale: int = GRID_SCALE
) -> None:
    """``.png``: one grid, nrow images per row, each pixel ``scale`` x ``scale`` (3-channel
    images in colour: a digit per channel); ``.npz``: uint8 [n, 28, 28] under "images"
    ([n, 3, 28, 28] for stacked MNIST), and the asked-for digits, int64 [n], under "labels"
    for a conditional generator."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".png":
        grid = make_grid(images.float().cpu(), nrow=nrow, normalize=True, value_range=(-1, 1))
        save_grid_png(grid, out, scale, rgb=images.shape[1] != 1)
    else:
        extra = {} if labels is None else {"labels": labels.cpu().numpy()}
        np.savez_compressed(out, images=_npz_images(images), **extra)


@torch.no_grad()
def stream_npz(draw: Generate, n: int, out: Path) -> None:
    """n images from ``draw`` into ``out`` as ``np.savez_compressed`` would write them (as
    ``save_samples``: uint8 [n, 28, 28] under "images", [n, 3, 28, 28] for stacked MNIST), one
    batch at a time; atomically (a temp file, then a rename)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with (
            zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive,
            archive.open("images.npy", "w", force_zip64=True) as fh,
        ):
            for start in range(0, n, BATCH):
                batch = _npz_images(draw(min(BATCH, n - start)))
                if start == 0:  # the first batch tells the image shape
                    shape = (n, *batch.shape[1:])
                    header = {"descr": "|u1", "fortran_order": False, "shape": shape}
                    np.lib.format.write_array_header_1_0(fh, header)
                fh.write(batch.tobytes())
        os.replace(tmp, out)
    except OSError as e:  # disk full, folder removed meanwhile...
        tmp.unlink(missing_ok=True)
        raise GanlabError(f"cannot write {out}: {e.strerror or e}") from None
    except BaseException:  # Ctrl-C: no half-written file is left behind
        tmp.unlink(missing_ok=True)
        raise


# --- pictures of a run ----------------------------------------------------------------------

PROGRESS_GIF = "progress.gif"  # in the run dir: one frame per saved grid
GIF_FRAME_MS, GIF_LAST_MS = 400, 2000  # each saved grid, and the last one held longer


def save_grid_png(grid: Tensor, path: Path, scale: int = GRID_SCALE, rgb: bool = False) -> None:
    """A grid ([3, H, W] in [0, 1], as make_grid gives it) as a grayscale PNG, or with
    ``rgb`` (a grid of 3-channel images: stacked MNIST, a digit per colour) as an RGB one;
    each pixel a ``scale`` x ``scale`` block."""
    from PIL import Image

    pixels = grid.mul(255).round().clamp(0, 255).to(torch.uint8)
    # make_grid repeats a 1-channel grid three times: one channel is the grayscale image
    pixels = pixels.permute(1, 2, 0).numpy() if rgb else pixels[0].numpy()
    image = Image.fromarray(pixels)  # uint8 [H, W, 3]: mode RGB; [H, W]: mode L
    if scale != 1:
        size = (image.width * scale, image.height * scale)
        image = image.resize(size, Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _frame(png: Path, label: str) -> Any:
    from PIL import Image, ImageDraw

    with Image.open(png) as grid:
        mode = "RGB" if grid.mode == "RGB" else "L"  # stacked MNIST's grids are in colour
        grid = grid.convert(mode)
    frame = Image.new(mode, (grid.width, grid.height + 22), 0)
    frame.paste(grid, (0, 0))
    white = 255 if mode == "L" else (255, 255, 255)
    ImageDraw.Draw(frame).text((6, grid.height + 5), label, fill=white)
    return frame


def write_progress_gif(pngs: Sequence[Path], out: Path) -> Path:
    """One GIF frame per saved grid (``step_000500.png`` ...), in the given order, each
    labelled with its step; looping, the last frame held longer. Written atomically."""
    if not pngs:
        raise ValueError("no grids to animate")
    frames = [_frame(png, _step_label(png)) for png in pngs]
    tmp = out.with_name(f".{out.name}.tmp")
    durations = [GIF_FRAME_MS] * (len(frames) - 1) + [GIF_LAST_MS]
    try:
        frames[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=frames[1:],
            duration=durations,
            loop=0,
        )
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _step_label(png: Path) -> str:
    number = png.stem.rpartition("_")[2]
    return f"step {int(number):,}" if number.isdigit() else png.stem
