"""When a run has diverged: a non-finite loss, or a discriminator whose scores blew up."""

from __future__ import annotations

import math

SCORE_TAGS = ("D/real", "D/fake")


def divergence(means: dict[str, float], max_abs_score: float) -> str | None:
    """Why the interval's mean values show divergence, or None if they look sane.

    ``means`` are averages over a log interval, so a single NaN step anywhere in the
    interval makes its mean NaN: checking at intervals misses nothing.
    """
    for tag, value in means.items():
        if not math.isfinite(value):
            return f"{tag} is {value}"
    for tag in SCORE_TAGS:
        score = abs(means.get(tag, 0.0))
        if score > max_abs_score:
            return f"|{tag}| = {score:.3g} exceeds trainer.max_abs_score={max_abs_score:g}"
    return None
