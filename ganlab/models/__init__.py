"""Generator/discriminator pairs. Each D returns raw scores of shape [N] (no sigmoid), and
exposes ``features(x)`` (its last hidden layer) and ``head`` with ``D(x) = head(features(x))``.
"""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from ganlab.errors import GanlabError


def build_models(model_cfg: DictConfig) -> tuple[nn.Module, nn.Module]:
    """Instantiate ``model.generator`` and ``model.discriminator`` (``_target_`` nodes)."""
    nets = []
    for part in ("generator", "discriminator"):
        try:
            nets.append(instantiate(model_cfg[part]))
        except Exception as e:  # Hydra wraps the constructor's TypeError/ImportError
            raise GanlabError(f"cannot build model.{part}: {_first_line(e)}") from e
    return nets[0], nets[1]


def _first_line(e: Exception) -> str:
    return " ".join(str(e).split())


__all__ = ["build_models"]
