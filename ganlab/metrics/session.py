"""One evaluation session: metric networks → reference sets → Evaluator → floor, built once.

Training (periodic and final evaluations), ``ganlab-eval`` and ``scripts/bench_metrics.py``
all measure through an ``EvaluationSession``, so the three agree on what is compared with
what. Loading the classifier and embedding the real images happen in the constructor: a
problem with them stops a run at once rather than after hours of training.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganlab.metrics.classifier import (
    ARCH,
    FEATURE_LAYER,
    FEATURES,
    load_or_train,
    load_or_train_classifier,
    weights_sha256,
)
from ganlab.metrics.conditional import ConditionalMetrics
from ganlab.metrics.evaluator import Evaluator, real_floor, serve
from ganlab.metrics.modes import mode_metrics
from ganlab.metrics.reference import reference_sets
from ganlab.sampling import Generate
from ganlab.stacked import stack_digits

log = logging.getLogger(__name__)

METRIC_BACKBONE_WARNING = (
    "G was trained with a metric network as its perceptual backbone "
    "(aux_params.allow_metric_backbone=true): it matched the very features its metrics are "
    "measured in, so these numbers are biased in its favour and not comparable with other runs'"
)


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
        self.features, self.features_info = load_or_train(
            FEATURES, data_root=data_root, device=device, download=download
        )
        log.info(
            "metrics: label reader %s (%.2f%% on %s), feature network %s (trained on %s)",
            self.classifier_info["weights_sha256"][:12],
            100 * self.classifier_info["test_accuracy"],
            self.classifier_info["test_source"],
            self.features_info["weights_sha256"][:12],
            self.features_info["train_source"],
        )
        self.reference, floor_set = reference_sets(data_root, download)
        self.floor_set = floor_set if floor else None
        self.evaluator = Evaluator(
            self.classifier, self.features, self.reference.images, n_samples, device, seed=seed
        )
        self._floors: dict[int, dict[str, float]] = {}
        self._mode_floors: dict[int, dict[str, float]] = {}
        self._conditional: ConditionalMetrics | None = None  # built when first asked for

    @property
    def n(self) -> int:
        """The most samples one evaluation can compare (real images embedded)."""
        return self.evaluator.n

    def metrics(self, generate: Generate, n: int | None = None) -> dict[str, float]:
        """Every metric of n images drawn from ``generate`` (default: ``self.n``)."""
        return self.evaluator(generate, n)

    def metrics_at(self, generate: Generate, sizes: Sequence[int]) -> dict[int, dict[str, float]]:
        """Every metric at each sample size, from one draw (``Evaluator.at``)."""
        return self.evaluator.at(generate, sizes)

    def modes(self, generate: Generate, n: int) -> dict[str, float]:
        """``modes_covered`` and ``reverse_kl`` of n Stacked MNIST images from ``generate``
        (``ganlab.metrics.modes``), each channel read by the session's classifier."""
        return mode_metrics(self.evaluator, generate, n)

    def mode_floor(self, n: int) -> dict[str, float] | None:
        """``modes`` of n real Stacked MNIST images (cached), if the floor set is kept: each
        channel a digit of the floor set drawn independently (``stack_digits``, seed 0), read
        by the classifier as G's channels are. What a perfect G would score with n samples:
        the sampling noise of n draws over 1,000 modes plus the classifier's errors."""
        if self.floor_set is None:
            return None
        if n not in self._mode_floors:
            images, _ = stack_digits(self.floor_set.images, self.floor_set.labels, n, seed=0)
            self._mode_floors[n] = mode_metrics(self.evaluator, serve(images), n)
        return self._mode_floors[n]

    def conditional(self) -> ConditionalMetrics:
        """The class-conditional metrics against this session's labelled real images
        (``ganlab.metrics.conditional``), embedded once, at the first call."""
        if self._conditional is None:
            self._conditional = ConditionalMetrics(self)
        return self._conditional

    def floor(self, n: int | None = None) -> dict[str, float] | None:
        """The same metrics for real training images at n samples (cached), if kept."""
        if self.floor_set is None:
            return None
        n = self.n if n is None else min(n, self.n)
        if n not in self._floors:
            self._floors[n] = real_floor(self.evaluator, self.floor_set.images, n)
        return self._floors[n]

    def backbone_check(self, net: nn.Module | None) -> dict[str, Any]:
        """What results.json's ``evaluation`` records of G's perceptual backbone: its sha256
        and ``metric_backbone_used``, whether it has the weights of a metric network (the
        label reader's or the feature network's; by hash, not by name). When it does, every
        metric of the run is suspect, and ``warning`` says why."""
        if net is None:
            return {"metric_backbone_used": False}
        sha = weights_sha256(net)
        used = sha in (self.classifier_info["weights_sha256"], self.features_info["weights_sha256"])
        return {
            "metric_backbone_used": used,
            "perceptual_backbone_sha256": sha,
            **({"warning": METRIC_BACKBONE_WARNING} if used else {}),
        }

    def provenance(self, n: int) -> dict[str, Any]:
        """What a number depends on: sample count, real sets, the classifier's hash."""
        return {
            "n_samples": n,
            "reference": self.reference.source,
            "reference_images": len(self.reference),
            "floor_set": self.floor_set.source if self.floor_set is not None else None,
            # the floor's n: n, or all the floor set has (5,000 offline, for n = 10,000)
            "floor_samples": min(n, len(self.floor_set)) if self.floor_set is not None else None,
            "classifier_sha256": self.classifier_info["weights_sha256"],
            "classifier_test_accuracy": self.classifier_info.get("test_accuracy"),
            "classifier_arch": self.classifier_info.get("arch", ARCH),
            "feature_network_sha256": self.features_info["weights_sha256"],
            "feature_network_arch": self.features_info["arch"],
            "features": FEATURE_LAYER,
        }
