"""Checkpoints: plain containers of tensors, written atomically, loaded without unpickling code.

``torch.load(weights_only=True)`` refuses anything but tensors, numbers, strings, lists,
tuples and dicts, so the config is stored as a plain dict and RNG states as tensors/lists.
"""

from __future__ import annotations

import logging
import math
import os
import random
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganlab.errors import GanlabError
from ganlab.rundir import CHECKPOINTS_DIR

log = logging.getLogger(__name__)


LAST = "last.pt"
# A finished run's generator alone, kept beside a committed study's records so that a later
# metric can re-score the study without retraining (scripts/slim_runs.py; ganlab-eval reads it)
GENERATOR_FILE = "generator.pt"
GENERATOR_KEYS = ("config", "step", "plugins")  # what it keeps of the training checkpoint
RUN_KEYS = ("G", "D", "opt_G", "opt_D", "step", "d_updates", "rng", "config")
# A training checkpoint's counters: what a run can have reached (10^10 updates is years of
# training; a larger count is a damaged or edited file, which would end or skip a resume).
MAX_COUNT = 10**10
MAX_CPU_S = 10**9  # CPU seconds of training so far ("cpu_s", 31 years): the CPU budget's base


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write to a temp file in the same folder, fsync, then rename over ``path``.

    A crash or a full disk mid-write leaves the previous checkpoint intact: readers see the
    old file or the new one, never half of one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
    except (OSError, RuntimeError) as e:
        # torch.save reports a full disk as RuntimeError("... unexpected pos ..."), not OSError.
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        reason = getattr(e, "strerror", None) or " ".join(str(e).split())[:200]
        if isinstance(e, RuntimeError) and "unexpected pos" in str(e):
            reason = f"the disk is full or the write failed ({reason})"
        raise GanlabError(
            f"cannot write checkpoint {path}: {reason}; the previous checkpoint is intact"
        ) from e


def save_generator(state: dict[str, Any], path: Path) -> None:
    """Write a training checkpoint's generator alone, its floating tensors in float16: the
    EMA G (``G_ema``) when the run kept one, else G, with the run's config and step.

    The loss study's DCGAN (24 channels) takes 0.5 MB (its training checkpoint 4.4 MB): 25 MB
    for the 48 runs of a study. float16 leaves a re-scored FID as it was (32.71 from the
    checkpoint and from this file, 5,000 samples, 2026-12-05; tests/test_ema.py holds the
    images to 1e-2).
    """
    kept = {k: state[k] for k in GENERATOR_KEYS if k in state}
    if isinstance(state.get("G_ema"), dict) and "G" in state["G_ema"]:
        kept["G_ema"] = {"G": _half(state["G_ema"]["G"])}
    else:
        kept["G"] = _half(state["G"])
    save_checkpoint(path, kept)


