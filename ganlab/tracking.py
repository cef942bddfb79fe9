"""TensorBoard logging that keeps the training loop free of host syncs.

Scalars are summed on the device between log intervals; ``write`` reads them back once
(one sync per interval) and writes their means.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid, save_image

SAMPLES_TAG = "samples"


class RunLogger:
    def __init__(self, log_dir: Path, purge_step: int | None = None):
        self.log_dir = log_dir
        self.writer: SummaryWriter | None = None
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, int] = {}
        self.restart(purge_step)

    def restart(self, purge_step: int | None) -> None:
        """(Re)open the event file. ``purge_step``: after a resume or a rollback, TensorBoard
        drops the events at and past this step that an earlier writer left, so the curves
        have no duplicated steps."""
        if self.writer is not None:
            self.writer.close()
        self.writer = SummaryWriter(str(self.log_dir), purge_step=purge_step)
        self.discard()

    def accumulate(self, values: dict[str, Tensor]) -> None:
        for tag, value in values.items():
            value = value.detach().float()
            self._sums[tag] = self._sums[tag] + value if tag in self._sums else value
            self._counts[tag] = self._counts.get(tag, 0) + 1

    def means(self) -> dict[str, float]:
        """Means since the last write, read back to the host (one sync)."""
        if not self._sums:
            return {}
        stacked = torch.stack([self._sums[t] / self._counts[t] for t in self._sums])
        return dict(zip(self._sums, stacked.tolist(), strict=True))

    def write(self, step: int, means: dict[str, float] | None = None) -> dict[str, float]:
        """Write the means since the last write at ``step``, return them and start afresh.

        ``means``: what ``means()`` returned since the last accumulate, to skip a second sync.
        """
        means = self.means() if means is None else means
        for tag, value in means.items():
            self.writer.add_scalar(tag, value, step)
        self.discard()
        return means

    def discard(self) -> None:
        self._sums.clear()
        self._counts.clear()

    def flush(self) -> None:
        self.writer.flush()

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    def images(self, images: Tensor, step: int, png: Path | None = None) -> None:
        """Log a batch in [-1, 1] as one 8-wide grid, to TensorBoard and optionally a PNG."""
        grid = make_grid(images.detach().float().cpu(), nrow=8, normalize=True, value_range=(-1, 1))
        self.writer.add_image(SAMPLES_TAG, grid, step)
        if png is not None:
            png.parent.mkdir(parents=True, exist_ok=True)
            save_image(grid, png)

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        # run_name="." keeps the hparams in this run's folder instead of a timestamped sub-run.
        self.writer.add_hparams(hparams, metrics, run_name=".")

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def flat_hparams(cfg: DictConfig, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The knobs a sweep compares, as TensorBoard HParams wants them (scalars and strings):
    the usual ones, plus every command-line override of this run (its swept keys)."""
    hparams: dict[str, Any] = {
        "loss": cfg.loss.name,
        "model": cfg.model.name,
        "seed": cfg.seed,
        "lr": cfg.optimizer.lr,
        "optimizer": cfg.optimizer.name,
        **(
            {"beta1": cfg.optimizer.betas[0], "beta2": cfg.optimizer.betas[1]}
            if cfg.optimizer.betas is not None
            else {}
        ),
        "penalty": cfg.penalty.name,
        "ema": cfg.trainer.ema,
        "batch_size": cfg.trainer.batch_size,
        "n_critic": cfg.trainer.n_critic,
        "steps": cfg.trainer.steps,
        "z_dim": cfg.model.z_dim,
        "data": cfg.data.name,
    }
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if sep and not key.startswith("hydra"):
            hparams.setdefault(key, _scalar(value))
    return hparams


def _scalar(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def run_overrides() -> list[str]:
    """This job's command-line overrides (empty outside a Hydra run, e.g. under compose)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
