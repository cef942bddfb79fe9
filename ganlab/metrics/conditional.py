"""Metrics of class-conditional generators, on ganlab's classifier.

- ``label_accuracy``: the fraction of generated images that the classifier puts in the class
  they were asked for (1.0 for real images with their true labels, ~0.1 for shuffled labels);
- ``intra_fid`` (Miyato & Koyama 2018): the mean over the ten classes of the FID between that
  class's generated images and that class's real test images; ``intra_fid_floor`` the same for
  real training images of each class (what a perfect conditional generator would get).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ganlab.digits import N_CLASSES
from ganlab.metrics.distances import fid
from ganlab.metrics.evaluator import serve


def label_accuracy(logits: Tensor, labels: Tensor) -> float:
    """Fraction of rows whose argmax logit is the asked-for label."""
    return float((logits.argmax(1).cpu() == labels.cpu()).double().mean())


def intra_fid(
    real_features: Tensor, real_labels: Tensor, fake_features: Tensor, fake_labels: Tensor
) -> float:
    """Mean over classes of FID(real features of class c, fake features of class c)."""
    real_labels, fake_labels = real_labels.cpu(), fake_labels.cpu()
    values = []
    for c in range(N_CLASSES):
        r, f = real_features[real_labels == c], fake_features[fake_labels == c]
        if len(r) < 2 or len(f) < 2:
            raise ValueError(f"class {c}: {len(r)} real and {len(f)} generated images; need 2+")
        values.append(fid(r, f))
    return float(sum(values) / len(values))


class ConditionalMetrics:
    """Embeds the real images of a session once (with their labels); each call measures a
    labelled set of generated images [n, 1, 28, 28] in [-1, 1] against them."""

    def __init__(self, session):
        evaluator = session.evaluator
        reference = session.reference
        self.evaluator = evaluator
        self.real = evaluator.embed(serve(reference.images), len(reference))
        self.real_labels = reference.labels
        self.floor = None
        if session.floor_set is not None:
            floor_set = session.floor_set
            embedded = evaluator.embed(serve(floor_set.images), len(floor_set))
            self.floor = intra_fid(
                self.real.features, self.real_labels, embedded.features, floor_set.labels
            )

    def __call__(self, images: Tensor, labels: Tensor) -> dict[str, float]:
        fake = self.evaluator.embed(serve(images), len(images))
        metrics = {
            "label_accuracy": label_accuracy(fake.logits, labels),
            "intra_fid": intra_fid(self.real.features, self.real_labels, fake.features, labels),
        }
        if self.floor is not None:
            metrics["intra_fid_floor"] = self.floor
        return metrics


def balanced_labels(n: int, seed: int = 0) -> Tensor:
    """n labels, as equal a count of each class as n allows, in a seeded random order."""
    labels = torch.arange(n) % N_CLASSES
    return labels[torch.randperm(n, generator=torch.Generator().manual_seed(seed))]
