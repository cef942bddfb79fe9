"""Metrics during a training run: built once before the loop, called at evaluation steps."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ganlab.metrics.classifier import load_or_train_classifier
from ganlab.metrics.evaluator import Evaluator, real_floor, sample_fn
from ganlab.metrics.reference import reference_sets

log = logging.getLogger(__name__)


class TrainingEvaluator:
    """Periodic (``n_periodic`` samples) and final (``n_final``, with the floor) evaluations.

    Loading the classifier and embedding the real images happen here, before training, so a
    problem with them stops the run at once rather than after hours of training.
    """

    def __init__(
        self,
        data_root: str,
        download: bool,
        n_final: int,
        n_periodic: int,
        floor: bool,
        device: torch.device,
        seed: int,
    ):
        self.seed = seed
        classifier, self.classifier_info = load_or_train_classifier(
            data_root=data_root, device=device, download=download
        )
        self.reference, self.floor_set = reference_sets(data_root, download)
        self.full = Evaluator(classifier, self.reference.images, n_final, device, seed=seed)
        # Both compare the same real images; the periodic one just embeds fewer of them.
        self.n_periodic = min(n_periodic, self.full.n)
        self.floor_set = self.floor_set if floor else None

    def __call__(
        self, generate: Callable[[Tensor], Tensor], z_dim: int, device: torch.device, final: bool
    ) -> dict[str, Any]:
        """{"metrics": {...}, "evaluation": {...}} ready for results.json."""
        n = self.full.n if final else self.n_periodic
        metrics = self.full(sample_fn(generate, z_dim, device, self.seed), n)
        evaluation = {
            "n_samples": n,
            "reference": self.reference.source,
            "classifier_sha256": self.full.classifier_sha256,
            "classifier_test_accuracy": self.classifier_info.get("test_accuracy"),
        }
        if final and self.floor_set is not None:
            floor = real_floor(self.full, self.floor_set.images)
            metrics["fid_floor"], metrics["kid_floor"] = floor["fid"], floor["kid"]
            evaluation["floor_set"] = self.floor_set.source
        return {"metrics": metrics, "evaluation": evaluation}
