r"""Mode coverage of a Stacked MNIST generator (Metz et al. 2017; Srivastava et al. 2017).

Each channel of a generated [3, 28, 28] image is read by ganlab's metrics classifier (the
argmax of its logits); its three digits are its mode, 100·d₀ + 10·d₁ + d₂
(``ganlab.stacked.mode_ids``). Over n samples (the papers count n = 26,000,
``metrics.mode_samples``), with p_k the fraction of samples in mode k:

- ``modes_covered``: the number of the K = 1,000 modes holding at least one sample. For n
  samples drawn uniformly its expectation is K·(1 − (1 − 1/K)ⁿ) (≈ 1,000 at n = 26,000);
- ``reverse_kl``: KL(p_gen ‖ U) = Σ_k p_k log(K·p_k) in nats, U uniform over the K modes
  (terms with p_k = 0 are 0): 0 for a uniform histogram, log K ≈ 6.908 when every sample
  falls in one mode (the papers' "KL", of the generator's modes from the uniform data).

The classifier's mistakes move samples between modes, so real Stacked MNIST reads slightly
below K modes and above 0 nats; both papers measure the same way (a pretrained classifier).

``per_channel`` turns a Stacked MNIST generator into one of single digits (channel c of sample
i is digit C·i + c): that is how a 3-channel run's fid, kid, mnist_score, precision... are
measured, each of its 3n channels against the real test digits as for a 1-channel run. Those
numbers say how good the digits are, channel by channel; they do not see which digits are
stacked together, i.e. joint mode coverage, which is what ``modes_covered`` and ``reverse_kl``
measure.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ganlab.metrics.evaluator import Evaluator
from ganlab.sampling import Generate
from ganlab.stacked import CHANNELS, N_MODES, mode_ids


def mode_histogram(modes: Tensor, n_modes: int = N_MODES) -> Tensor:
    """Fraction of samples in each mode: float64 [n_modes], sums to 1."""
    counts = torch.bincount(modes.cpu(), minlength=n_modes).double()
    return counts / counts.sum()


def modes_covered(modes: Tensor, n_modes: int = N_MODES) -> int:
    """Number of modes (0 .. n_modes − 1) that at least one of ``modes`` [n] falls in."""
    return int((mode_histogram(modes, n_modes) > 0).sum())


def reverse_kl(modes: Tensor, n_modes: int = N_MODES) -> float:
    """KL(p_gen ‖ uniform over n_modes) = Σ_k p_k log(n_modes · p_k), nats, from modes [n]."""
    p = mode_histogram(modes, n_modes)
    return float((torch.xlogy(p, p) + p * math.log(n_modes)).sum())


def per_channel(generate: Generate, channels: int = CHANNELS) -> Generate:
    """A ``Generate`` of single digits [B, 1, 28, 28] from one of images [B', C, 28, 28]: the
    channels of each image in turn (image i's channel c is digit C·i + c), drawing as many
    images as each batch needs and keeping the channels left over for the next batch.
    ``generate`` itself when C = 1 (its images are digits already)."""
    if channels == 1:
        return generate
    left: list[Tensor] = []  # digits drawn but not handed out yet, [k, 1, 28, 28], k < C

    def draw(batch: int) -> Tensor:
        have = sum(len(x) for x in left)
        if have < batch:
            images = generate(-(-(batch - have) // channels))  # ceil: whole images
            left.append(images.reshape(-1, 1, *images.shape[2:]))
        digits = torch.cat(left)
        left[:] = [digits[batch:]]
        return digits[:batch]

    return draw


def mode_metrics(
    evaluator: Evaluator, generate: Generate, n: int, channels: int = CHANNELS
) -> dict[str, float]:
    """``modes_covered`` and ``reverse_kl`` of n images from ``generate`` [B, C, 28, 28], each
    channel classified by the evaluator's classifier (the argmax of its logits)."""
    logits = evaluator.embed(per_channel(generate, channels), n * channels).logits
    modes = mode_ids(logits.argmax(1).view(n, channels))
    return {"modes_covered": modes_covered(modes), "reverse_kl": reverse_kl(modes)}
