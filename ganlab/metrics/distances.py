"""Distances between two sets of classifier features: FID and KID, in float64.

Both take features ``[N, d]`` (any float dtype, any device) and compute in float64: FID
subtracts traces of order 10³ to get differences of order 10⁻¹, which float32 cannot hold.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run small dense linear algebra (128 x 128) on one CPU thread: more threads gain nothing
    there, and on a machine whose cores are busy their hand-offs made ``eigh`` 200x slower
    (0.7 s instead of 3 ms)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _sqrtm_psd(matrix: Tensor) -> Tensor:
    """Symmetric square root of a symmetric PSD matrix (eigenvalues clamped at 0)."""
    eigenvalues, vectors = torch.linalg.eigh(matrix)
    return (vectors * eigenvalues.clamp(min=0).sqrt()) @ vectors.T


def fid(real: Tensor, fake: Tensor) -> float:
    r"""Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017).

    .. math::
        \mathrm{FID} = \lVert \mu_r - \mu_f \rVert^2
            + \operatorname{Tr}\big(\Sigma_r + \Sigma_f - 2 (\Sigma_r \Sigma_f)^{1/2}\big)

    with the sample means and unbiased (N − 1) covariances. The trace term is the nuclear
    norm :math:`\lVert \Sigma_r^{1/2} \Sigma_f^{1/2} \rVert_*` (the eigenvalues of
    :math:`\Sigma_r \Sigma_f` are the squared singular values of that product): an SVD keeps
    small singular values accurate, and classifier features have dead ReLU units, i.e.
    singular covariances. On such features this agrees with scipy's ``sqrtm`` and with
    torchmetrics to ~1e-12, and FID(x, x) is ~1e-12; the symmetric form
    :math:`\operatorname{Tr} (\Sigma_r^{1/2} \Sigma_f \Sigma_r^{1/2})^{1/2}` through ``eigvalsh``
    was off by ~1e-6 there.
    """
    real, fake = real.double(), fake.double()
    with one_thread():
        cov_r, cov_f = torch.cov(real.T), torch.cov(fake.T)  # [d, d]
        trace_sqrt = torch.linalg.svdvals(_sqrtm_psd(cov_r) @ _sqrtm_psd(cov_f)).sum()
    mean_term = (real.mean(0) - fake.mean(0)).square().sum()
    return float(mean_term + cov_r.trace() + cov_f.trace() - 2 * trace_sqrt)


def polynomial_kernel(x: Tensor, y: Tensor) -> Tensor:
    r"""KID's kernel :math:`k(x, y) = (x \cdot y / d + 1)^3` for all pairs: ``[n, m]``."""
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_unbiased(x: Tensor, y: Tensor) -> Tensor:
    r"""Unbiased estimate of the squared MMD with the polynomial kernel (Gretton et al. 2012).

    .. math::
        \widehat{\mathrm{MMD}}^2_u = \frac{1}{m(m-1)} \sum_{i \ne j} k(x_i, x_j)
            + \frac{1}{n(n-1)} \sum_{i \ne j} k(y_i, y_j)
            - \frac{2}{mn} \sum_{i, j} k(x_i, y_j)

    Leaving out the diagonals makes its expectation exactly MMD², which is 0 for one
    distribution: single estimates can be negative.
    """
    m, n = x.shape[0], y.shape[0]
    k_xx, k_yy = polynomial_kernel(x, x), polynomial_kernel(y, y)
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return within_x + within_y - 2 * polynomial_kernel(x, y).mean()


def kid(
    real: Tensor, fake: Tensor, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al. 2018): mean and std of ``mmd2_unbiased``.

    Each of ``subsets`` estimates draws ``subset_size`` real and fake features without
    replacement, as the reference implementation does; the std (population, ddof 0) is the
    spread of those estimates. Subsets shrink to the smaller set; when that makes them both
    whole sets, the one estimate is returned with std 0. The draws use their own seeded
    generator: the result is reproducible and the caller's RNG stream is left untouched.
    """
    real, fake = real.double(), fake.double()
    size = min(subset_size, real.shape[0], fake.shape[0])
    if size < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {size}")
    if size == real.shape[0] == fake.shape[0]:
        subsets = 1  # every subset would be the whole of both sets: one estimate, std 0
    generator = torch.Generator().manual_seed(seed)
    estimates = []
    for _ in range(subsets):
        real_idx = torch.randperm(real.shape[0], generator=generator)[:size].to(real.device)
        fake_idx = torch.randperm(fake.shape[0], generator=generator)[:size].to(fake.device)
        estimates.append(mmd2_unbiased(real[real_idx], fake[fake_idx]))
    stacked = torch.stack(estimates)
    return float(stacked.mean()), float(stacked.std(correction=0))


def fid_infinity(
    real: Tensor, fake: Tensor, points: int = 5, smallest: float = 0.2, seed: int = 0
) -> float:
    r"""FID extrapolated to infinitely many samples (Chong & Forsyth 2020): FID is biased
    upwards by about :math:`k / N` at N samples, so fit :math:`\mathrm{FID}_N = a + k / N`
    by least squares over ``points`` sample sizes N from ``smallest`` · n to n (n: the
    smaller set; random subsets of both sets, seeded) and return a, :math:`\mathrm{FID}_\infty`.

    It is an estimate for sizes well above the feature dimension (128): with n = 10,000 the
    sizes run from 2,000 to 10,000. Unlike FID it can come out slightly negative for two sets
    of one distribution.
    """
    real, fake = real.double(), fake.double()
    n = min(real.shape[0], fake.shape[0])
    sizes = sorted(
        {max(2, round(n * (smallest + (1 - smallest) * i / (points - 1)))) for i in range(points)}
    )
    if len(sizes) < 2:
        return fid(real, fake)
    generator = torch.Generator().manual_seed(seed)
    values = []
    for size in sizes:
        r = torch.randperm(real.shape[0], generator=generator)[:size].to(real.device)
        f = torch.randperm(fake.shape[0], generator=generator)[:size].to(fake.device)
        values.append(fid(real[r], fake[f]))
    inverse = torch.tensor([1.0 / s for s in sizes], dtype=torch.float64)
    design = torch.stack([torch.ones_like(inverse), inverse], 1)  # [points, 2]
    solution = torch.linalg.lstsq(design, torch.tensor(values, dtype=torch.float64)[:, None])
    return float(solution.solution[0, 0])
