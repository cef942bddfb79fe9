"""The one place an evaluation is assembled (after stylegan2-ada's ``metric_main``).

``FAMILIES`` is the registry of metric families: each says which generators it applies to
and how it measures one, at each asked sample size, with the real-vs-real floor of its
metrics (which way each metric is better lives in ``ganlab.metrics.DIRECTIONS``).
``evaluate`` takes a generator description (``GeneratorSpec``: the callable and what it
draws) and returns metrics, floors and provenance in one ``Evaluation``. The training run
(periodic and final evaluations, the raw G beside the EMA) and ``ganlab-eval`` both call it,
so a checkpoint re-evaluated later is measured as its run measured it.

- ``features``: every generator; FID, KID, precision/recall/... of its digits (each channel
  of a Stacked MNIST image one digit), floors from real training images at the same n.
- ``modes``: a generator of 3-channel images (Stacked MNIST); ``modes_covered`` and
  ``reverse_kl`` of ``mode_samples`` images, floored by real stacked images.
- ``conditional``: a class-conditional generator; ``label_accuracy`` and ``intra_fid`` of n
  images with balanced labels, ``intra_fid`` floored by real training images per class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ganlab.metrics import FLOOR_KEYS
from ganlab.metrics.conditional import balanced_labels
from ganlab.metrics.modes import per_channel
from ganlab.metrics.session import EvaluationSession
from ganlab.sampling import Generate, generate_labeled, sample_fn


@dataclass(frozen=True)
class GeneratorSpec:
    """What the metrics need to know of a generator: ``generate(z)`` (or ``generate(z, y)``
    when ``n_classes`` > 0) in eval mode, images [B, image_channels, 28, 28] in [-1, 1]."""

    generate: Callable[..., Tensor]
    z_dim: int
    device: torch.device
    n_classes: int = 0
    image_channels: int = 1


@dataclass(frozen=True)
class Request:
    """What one evaluation measures: the sample sizes, the seed of z (and of labels), the
    Stacked MNIST mode count, and ``check``, called before every draw (it raises to stop)."""

    sizes: tuple[int, ...]
    seed: int = 0
    mode_samples: int = 0
    check: Callable[[], None] = lambda: None


Measured = dict[int, tuple[dict[str, float], dict[str, float]]]  # n -> (metrics, floors)


@dataclass(frozen=True)
class Family:
    """One kind of metric: which generators it applies to, and how it measures them."""

    applies: Callable[[GeneratorSpec], bool]
    measure: Callable[[EvaluationSession, GeneratorSpec, Request], Measured]


@dataclass
class Evaluation:
    """Metrics and real floors at each sample size, and what the numbers depend on."""

    metrics: dict[int, dict[str, float]]
    floors: dict[int, dict[str, float]]
    provenance: dict[int, dict[str, Any]] = field(default_factory=dict)

    def with_floors(self, n: int) -> dict[str, float]:
        """The metrics at n with the recorded floors beside them (``fid_floor``...), as
        results.json and the run's results table hold them."""
        floors = {f"{key}_floor": value for key, value in self.floors[n].items()}
        return {**self.metrics[n], **{k: v for k, v in floors.items() if k in FLOOR_KEYS}}


def _guarded(draw: Generate, check: Callable[[], None]) -> Generate:
    def generate(batch: int) -> Tensor:
        check()
        return draw(batch)

    return generate


def _features(session: EvaluationSession, spec: GeneratorSpec, req: Request) -> Measured:
    draw = sample_fn(spec.generate, spec.z_dim, spec.device, req.seed, spec.n_classes)
    digits = per_channel(_guarded(draw, req.check), spec.image_channels)
    by_n = session.metrics_at(digits, req.sizes)
    return {n: (metrics, session.floor(n) or {}) for n, metrics in by_n.items()}


def _modes(session: EvaluationSession, spec: GeneratorSpec, req: Request) -> Measured:
    draw = sample_fn(spec.generate, spec.z_dim, spec.device, req.seed)
    metrics = session.modes(_guarded(draw, req.check), req.mode_samples)
    floors = session.mode_floor(req.mode_samples) or {}
    return {n: (metrics, floors) for n in req.sizes}


def _conditional(session: EvaluationSession, spec: GeneratorSpec, req: Request) -> Measured:
    measured: Measured = {}
    for n in req.sizes:
        labels = balanced_labels(n, req.seed)
        req.check()
        images = generate_labeled(spec.generate, spec.z_dim, labels, req.seed, spec.device)
        metrics = session.conditional()(images, labels)
        floor = metrics.pop("intra_fid_floor", None)
        measured[n] = (metrics, {} if floor is None else {"intra_fid": floor})
    return measured


FAMILIES: dict[str, Family] = {
    "features": Family(lambda spec: True, _features),
    "modes": Family(lambda spec: spec.image_channels > 1, _modes),
    "conditional": Family(lambda spec: spec.n_classes > 0, _conditional),
}


def evaluate(session: EvaluationSession, spec: GeneratorSpec, request: Request) -> Evaluation:
    """Every family that applies to ``spec``, at each of ``request.sizes``."""
    sizes = tuple(dict.fromkeys(request.sizes))  # each size once, in order
    request = dataclasses.replace(request, sizes=sizes)
    metrics: dict[int, dict[str, float]] = {n: {} for n in sizes}
    floors: dict[int, dict[str, float]] = {n: {} for n in sizes}
    for family in FAMILIES.values():
        if family.applies(spec):
            for n, (values, floor) in family.measure(session, spec, request).items():
                metrics[n].update(values)
                floors[n].update(floor)
    return Evaluation(metrics, floors, {n: session.provenance(n) for n in sizes})


__all__ = ["FAMILIES", "Evaluation", "Family", "GeneratorSpec", "Request", "evaluate"]
