"""Who owns a run folder: one live process at a time, one run per folder, one identity.

- An OS lock (fcntl ``flock``) on the lock file (``.ganlab.lock``) and on the folder itself
  stops a second process from training in a folder that a live process is training in. The
  kernel drops both when the process ends, so a stale file never blocks; the folder's own lock
  holds when the file is deleted during a run (a new file would be a new, unlocked one).
- A folder that holds another run's checkpoints or results is refused, unless the new run
  continues it (``trainer.resume=auto``) or is told to start afresh (``trainer.overwrite=true``,
  which first removes the old run's checkpoints, events, grids and results).
- A resume checks that the checkpoint was made by the same kind of run (``IDENTITY``).
- Temp files a killed process left behind (``.last.pt.*.tmp``) are removed at the start.
- A resume (``trainer.resume=auto``) set an unreadable results.json (a killed write, an edit)
  aside as ``results.json.unreadable``, kept, and continues from the checkpoint, which writes
  a new one; a run that ends before writing one puts the old file back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ganlab.errors import GanlabError, Refused
from ganlab.rundir import (
    CHECKPOINTS_DIR,
    RESULTS_FILE,
    SAMPLES_DIR,
    TB_DIR,
    lookup,
    read_results,
)

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
        aside = _set_aside_unreadable_results(out_dir) if resume == "auto" else None
        try:
            yield
        except BaseException:
            results = out_dir / RESULTS_FILE
            if aside is not None and not results.exists():  # nothing replaced it: put it back
                os.replace(aside, results)
                log.info("put %s back: the run ended before writing a new one", RESULTS_FILE)
            raise


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        import fcntl  # POSIX; elsewhere no lock is taken
    except ImportError:
        yield
        return
    # The file (what other tools and older ganlab versions lock) and the folder itself: a
    # lock on a deleted file guards nothing, the folder's holds while the folder is there.
    with open(path, "a+") as fh, _folder_fd(path.parent) as folder:
        try:
            for fd in (fh.fileno(), folder):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise Refused(
                f"another ganlab process is training in {path.parent} (it holds {path.name}); "
                "wait for it to finish, or choose another folder"
            ) from None
        try:
            yield
        finally:
            for fd in (folder, fh.fileno()):
                fcntl.flock(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def _folder_fd(folder: Path) -> Iterator[int]:
    fd = os.open(folder, os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


def _set_aside_unreadable_results(out_dir: Path) -> Path | None:
    """An unreadable results.json (a killed write, an edit) renamed ``results.json.unreadable``
    (kept: it is the run's record, perhaps repairable) so that the resume can continue from the
    checkpoint and write a new one; its path, or None when the file is readable or absent."""
    try:
        read_results(out_dir)
        return None
    except GanlabError as e:
        reason = str(e)
    path = out_dir / RESULTS_FILE
    aside, n = path.with_name(f"{RESULTS_FILE}.unreadable"), 1
    while aside.exists():  # an earlier one is kept too
        aside, n = path.with_name(f"{RESULTS_FILE}.unreadable.{n}"), n + 1
    try:
        os.replace(path, aside)
    except OSError as e:
        raise GanlabError(f"{reason}; cannot set it aside ({e.strerror or e})") from None
    log.warning(
        "%s; kept as %s: the resumed run continues from its checkpoint and writes a new %s",
        *(reason, aside.name, RESULTS_FILE),
    )
    return aside


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
    config = lookup(config, dotted)
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
