r"""Differentiable augmentation of what D sees (DiffAugment, Zhao et al. 2020).

D scores T(x) for real images and T(G(z)) for generated ones, T a random transform drawn
afresh for every image at every update, in both D's and G's update: G's gradient flows back
through T, so G learns to draw x, never T(x), and D, which never sees an image twice the same
way, overfits a small training set (ganlab's 5,000-image offline sample) later. The
penalties score the augmented images too, as in the paper.

Each operation of a policy (``aug.policy``) runs in turn; the paper's three, for images in
[-1, 1]:

    color        brightness  x + (u − ½)                          u ~ U[0, 1] per image
                 saturation  (x − x̄_c)·2u + x̄_c        x̄_c: the mean over channels
                 contrast    (x − x̄)·(u + ½) + x̄        x̄: the mean over the image
    translation  shift by (dy, dx), each an integer in [−r·28, r·28], r = ``translation``
    cutout       erase one square of side c·28 (c = ``cutout``), centre uniform on the image

Saturation changes nothing on one channel (x̄_c = x); it mixes the three digits of a Stacked
MNIST image, as it mixes an RGB image's colours. Where the paper fills the shifted-in border
and the erased square with 0 (mid-grey in [-1, 1]), ganlab fills them with −1, MNIST's
background: a shifted or erased real digit stays an image of the data's kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

BACKGROUND = -1.0  # the value of an empty pixel in ganlab's [-1, 1] images


def _uniform(x: Tensor) -> Tensor:
    """One u ~ U[0, 1] per image, broadcastable over it: [N, 1, 1, 1]."""
    return torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype)


def brightness(x: Tensor, u: Tensor) -> Tensor:
    return x + (u - 0.5)


def saturation(x: Tensor, u: Tensor) -> Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (2 * u) + mean


def contrast(x: Tensor, u: Tensor) -> Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (u + 0.5) + mean


def color(x: Tensor, ratio: float = 0.0) -> Tensor:
    """Brightness, saturation and contrast, each with its own u per image."""
    for op in (brightness, saturation, contrast):
        x = op(x, _uniform(x))
    return x


def translate(x: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
    """x [N, C, H, W] shifted down by dy[n] and right by dx[n] pixels (integer tensors [N],
    |shift| ≤ the image), the uncovered border filled with the background."""
    n, _, h, w = x.shape
    s = max(h, w)
    padded = F.pad(x, [s, s, s, s], value=BACKGROUND)
    # Output pixel (i, j) of image k reads padded pixel (s + i − dy[k], s + j − dx[k]).
    rows = (torch.arange(h, device=x.device) + s - dy[:, None])[:, :, None]  # [N, H, 1]
    cols = (torch.arange(w, device=x.device) + s - dx[:, None])[:, None, :]  # [N, 1, W]
    k = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[k, rows, cols].permute(0, 3, 1, 2)


def translation(x: Tensor, ratio: float) -> Tensor:
    """A random shift of up to round(ratio · size) pixels each way, per image."""
    n, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (n,), device=x.device)
    dx = torch.randint(-sx, sx + 1, (n,), device=x.device)
    return translate(x, dy, dx)


def erase(x: Tensor, top: Tensor, left: Tensor, size: tuple[int, int]) -> Tensor:
    """x with the square of ``size`` (height, width) at (top[n], left[n]) set to the
    background; the parts of a square outside the image are ignored."""
    _, _, h, w = x.shape
    rows = torch.arange(h, device=x.device)[None, :] - top[:, None]  # [N, H]
    cols = torch.arange(w, device=x.device)[None, :] - left[:, None]  # [N, W]
    in_rows = (rows >= 0) & (rows < size[0])
    in_cols = (cols >= 0) & (cols < size[1])
    inside = in_rows[:, None, :, None] & in_cols[:, None, None, :]  # [N, 1, H, W]
    return torch.where(inside, torch.full_like(x, BACKGROUND), x)


def cutout(x: Tensor, ratio: float) -> Tensor:
    """One erased square of side round(ratio · size) per image, its centre uniform over the
    image (so it may hang over an edge), as in the paper's code."""
    n, _, h, w = x.shape
    size = (int(h * ratio + 0.5), int(w * ratio + 0.5))
    # centre in [0, h + (1 − size mod 2)), the paper's range; top-left = centre − size // 2
    cy = torch.randint(0, h + (1 - size[0] % 2), (n,), device=x.device)
    cx = torch.randint(0, w + (1 - size[1] % 2), (n,), device=x.device)
    return erase(x, cy - size[0] // 2, cx - size[1] // 2, size)


@dataclass(frozen=True)
class Operation:
    fn: Callable[[Tensor, float], Tensor]
    param: str | None = None  # the aug config key holding its ratio (None: it takes none)


OPERATIONS: dict[str, Operation] = {
    "color": Operation(color),
    "translation": Operation(translation, "translation"),
    "cutout": Operation(cutout, "cutout"),
}


@dataclass(frozen=True)
class Augment:
    """T: the policy's operations in order, each with its ratio; T(x) for a batch x."""

    policy: tuple[str, ...]
    ratios: dict[str, float]

    def __call__(self, x: Tensor) -> Tensor:
        for name in self.policy:
            op = OPERATIONS[name]
            x = op.fn(x, self.ratios[op.param] if op.param else 0.0)
        return x


def build_augment(policy: Sequence[str], params: Mapping[str, Any]) -> Augment | None:
    """The augmentation of a policy, its ratios read from ``params`` (the aug config) under
    each operation's key; None for an empty policy: D sees the images themselves."""
    if not policy:
        return None
    keys = {OPERATIONS[name].param for name in policy} - {None}
    return Augment(tuple(policy), {key: float(params[key]) for key in keys})
