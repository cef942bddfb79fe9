"""Small facts every layer shares: the device, the seeds, the pixel scale.

One home each: ``resolve_device`` is the only place a device name becomes a
``torch.device``; ``to_signed_unit`` / ``to_uint8`` are the only uint8 <-> [-1, 1] scaling.
"""

from __future__ import annotations

import logging
import random

import numpy as np
import torch
from torch import Tensor

from ganlab.errors import GanlabError

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:N``...

    A name torch does not know, or a CUDA device this machine lacks, is a GanlabError.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise GanlabError(f"device={name!r} is not a torch device (try auto, cpu, cuda)") from None
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise GanlabError(f"device={name!r}: no such CUDA device here; use device=cpu or auto")
    if device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise GanlabError(f"device={name!r}: ganlab trains on cpu or cuda devices")
    return device


def seed_everything(seed: int) -> None:
    """Python's, NumPy's and torch's (CPU and every CUDA device) global RNGs."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def to_signed_unit(images: Tensor) -> Tensor:
    """uint8 images -> float32 in [-1, 1], the range G produces (x / 127.5 − 1)."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    return images.float().div_(127.5).sub_(1.0)  # .float() made a copy: in place is safe


def to_uint8(images: Tensor) -> Tensor:
    """[-1, 1] -> uint8 0..255, rounded: the inverse of ``to_signed_unit``."""
    return images.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)


def every(step: int, interval: int) -> bool:
    """True on the steps that are multiples of ``interval``; never when it is 0 (off)."""
    return interval > 0 and step % interval == 0