def _half(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """float tensors to float16 (BatchNorm's integer batch counter stays as it is)."""
    return {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}


def load_checkpoint(
    path: Path | str,
    map_location: str | torch.device = "cpu",
    required: Sequence[str] = (),
) -> dict[str, Any]:
    """Load a file written by ``save_checkpoint``; never executes pickled code.

    ``weights_only=True`` refuses any pickled object other than tensors and plain
    containers, so a crafted file cannot run code here. ``required``: keys it must hold
    (``RUN_KEYS`` for a training checkpoint).
    """
    path = Path(path)
    if not path.is_file():
        raise GanlabError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:  # torch would say nothing ("cannot load ...: ")
        raise GanlabError(f"cannot load checkpoint {path}: empty file (0 bytes)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        # torch's messages run to paragraphs: the first sentence says what is wrong.
        reason = " ".join(str(e).split()).split(". ")[0][:300] or type(e).__name__
        raise GanlabError(f"cannot load checkpoint {path}: {reason}") from e
    missing = [k for k in required if not isinstance(state, dict) or k not in state]
    if missing:
        raise GanlabError(f"{path} is not a ganlab checkpoint (missing {', '.join(missing)})")
    if "step" in required:  # a training checkpoint: its counters decide where a run resumes
        check_counters(state, path)
    return state


def check_counters(state: dict[str, Any], path: Path) -> None:
    """``step`` and ``d_updates`` integers in 0..MAX_COUNT, ``cpu_s`` (when there) a finite
    number of seconds in 0..MAX_CPU_S; else the file is damaged: a GanlabError naming it (a
    resume skips to an older checkpoint). A string, a float step or NaN would break the loop's
    arithmetic, end a run at once, or switch the CPU budget off."""
    for key, bound in (("step", MAX_COUNT), ("d_updates", MAX_COUNT), ("cpu_s", MAX_CPU_S)):
        if key not in state and key == "cpu_s":  # older checkpoints have no CPU seconds
            continue
        value = state.get(key)
        if key == "cpu_s":
            ok = _is_number(value) and math.isfinite(value) and 0 <= value <= bound
            rule = f"a number of seconds in 0..{bound:,}"
        else:
            ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= bound
            rule = f"an integer in 0..{bound:,}"
        if not ok:
            raise GanlabError(
                f"{path} is damaged: its {key} is {value!r}, not {rule}; resume from an older "
                "checkpoint (checkpoints/step_*.pt) or start afresh"
            )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _step_of(path: Path) -> int:
    digits = path.stem.removeprefix("step_")
    return int(digits) if digits.isdigit() else -1


class CheckpointDir:
    """``last.pt`` plus the newest ``keep`` numbered copies (``step_000500.pt``) of a run.

    The numbered copies are separate files, so a damaged ``last.pt`` still leaves an
    older good checkpoint to fall back on.
    """

    def __init__(self, path: Path, keep: int = 2):
        self.path, self.keep = Path(path), keep

    @property
    def last(self) -> Path:
        return self.path / LAST

    def save(self, step: int, state: dict[str, Any]) -> None:
        if self.keep > 0:
            save_checkpoint(self.path / f"step_{step:06d}.pt", state)
            for old in self.numbered()[self.keep :]:
                old.unlink(missing_ok=True)
        save_checkpoint(self.last, state)

    def numbered(self) -> list[Path]:
        """Numbered checkpoints, newest first."""
        return sorted(self.path.glob("step_*.pt"), key=_step_of, reverse=True)

    def load_newest_valid(
        self, map_location: str | torch.device = "cpu"
    ) -> tuple[Path, dict[str, Any]] | None:
        """(path, state) of the newest checkpoint that loads, or None when there is none.

        Damaged files are reported and skipped; if every file is damaged, that is an error.
        """
        candidates = [p for p in (self.last, *self.numbered()) if p.is_file()]
        for path in candidates:  # last.pt is written after the numbered copy: newest first
            try:
                return path, load_checkpoint(path, map_location, RUN_KEYS)
            except GanlabError as e:
                log.warning("skipping a damaged checkpoint: %s", e)
        if candidates:
            raise GanlabError(f"no loadable checkpoint in {self.path}: every file is damaged")
        return None


def rng_state() -> dict[str, Any]:
    """Every RNG a run draws from, as weights_only-loadable values."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [
            np_kind,
            torch.from_numpy(np_keys.astype(np.int64)),
            np_pos,
            np_has_gauss,
            np_gauss,
        ],
        "python": [version, list(py_state), py_gauss],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    # RNG states must be CPU tensors, whatever map_location moved the checkpoint to.
    torch.set_rng_state(state["torch"].cpu())
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, py_state, py_gauss = state["python"]
    random.setstate((version, tuple(py_state), py_gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def locate(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    required: Sequence[str] = RUN_KEYS,
) -> tuple[Path, dict[str, Any]]:
    """(file, state) of a checkpoint file, or of a run dir's newest loadable checkpoint."""
    path = Path(path).expanduser()
    if path.is_dir():
        found = CheckpointDir(path / CHECKPOINTS_DIR).load_newest_valid(map_location)
        if found is None:
            raise GanlabError(
                f"no checkpoint in {path / CHECKPOINTS_DIR}: give a checkpoint file or a run dir"
            )
        return found
    return path, load_checkpoint(path, map_location, required)


def find_resume(
    resume: str | None, out_dir: Path, device: torch.device
) -> tuple[Path, dict[str, Any]] | None:
    """(path, state) to resume from, or None to start fresh.

    ``auto``: the newest loadable checkpoint of this run dir, if any (damaged ones are
    reported and skipped). A directory: the same inside that run dir. A file: exactly it.
    """
    if resume is None:
        return None
    if resume == "auto":
        return CheckpointDir(out_dir / CHECKPOINTS_DIR).load_newest_valid(device)
    return locate(resume, device)
