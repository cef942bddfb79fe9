"""k-NN manifold metrics: precision/recall (Kynkäänniemi et al. 2019), density/coverage
(Naeem et al. 2020), on classifier features.

Each feature set estimates its manifold as the union of balls around its points, each ball
reaching to the point's k-th nearest neighbour in its own set (k = 5). Distances are float64
and computed a block of rows at a time: 10,000 × 10,000 pairs never sit in memory at once.
"""

from __future__ import annotations

import torch
from torch import Tensor

CHUNK = 1000  # rows of the distance matrix at a time: 1000 × 10,000 float64 is 80 MB


def knn_radii(points: Tensor, k: int) -> Tensor:
    """Distance from each point to its k-th nearest neighbour in the same set: ``[N]``."""
    radii = []
    for block in points.split(CHUNK):
        # k + 1 smallest: the point itself is its own nearest neighbour, at distance 0.
        radii.append(torch.cdist(block, points).topk(k + 1, largest=False).values[:, -1])
    return torch.cat(radii)


def prdc(real: Tensor, fake: Tensor, k: int = 5) -> dict[str, float]:
    r"""Precision, recall, density and coverage of ``fake`` [M, d] against ``real`` [N, d].

    With :math:`B(x, r)` the open ball and :math:`r_k(x)` the distance from x to its k-th
    nearest neighbour within x's own set (the authors' ``prdc`` code uses the same strict ``<``):

    .. math::
        \text{precision} = \frac{1}{M} \sum_j \mathbb{1}\big[\exists i:
            f_j \in B(r_i, r_k(r_i))\big] \qquad
        \text{recall} = \frac{1}{N} \sum_i \mathbb{1}\big[\exists j:
            r_i \in B(f_j, r_k(f_j))\big]

        \text{density} = \frac{1}{kM} \sum_j \sum_i \mathbb{1}\big[f_j \in B(r_i, r_k(r_i))\big]
        \qquad
        \text{coverage} = \frac{1}{N} \sum_i \mathbb{1}\big[\min_j \lVert r_i - f_j \rVert
            < r_k(r_i)\big]

    Precision: how many fakes look real; recall: how much of the real manifold the fakes
    reach. Density (unbounded; 1 in expectation when both sets come from one distribution)
    and coverage (in [0, 1]) count real neighbourhoods instead, which makes them robust to
    outliers in either set.
    """
    real, fake = real.double(), fake.double()
    real_radii, fake_radii = knn_radii(real, k), knn_radii(fake, k)  # [N], [M]
    fake_in_real = torch.zeros(fake.shape[0], dtype=torch.long, device=fake.device)  # balls ∋ f_j
    real_in_fake = torch.zeros(real.shape[0], dtype=torch.bool, device=real.device)
    nearest_fake = torch.full_like(real_radii, float("inf"))  # min_j ||r_i - f_j||
    for start in range(0, fake.shape[0], CHUNK):
        block = fake[start : start + CHUNK]
        dist = torch.cdist(block, real)  # [c, N]
        fake_in_real[start : start + CHUNK] = (dist < real_radii).sum(1)
        real_in_fake |= (dist < fake_radii[start : start + CHUNK, None]).any(0)
        nearest_fake = torch.minimum(nearest_fake, dist.min(0).values)
    return {
        "precision": float((fake_in_real > 0).double().mean()),
        "recall": float(real_in_fake.double().mean()),
        "density": float(fake_in_real.sum()) / (k * fake.shape[0]),
        "coverage": float((nearest_fake < real_radii).double().mean()),
    }
