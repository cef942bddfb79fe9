"""Who owns a run folder: one live process at a time, one run per folder, one identity.

- A lock file (``.ganlab.lock``, fcntl) stops a second process from training in a folder
  that a live process is training in.
- A folder that holds another run's checkpoints or results is refused, unless the new run
  continues it (``trainer.resume=auto``) or is told to start afresh (``trainer.overwrite=true``,
  which first removes the old run's checkpoints, events, grids and results).
- A resume checks that the checkpoint was made by the same kind of run (``IDENTITY``).
- Temp files a killed process left behind (``.last.pt.*.tmp``) are removed at the start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ganlab.errors import Refused
from ganlab.rundir import CHECKPOINTS_DIR, RESULTS_FILE, SAMPLES_DIR, TB_DIR

log = logging.getLogger(__name__)

LOCK_FILE = ".ganlab.lock"
# What makes a checkpoint loadable into a run: the networks' shapes and the objective.
IDENTITY = (
    "model.name",
    "model.z_dim",
    "model.generator",
    "model.discriminator",
    "cond.name",
    "loss.name",
    # Stacked MNIST's dataset (null for MNIST): a 1-channel checkpoint cannot become a
    # 3-channel run, nor a run continue on other stacked digits
    "data.num_images",
    "data.seed",
)
# Keys added to those sections since checkpoints were first written, and the value their
# absence stood for: a checkpoint without one resumes into a run that sets that value.
ADDED = {"model.discriminator": {"pack": 1}}


@contextlib.contextmanager
def claim_folder(out_dir: Path, resume: str | None, overwrite: bool) -> Iterator[None]:
    """Hold ``out_dir`` for one run: locked, checked (or cleared), stale temp files removed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with _locked(out_dir / LOCK_FILE):
        if holds_a_run(out_dir) and resume != "auto":
            if not overwrite:
                raise Refused(refusal(out_dir))
            _clear(out_dir)
        _remove_stale_temp_files(out_dir)
        yield


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl  # POSIX; elsewhere no lock is taken
    except ImportError:
        yield
        return
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise Refused(
                f"another ganlab process is training in {path.parent} (it holds {path.name}); "
                "wait for it to finish, or choose another folder"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def refusal(out_dir: Path) -> str:
    return (
        f"{out_dir} holds another run's checkpoints or results; continue it with "
        "trainer.resume=auto, start afresh there with trainer.overwrite=true, or "
        "choose another folder (hydra.run.dir=...)"
    )


def holds_a_run(out_dir: Path) -> bool:
    ckpts = out_dir / CHECKPOINTS_DIR
    return (out_dir / RESULTS_FILE).is_file() or any(ckpts.glob("*.pt"))


def _clear(out_dir: Path) -> None:
    """Remove a previous run's outputs (trainer.overwrite=true); Hydra's own files stay."""
    for name in (CHECKPOINTS_DIR, TB_DIR, SAMPLES_DIR):
        shutil.rmtree(out_dir / name, ignore_errors=True)
    (out_dir / RESULTS_FILE).unlink(missing_ok=True)
    log.warning("trainer.overwrite=true: removed the previous run's outputs in %s", out_dir)


def _remove_stale_temp_files(out_dir: Path) -> None:
    stale = [*(out_dir / CHECKPOINTS_DIR).glob(".*.tmp"), *out_dir.glob(f".{RESULTS_FILE}*.tmp")]
    for path in stale:
        with contextlib.suppress(OSError):
            os.remove(path)
    if stale:
        log.info("removed %d temp file(s) left by an interrupted write", len(stale))


def _get(config: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    if isinstance(config, dict):  # ignore keys that choose nothing (an old _target_)
        config = {**ADDED.get(dotted, {}), **{k: v for k, v in config.items() if k != "_target_"}}
    return config


def check_identity(saved: Any, current: dict[str, Any], path: Path) -> None:
    """A checkpoint made by a different kind of run cannot be resumed: say what differs."""
    for key in IDENTITY:
        theirs, ours = _get(saved, key), _get(current, key)
        if theirs != ours:
            raise Refused(
                f"cannot resume from {path}: it was made with {key}={theirs!r}, this run has "
                f"{key}={ours!r}; use the same setting, or start a new run without trainer.resume"
            )
