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

``evaluate_images`` measures a fixed set of images (``ganlab-eval --images``: another
project's samples, a real subset) through the same families, as a generator that hands them
out in order, and with their labels the conditional family's metrics of those labels.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ganlab.digits import N_CLASSES
from ganlab.metrics import FLOOR_KEYS
from ganlab.metrics.conditional import balanced_labels, label_accuracy
from ganlab.metrics.evaluator import serve
from ganlab.metrics.modes import per_channel
from ganlab.metrics.session import EvaluationSession
from ganlab.sampling import Generate, generate_labeled, sample_fn

log = logging.getLogger(__name__)


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
        measured[n] = _labelled(session, images, labels)
    return measured


def _labelled(
    session: EvaluationSession, images: Tensor, labels: Tensor
) -> tuple[dict[str, float], dict[str, float]]:
    """``label_accuracy`` and ``intra_fid`` (with its floor) of images [n, 1, 28, 28] asked to
    be ``labels`` [n]; ``label_accuracy`` alone when a class has fewer than 2 images (a subset
    of the digits), as intra-class FID needs two of each."""
    counts = torch.bincount(labels.cpu(), minlength=N_CLASSES)
    if (counts < 2).any():
        few = ", ".join(str(c) for c in (counts < 2).nonzero().flatten().tolist())
        log.warning("no intra_fid: digit(s) %s have fewer than 2 labelled images", few)
        logits = session.evaluator.embed(serve(images), len(images)).logits
        return {"label_accuracy": label_accuracy(logits, labels)}, {}
    metrics = session.conditional()(images, labels)
    floor = metrics.pop("intra_fid_floor", None)
    return metrics, {} if floor is None else {"intra_fid": floor}


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


def _replay(images: Tensor) -> GeneratorSpec:
    """A "generator" that hands out ``images`` in order whatever z it is given: each family
    gets a fresh one, so each reads the set from its first image, as it would draw a
    generator's from its seed."""
    position = 0

    def generate(z: Tensor) -> Tensor:
        nonlocal position
        batch = images[position : position + len(z)]
        position += len(z)
        return batch

    return GeneratorSpec(generate, 1, torch.device("cpu"), 0, images.shape[1])


def evaluate_images(
    session: EvaluationSession, images: Tensor, labels: Tensor | None = None, seed: int = 0
) -> tuple[int, Evaluation]:
    """A fixed set of images [m, C, 28, 28] in [-1, 1] measured as a generator's samples: every
    family that applies to images of C channels (the features of n = min(C·m, ``session.n``)
    digits; for Stacked MNIST the modes of all m images), and with ``labels`` [m] the
    conditional family's metrics of the images asked to be those digits. Returns n and the
    evaluation at n."""
    n = min(len(images) * images.shape[1], session.n)
    request = Request((n,), seed, mode_samples=len(images))
    metrics: dict[str, float] = {}
    floors: dict[str, float] = {}
    for family in FAMILIES.values():
        if family.applies(_replay(images)):
            values, floor = family.measure(session, _replay(images), request)[n]
            metrics.update(values)
            floors.update(floor)
    if labels is not None:
        values, floor = _labelled(session, images, labels)
        metrics.update(values)
        floors.update(floor)
    return n, Evaluation({n: metrics}, {n: floors}, {n: session.provenance(n)})


__all__ = [
    "FAMILIES",
    "Evaluation",
    "Family",
    "GeneratorSpec",
    "Request",
    "evaluate",
    "evaluate_images",
]
