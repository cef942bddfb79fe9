r"""PacGAN packing (Lin et al. 2018): D scores m samples at a time, concatenated along channels.

A packed discriminator sees the joint distribution of m independent samples: a generator that
drops modes makes packs with too many repeats, which D can see in one pack even where it
cannot in one sample (Lin et al.: the packed D's objective is a divergence between the m-fold
products P^m and Q^m, which penalises mode collapse more strongly as m grows).

    pack:  [N, C, H, W]  ->  [N/m, m·C, H, W],   pack p = samples p·m, …, p·m + m − 1

Every loss then sees N/m scores, and the gradient penalties take the packed inputs as their
points (one interpolation weight α and one gradient norm per pack).
"""

from __future__ import annotations

from torch import Tensor


def pack(x: Tensor, m: int) -> Tensor:
    """x [N, C, H, W] as [N/m, m·C, H, W]: consecutive samples concatenated along channels
    (a view of a contiguous batch, no copy); x itself when m = 1. N must be a multiple of m."""
    if m == 1:
        return x
    n, c = x.shape[:2]
    if n % m:
        raise ValueError(f"cannot pack {n} samples in packs of {m}")
    return x.reshape(n // m, m * c, *x.shape[2:])
