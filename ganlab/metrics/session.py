"""One evaluation session: classifier → reference sets → Evaluator → floor, built once.

Training (periodic and final evaluations), ``ganlab-eval`` and ``scripts/bench_metrics.py``
all measure through an ``EvaluationSession``, so the three agree on what is compared with
what. Loading the classifier and embedding the real images happen in the constructor: a
problem with them stops a run at once rather than after hours of training.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ganlab.metrics.classifier import load_or_train_classifier
from ganlab.metrics.evaluator import Evaluator, real_floor
from ganlab.metrics.reference import reference_sets
from ganlab.sampling import Generate

log = logging.getLogger(__name__)


class EvaluationSession:
    """Metrics of generated images against up to ``n_samples`` real test images.

    ``floor``: also keep a disjoint real set (training images) for the real-vs-real floor.
    """

    def __init__(
        self,
        data_root: str | Path,
        device: torch.device,
        n_samples: int = 10_000,
        *,
        download: bool = False,
        floor: bool = True,
        seed: int = 0,
    ):
        self.classifier, self.classifier_info = load_or_train_classifier(
            data_root=data_root, device=device, download=download
        )
        self.reference, floor_set = reference_sets(data_root, download)
        self.floor_set = floor_set if floor else None
        self.evaluator = Evaluator(
            self.classifier, self.reference.images, n_samples, device, seed=seed
        )
        self._floors: dict[int, dict[str, float]] = {}

    @property
    def n(self) -> int:
        """The most samples one evaluation can compare (real images embedded)."""
        return self.evaluator.n

    def metrics(self, generate: Generate, n: int | None = None) -> dict[str, float]:
        """Every metric of n images drawn from ``generate`` (default: ``self.n``)."""
        return self.evaluator(generate, n)

    def floor(self, n: int | None = None) -> dict[str, float] | None:
        """The same metrics for real training images at n samples (cached), if kept."""
        if self.floor_set is None:
            return None
        n = self.n if n is None else min(n, self.n)
        if n not in self._floors:
            self._floors[n] = real_floor(self.evaluator, self.floor_set.images, n)
        return self._floors[n]

    def provenance(self, n: int) -> dict[str, Any]:
        """What a number depends on: sample count, real sets, the classifier's hash."""
        return {
            "n_samples": n,
            "reference": self.reference.source,
            "reference_images": len(self.reference),
            "floor_set": self.floor_set.source if self.floor_set is not None else None,
            "classifier_sha256": self.classifier_info["weights_sha256"],
            "classifier_test_accuracy": self.classifier_info.get("test_accuracy"),
        }
