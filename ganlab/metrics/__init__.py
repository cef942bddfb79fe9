"""Sample-quality metrics for MNIST GANs, on the features of ganlab's own MNIST classifier.

Inception-based FID needs weights from the internet and means little on digits, so every
metric here reads the 128-d penultimate features (before their ReLU: dense, full rank) or the
logits of a small CNN that ganlab trains once and caches with the sha256 of its weights
(``ganlab.metrics.classifier``). G never trains on that network: the perceptual auxiliary
term uses another one (``ganlab.backbones``), unless a run asks otherwise and is flagged.

- ``distances``: ``fid``, ``fid_inf`` (FID extrapolated to n = ∞), ``kid`` (float64)
- ``manifold``: ``precision``, ``recall``, ``density``, ``coverage`` (k-NN balls, k = 5)
- ``labels``: ``mnist_score``, ``classes_covered``, ``label_kl`` (the classifier's outputs)
- ``modes``: ``modes_covered``, ``reverse_kl`` (Stacked MNIST's 1,000 modes, per channel)
- ``evaluator``: ``Evaluator`` (real features cached once per run), ``real_floor``
- ``reference``: the real images the metrics compare against
- ``session``: ``EvaluationSession``, all of the above built once (training, CLIs, benchmarks)
- ``audit``: corruption ladders and feature ranks, the checks of the metrics themselves
- ``classifier``, ``training``: ganlab's own networks, trained (augmented), cached and hashed

This module is the registry: the names every evaluation returns, and which way is better.
It imports nothing heavy, so a report can read it without loading a model.
"""

from __future__ import annotations

# Every key an evaluation returns, in display order, and which way is better ("min": lower).
# kid_std is the spread of the KID estimate, not a quality: lower only means a tighter estimate.
DIRECTIONS: dict[str, str] = {
    "fid": "min",
    "fid_inf": "min",
    "kid": "min",
    "kid_std": "min",
    "mnist_score": "max",
    "classes_covered": "max",
    "label_kl": "min",
    "precision": "max",
    "recall": "max",
    "density": "max",
    "coverage": "max",
}
METRIC_KEYS: tuple[str, ...] = tuple(DIRECTIONS)  # what every evaluation returns
# What a class-conditional run's evaluation adds (ganlab.metrics.conditional; its real floor,
# intra_fid_floor, is written beside intra_fid as fid_floor is beside fid).
DIRECTIONS.update({"label_accuracy": "max", "intra_fid": "min"})
# What a Stacked MNIST run's evaluation adds (ganlab.metrics.modes): of the 1,000 modes, how
# many its samples fall in, and the KL of their histogram from the uniform one.
DIRECTIONS.update({"modes_covered": "max", "reverse_kl": "min"})
# The real floors written beside their metrics as ``<metric>_floor``: what real images score
# at the same sample count (informative, never a target; better the way their metric is).
FLOOR_KEYS: tuple[str, ...] = tuple(
    f"{key}_floor" for key in ("fid", "kid", "intra_fid", "modes_covered", "reverse_kl")
)

__all__ = ["DIRECTIONS", "FLOOR_KEYS", "METRIC_KEYS"]
