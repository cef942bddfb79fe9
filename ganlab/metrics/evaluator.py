"""``Evaluator``: every metric of a generator against real images, real features cached once.

Built once per run; each call draws ``n`` images through a ``generate(batch) -> images``
callable, reads them a batch at a time with two networks (the feature network's features
for FID, KID and PRDC; the label reader's logits for the label metrics) and returns a dict
of floats keyed as ``ganlab.metrics.METRIC_KEYS``. ``real_floor`` gives the same metrics
for a second real set: the best value reachable at that sample size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ganlab.data import warn_once
from ganlab.metrics import METRIC_KEYS
from ganlab.metrics.classifier import MNISTClassifier
from ganlab.metrics.distances import fid, fid_infinity, kid
from ganlab.metrics.labels import classes_covered, label_kl, mnist_score
from ganlab.metrics.manifold import prdc
from ganlab.runtime import to_signed_unit
from ganlab.sampling import Generate

log = logging.getLogger(__name__)


@dataclass
class Embedding:
    """What the metric networks make of a set of images."""

    features: Tensor  # float64 [N, d]: the feature network's FEATURE_LAYER
    logits: Tensor  # float64 [N, 10]: the label reader's

    def head(self, n: int) -> Embedding:
        return Embedding(self.features[:n], self.logits[:n])


def compute_metrics(
    real: Embedding,
    fake: Embedding,
    *,
    k: int = 5,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Every metric of ``fake`` against ``real``, keyed and ordered as ``METRIC_KEYS``."""
    kid_mean, kid_std = kid(real.features, fake.features, kid_subsets, kid_subset_size, seed)
    metrics = {
        "fid": fid(real.features, fake.features),
        "fid_inf": fid_infinity(real.features, fake.features, seed=seed),
        "kid": kid_mean,
        "kid_std": kid_std,
        "mnist_score": mnist_score(fake.logits),
        "classes_covered": classes_covered(fake.logits),
        "label_kl": label_kl(fake.logits, real.logits),
        **prdc(real.features, fake.features, k),
    }
    return {key: metrics[key] for key in METRIC_KEYS}


def serve(images: Tensor) -> Generate:
    """A ``Generate`` that hands out images [N, 1, 28, 28] in order, in [-1, 1]: uint8
    images are rescaled, float images are taken to be in [-1, 1] already."""
    position = 0

    def generate(batch: int) -> Tensor:
        nonlocal position
        x = images[position : position + batch]
        position += batch
        return to_signed_unit(x) if x.dtype == torch.uint8 else x

    return generate


class Evaluator:
    """Metrics of generated images against ``n_samples`` real ones, read by ``reader`` (the
    label reader: logits) and ``features`` (the feature network: ``features(x)``).

    ``n_samples`` real images (a seeded random subset, all of them if there are fewer) are
    embedded once; each call compares as many generated images, because FID's bias and the
    k-NN radii both depend on the sample size: equal sizes keep numbers comparable.
    """

    def __init__(
        self,
        reader: MNISTClassifier,
        features: MNISTClassifier,
        real_images: Tensor,
        n_samples: int = 10_000,
        device: torch.device | str = "cpu",
        *,
        batch_size: int = 1000,
        k: int = 5,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
        seed: int = 0,
    ):
        if n_samples < 2:
            raise ValueError(f"n_samples must be >= 2, got {n_samples}")
        self.device = torch.device(device)
        self.reader = reader.to(self.device).eval()
        self.features = features.to(self.device).eval()
        self.batch_size, self.seed = batch_size, seed
        self.options = {"k": k, "kid_subsets": kid_subsets, "kid_subset_size": kid_subset_size}
        self.n = min(n_samples, len(real_images))
        if self.n < n_samples:
            warn_once(  # once per process: a sweep's jobs would each repeat it
                log,
                f"only {len(real_images):,} real images: metrics use {self.n:,} samples, "
                f"not {n_samples:,}",
            )
        order = torch.randperm(len(real_images), generator=torch.Generator().manual_seed(seed))
        self.real = self.embed(serve(real_images[order[: self.n]]), self.n)

    @torch.no_grad()
    def embed(self, generate: Generate, n: int) -> Embedding:
        """Features and logits of n images drawn from ``generate``, a batch at a time."""
        features, logits = [], []
        for start in range(0, n, self.batch_size):
            batch = min(self.batch_size, n - start)
            x = generate(batch)
            if x.shape != (batch, 1, 28, 28):
                raise ValueError(
                    f"generate({batch}) gave shape {tuple(x.shape)}, expected ({batch}, 1, 28, 28)"
                )
            x = x.to(self.device, torch.float32)
            features.append(self.features.features(x).double())
            logits.append(self.reader(x).double())
        return Embedding(torch.cat(features), torch.cat(logits))

    def __call__(self, generate: Generate, n: int | None = None) -> dict[str, float]:
        """Metrics of n (default ``self.n``, at most that) generated images vs n real ones."""
        n = self.n if n is None else n
        return self.at(generate, (n,))[n]

    def at(self, generate: Generate, sizes: Sequence[int]) -> dict[int, dict[str, float]]:
        """The metrics at each sample size in ``sizes``, from one draw of the largest: at n,
        the first n images drawn against the first n real ones (what a call with that n
        alone would give, since ``generate`` is seeded)."""
        for n in sizes:
            if not 2 <= n <= self.n:
                raise ValueError(f"n must be in [2, {self.n}], got {n}")
        fake = self.embed(generate, max(sizes))
        return {
            n: compute_metrics(self.real.head(n), fake.head(n), seed=self.seed, **self.options)
            for n in sorted(set(sizes))
        }


def real_floor(evaluator: Evaluator, images: Tensor, n: int | None = None) -> dict[str, float]:
    """The metrics of real uint8 images (e.g. training images vs the test split).

    Real against real: the value a perfect generator would get at this sample size, to read
    beside a generator's. Uses min(n, len(images)) of each set (n defaults to evaluator.n).
    """
    wanted = evaluator.n if n is None else min(n, evaluator.n)
    n = min(wanted, len(images))
    if n < wanted:
        log.warning("the real-vs-real floor uses %d images per set, not %d", n, wanted)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(evaluator.seed))
    return evaluator(serve(images[order[:n]]), n)
