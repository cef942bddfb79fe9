"""Metrics on the classifier's outputs: MNIST score, classes covered, label KL.

All take logits ``[N, 10]`` and work in float64 log space, so a classifier that is certain
(probabilities that underflow to 0) still gives finite numbers.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ganlab.digits import N_CLASSES

COVERED_FRACTION = 0.01  # a class counts as covered from 1 % of the samples
LABEL_KL_EPS = 1e-6  # floor on p_real(y): a class real data never shows costs log(1/eps), not ∞


def mnist_score(logits: Tensor) -> float:
    r"""The Inception Score on MNIST: :math:`\exp\big(\mathbb{E}_x\,
    \mathrm{KL}(p(y \mid x) \,\Vert\, p(y))\big)`, with :math:`p(y) = \mathbb{E}_x\, p(y \mid x)`.

    One split over all samples. It lies in [1, 10]: 1 when every sample gets the same label
    distribution (e.g. one class), 10 when each sample is confidently one class and the
    classes are balanced.
    """
    log_p = torch.log_softmax(logits.double(), dim=1)  # log p(y|x), [N, 10]
    log_marginal = torch.logsumexp(log_p, dim=0) - math.log(log_p.shape[0])  # log p(y), [10]
    kl = (log_p.exp() * (log_p - log_marginal)).sum(1)  # [N]
    return float(kl.mean().exp())


def class_histogram(logits: Tensor) -> Tensor:
    """Fraction of samples whose most likely class is y: float64 ``[10]``, sums to 1."""
    counts = torch.bincount(logits.argmax(1), minlength=N_CLASSES).double()
    return counts / counts.sum()


def classes_covered(logits: Tensor) -> int:
    """Number of classes that are the argmax of at least 1 % of the samples (0 to 10)."""
    return int((class_histogram(logits) >= COVERED_FRACTION).sum())


def label_kl(fake_logits: Tensor, real_logits: Tensor) -> float:
    r""":math:`\mathrm{KL}(p_\text{gen}(y) \,\Vert\, p_\text{real}(y))
    = \sum_y p_\text{gen}(y) \log \frac{p_\text{gen}(y)}{\max(p_\text{real}(y), \epsilon)}`.

    Both histograms are of the classifier's argmax labels (real ones too, so that its few
    mistakes cancel); :math:`\epsilon = 10^{-6}`; terms with :math:`p_\text{gen}(y) = 0` are 0.
    0 for a generator with MNIST's class balance; log(1 / 0.1135) ≈ 2.18 for one that only
    draws "1"s.
    """
    p_gen, p_real = class_histogram(fake_logits), class_histogram(real_logits)
    return float((torch.xlogy(p_gen, p_gen) - p_gen * p_real.clamp(min=LABEL_KL_EPS).log()).sum())
