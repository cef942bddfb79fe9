"""Checks of the metrics themselves: corruption ladders and the rank of the feature space.

A feature space is fit for FID when FID rises monotonically as real images are corrupted a
little more, rung after rung, with gaps between adjacent rungs larger than the spread that
resampling causes, and when its real covariance is not degenerate (dead units, a low rank).
``scripts/bench_metrics.py --compare-features`` measures candidate layers this way and
``tests/test_metrics.py`` holds the chosen one to it.

Each seed splits the real images into two halves: a reference, and images that are corrupted
a little more at each rung and compared with it. Rung 0 (no corruption) is the real-vs-real
floor at that sample size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor
from torchvision.transforms.functional import gaussian_blur

from ganlab.metrics.distances import fid
from ganlab.runtime import to_signed_unit

# kind -> rungs (after rung 0, the clean images): the fraction of all pixels turned white
# (salt: a young GAN's speckle), the fraction of the ink pixels turned background (pepper:
# holes in the strokes), Gaussian noise σ in [-1, 1] units, blur σ in pixels, the number of
# 2-pixel gaps cut across the digit (broken strokes), the side in pixels of an erased square,
# the number of digit classes left out.
LADDERS: dict[str, tuple[float, ...]] = {
    "salt": (0.0025, 0.005, 0.01, 0.02, 0.04),
    "pepper": (0.02, 0.05, 0.1, 0.2, 0.4),
    "noise": (0.05, 0.1, 0.2, 0.4, 0.8),
    "blur": (0.5, 0.75, 1.0, 1.5, 2.0),
    "broken": (1, 2, 3, 4, 6),
    "erase": (3, 5, 7, 9, 12),
    "drop": (1, 2, 3, 4),
}
BACKGROUND = -1.0


def corrupt(x: Tensor, kind: str, level: float, generator: torch.Generator) -> Tensor:
    """Images in [-1, 1] with one corruption of strength ``level`` (0: unchanged).

    ``drop`` is not a pixel corruption: see ``ladder_fids``.
    """
    if level == 0 or kind == "drop":
        return x
    if kind == "noise":
        return (x + level * torch.randn(x.shape, generator=generator)).clamp(-1, 1)
    if kind == "blur":
        return gaussian_blur(x, kernel_size=2 * math.ceil(3 * level) + 1, sigma=level)
    if kind == "erase":  # a square of background at a random place over the digit (rows 4-24)
        side = int(level)
        corner = torch.randint(4, 25 - side, (2, x.shape[0], 1), generator=generator)
        pixels = torch.arange(28)
        rows, cols = ((pixels >= c) & (pixels < c + side) for c in corner)  # [N, 28] each
        mask = (rows[:, :, None] & cols[:, None, :])[:, None]  # [N, 1, 28, 28]
        return x.masked_fill(mask, BACKGROUND)
    if kind == "salt":  # a fraction ``level`` of all pixels set to ink (white)
        return torch.where(torch.rand(x.shape, generator=generator) < level, 1.0, x)
    if kind == "pepper":  # a fraction ``level`` of the ink pixels set to background
        holes = (torch.rand(x.shape, generator=generator) < level) & (x > 0)
        return x.masked_fill(holes, BACKGROUND)
    if kind == "broken":
        return x.masked_fill(_gaps(x.shape[0], int(level), generator), BACKGROUND)
    if kind == "saltpepper":  # a fraction ``level`` of the pixels set to ink or background
        u = torch.rand(x.shape, generator=generator)
        return torch.where(u < level / 2, 1.0, torch.where(u < level, BACKGROUND, x))
    raise ValueError(f"unknown corruption {kind!r}; one of {', '.join(LADDERS)}, saltpepper")


def _gaps(n: int, count: int, generator: torch.Generator) -> Tensor:
    """[n, 1, 28, 28] masks of ``count`` straight 2-pixel-wide gaps per image, each at a random
    angle through a random point of the digit's area (rows and columns 8-20): strokes cut
    through, as a G that has not learnt to join them draws them."""
    pixels = torch.arange(28, dtype=torch.float64) + 0.5
    rows, cols = pixels.view(1, 28, 1), pixels.view(1, 1, 28)
    mask = torch.zeros(n, 28, 28, dtype=torch.bool)
    for _ in range(count):
        angle = torch.rand(n, 1, 1, generator=generator, dtype=torch.float64) * math.pi
        centre = 8 + 12 * torch.rand(n, 2, 1, 1, generator=generator, dtype=torch.float64)
        across = (rows - centre[:, 0]) * torch.cos(angle) - (cols - centre[:, 1]) * torch.sin(angle)
        mask |= across.abs() < 1.0
    return mask[:, None]


def effective_rank(features: Tensor) -> float:
    """exp(entropy) of the normalised eigenvalues of the feature covariance (Roy & Vetterli
    2007): the number of equally strong directions it amounts to, from 1 to the dimension."""
    eigenvalues = torch.linalg.eigvalsh(torch.cov(features.double().T)).clamp(min=0)
    p = eigenvalues / eigenvalues.sum()
    return float(torch.exp(-(torch.xlogy(p, p)).sum()))


def numeric_rank(features: Tensor, tolerance: float = 1e-6) -> int:
    """Eigenvalues of the feature covariance above ``tolerance`` times the largest."""
    eigenvalues = torch.linalg.eigvalsh(torch.cov(features.double().T))
    return int((eigenvalues > tolerance * eigenvalues.max()).sum())


def sparsity(features: Tensor) -> tuple[float, int]:
    """(fraction of exact zeros, units never non-zero): what a ReLU leaves."""
    zero = features == 0
    return float(zero.double().mean()), int(zero.all(0).sum())


def separation(values: Tensor) -> dict[str, float | bool]:
    """How well FID tells a ladder's rungs apart, from ``values`` [rungs, seeds].

    ``monotone``: FID rises at every rung in every seed. ``separated``: every rung's lowest
    value (over seeds) is above the previous rung's highest. ``min_z``: the smallest gap
    between adjacent rung means in units of their summed standard deviations (scale-free,
    so feature spaces of any scale compare).
    """
    values = values.double()
    rising = bool((values[1:] > values[:-1]).all())
    separated = bool((values[1:].min(1).values > values[:-1].max(1).values).all())
    mean, sd = values.mean(1), values.std(1)
    z = (mean[1:] - mean[:-1]) / (sd[1:] + sd[:-1]).clamp(min=1e-12)
    return {"monotone": rising, "separated": separated, "min_z": float(z.min())}


Embed = Callable[[Tensor], dict[str, Tensor]]  # images in [-1, 1] -> features by layer name


@torch.no_grad()
def embed_all(embed: Embed, x: Tensor, batch: int = 1000) -> dict[str, Tensor]:
    """``embed`` over x a batch at a time, concatenated, in float64."""
    parts = [embed(chunk) for chunk in x.split(batch)]
    return {name: torch.cat([p[name] for p in parts]).double() for name in parts[0]}


def ladder_fids(
    embed: Embed,
    images: Tensor,
    labels: Tensor,
    ladders: Mapping[str, Sequence[float]],
    n: int,
    seeds: Sequence[int] = (0, 1, 2),
    reference_n: int | None = None,
) -> dict[str, dict[str, Tensor]]:
    """FID of every rung of every ladder, per seed and feature layer:
    ``{kind: {layer: [1 + rungs, seeds]}}``, rung 0 being the clean images.

    Each seed splits the uint8 ``images`` in two random halves: the reference (its first
    ``reference_n``, default all) and n other images, which every pixel ladder corrupts rung
    by rung; ``drop`` = k draws its n images from the second half's images of the classes
    outside the first k of a seeded order instead.
    """
    out: dict[str, dict[str, list[list[float]]]] = {kind: {} for kind in ladders}
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(images), generator=generator)
        reference, other = order[: len(images) // 2], order[len(images) // 2 :]
        real = embed_all(embed, to_signed_unit(images[reference[:reference_n]]))
        clean = other[torch.randperm(len(other), generator=generator)[:n]]
        classes = torch.randperm(10, generator=generator)
        base = to_signed_unit(images[clean])
        clean_features = embed_all(embed, base)  # rung 0 of every ladder
        for kind, levels in ladders.items():
            rungs = [base]
            for level in levels:
                if kind == "drop":
                    pool = other[~torch.isin(labels[other], classes[: int(level)])]
                    if len(pool) < n:
                        raise ValueError(f"drop={level}: {len(pool)} images to draw {n} from")
                    chosen = pool[torch.randperm(len(pool), generator=generator)[:n]]
                    rungs.append(to_signed_unit(images[chosen]))
                else:
                    rungs.append(corrupt(base, kind, level, generator))
            for rung, x in enumerate(rungs):
                fake = clean_features if rung == 0 else embed_all(embed, x)
                for name, features in fake.items():
                    series = out[kind].setdefault(name, [[] for _ in range(len(rungs))])
                    series[rung].append(fid(real[name], features))
    return {
        kind: {name: torch.tensor(v, dtype=torch.float64) for name, v in layers.items()}
        for kind, layers in out.items()
    }
