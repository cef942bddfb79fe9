"""Small facts every layer shares: the device, the seeds, the pixel scale.

One home each: ``resolve_device`` is the only place a device name becomes a
``torch.device``; ``to_signed_unit`` / ``to_uint8`` are the only uint8 <-> [-1, 1] scaling.
"""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch
from torch import Tensor

from ganlab.errors import GanlabError

log = logging.getLogger(__name__)

DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")  # the torch device types ganlab accepts


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:N``...

    A name torch does not know, or a device this machine lacks (a CUDA index past its GPUs,
    ``mps`` without Apple's backend, ``cpu:5``), is a GanlabError.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise GanlabError(f"device={name!r} is not a torch device (try auto, cpu, cuda)") from None
    if device.type not in DEVICE_TYPES:
        raise GanlabError(f"device={name!r}: ganlab trains on cpu or cuda devices")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise GanlabError(f"device={name!r}: no such CUDA device here; use device=cpu or auto")
    # torch accepts these names and fails later, deep in a tensor op: say it here.
    if device.type in ("mps", "xpu") and not _backend_available(device.type):
        raise GanlabError(
            f"device={name!r}: this machine (or this torch build) has no {device.type} "
            "backend; use device=auto, cpu or cuda"
        )
    if device.type in ("cpu", "mps") and (device.index or 0) != 0:
        raise GanlabError(
            f"device={name!r}: there is one {device.type} device (index 0); use device="
            f"{device.type}"
        )
    return device


def _backend_available(kind: str) -> bool:
    backend = torch.backends.mps if kind == "mps" else getattr(torch, "xpu", None)
    return backend is not None and backend.is_available()


def available_memory(device: torch.device) -> int | None:
    """Bytes a new allocation can take on ``device`` now (None when unknown): free CUDA
    memory, or the host's available RAM (Linux's MemAvailable, else its physical pages)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX
        return None


def check_memory(device: torch.device, needed: int, what: str) -> None:
    """GanlabError when ``needed`` bytes (a lower bound of what ``what`` allocates) exceed
    what ``device`` has free: one line now, instead of the allocator's traceback later."""
    free = available_memory(device)
    if free is not None and needed > free:
        raise GanlabError(
            f"{what} needs at least {_gb(needed)} on {device}, more than the {_gb(free)} "
            "available; use a smaller value"
        )


def _gb(n: int) -> str:
    return f"{n / 1e9:,.1f} GB"


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
