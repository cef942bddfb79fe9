"""Shared fixtures: the real MNIST test split beside the repo, and composed configs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from ganlab.config import config_dir

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"

# Small, fast settings for end-to-end runs on a 2-core CPU.
TINY = [
    "trainer.batch_size=16",
    "trainer.progress=false",
    "model.z_dim=16",
]
TINY_MODEL = {
    "mlp": ["model.generator.hidden=[32,64]", "model.discriminator.hidden=[64,32]"],
    "dcgan": ["model.generator.channels=8", "model.discriminator.channels=8"],
}


@pytest.fixture(scope="session")
def shared_mnist() -> Path:
    if not (SHARED_MNIST / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.fail(f"the shared MNIST test split is missing at {SHARED_MNIST}")
    return SHARED_MNIST


@pytest.fixture
def make_cfg() -> Iterator[Callable[..., DictConfig]]:
    """Compose the real config tree with overrides, as `python -m ganlab.train` would."""

    def _compose(*overrides: str) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
            return compose(config_name="config", overrides=list(overrides))

    yield _compose
    GlobalHydra.instance().clear()


def tiny(model: str = "mlp") -> list[str]:
    return [f"model={model}", *TINY, *TINY_MODEL[model]]
