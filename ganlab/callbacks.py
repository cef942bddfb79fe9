"""Hydra callbacks: checks that must happen before Hydra itself touches the disk."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def _make_writable_dir(path: str, key: str) -> None:
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        probe = Path(path) / ".ganlab-write-test"
        probe.touch()
        probe.unlink()
    except OSError as e:
        print(
            f"error: cannot write the output folder {key}={path}: {e.strerror or e}",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


class CheckOutputDir(Callback):
    """Fail with one line when the run or sweep folder cannot be created or written."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _make_writable_dir(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _make_writable_dir(config.hydra.sweep.dir, "hydra.sweep.dir")
