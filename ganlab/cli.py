"""The one failure policy of ganlab's command-line entry points.

Every console script is wrapped once by ``entry_point``:

- a ``GanlabError`` (the user's input is wrong) prints ``error: <one line>`` on stderr, writes
  the same line into the run's log file when there is one (Hydra's ``train.log``), and exits 2;
- a ``RunInterrupted`` (Ctrl-C, SIGTERM: the run saved a checkpoint first) prints
  ``interrupted: ...`` and exits 128 + the signal number, as shells expect;
- a Hydra config error (an unknown key, group option or override syntax) prints the same
  ``error: <one line>`` instead of Hydra's block of lines, and exits 2;
- ``--experimental-rerun`` is refused before Hydra sees it (it unpickles a file);
- anything else is a bug and keeps its traceback.

In a sweep a job's error must not stop the other jobs: ``record_failure`` marks the job's
results.json ``failed`` with the reason, and the sweep's end (``ganlab.callbacks``) exits
non-zero when any job failed.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import ParamSpec, TypeVar

from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

from ganlab.errors import GanlabError
from ganlab.rundir import job_dirname, run_name, update_results
from ganlab.signals import RunInterrupted

P = ParamSpec("P")
T = TypeVar("T")

USER_ERROR = 2
# Hydra prints its own errors (several lines) and exits 1 unless this is "1": then it raises,
# and the entry point says them in one line.
FULL_ERROR = "HYDRA_FULL_ERROR"
RERUN_FLAG = "--experimental-rerun"

# conf/config.yaml names a sweep's job folders ${ganlab.dirname:${hydra.job.override_dirname}}:
# a name past 255 bytes would abort the sweep (ENAMETOOLONG). Registered on import, before any
# config is composed: every entry point (and ganlab.api, through ganlab.train) imports this.
if not OmegaConf.has_resolver("ganlab.dirname"):
    OmegaConf.register_new_resolver("ganlab.dirname", job_dirname)
# ... and a single run's folder ${ganlab.runname:${loss.name},${model.name},<overrides>}.
if not OmegaConf.has_resolver("ganlab.runname"):
    OmegaConf.register_new_resolver("ganlab.runname", run_name)


def to_log_files(message: str, level: int = logging.ERROR) -> None:
    """Write ``message`` to the root logger's file handlers only (the console has it already)."""
    record = logging.LogRecord("ganlab", level, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def report(prefix: str, error: BaseException) -> None:
    """``<prefix>: <message>`` on stderr and in the log files, as one line."""
    line = f"{prefix}: {' '.join(str(error).split())}"
    print(line, file=sys.stderr)
    to_log_files(line)


def entry_point(fn: Callable[P, T]) -> Callable[P, T]:
    """Wrap a CLI's ``main`` with the failure policy above."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            refuse_rerun(sys.argv[1:])
            with _hydra_raises() as owned:
                try:
                    return fn(*args, **kwargs)
                except HydraException as e:
                    if not owned:  # the user set HYDRA_FULL_ERROR=1: the whole traceback
                        raise
                    raise GanlabError(hydra_error_line(e)) from e
        except GanlabError as e:
            report("error", e)
            raise SystemExit(USER_ERROR) from None
        except RunInterrupted as e:
            report("interrupted", e)
            raise SystemExit(128 + e.signum) from None

    return wrapper


def refuse_rerun(argv: list[str]) -> None:
    """Hydra's ``--experimental-rerun FILE`` unpickles FILE, which can run any code; nothing
    read from a run folder may choose code to run, and nothing in ganlab needs the flag."""
    if any(arg == RERUN_FLAG or arg.startswith(f"{RERUN_FLAG}=") for arg in argv):
        raise GanlabError(
            f"{RERUN_FLAG} is refused: it unpickles a file, which can run any code; to run a "
            "run's settings again, pass the overrides in its .hydra/overrides.yaml"
        )


@contextlib.contextmanager
def _hydra_raises() -> Iterator[bool]:
    """Have Hydra raise its errors instead of printing them (and exiting 1), for the call;
    yields whether ganlab set that (not the user), and so may shorten them."""
    if FULL_ERROR in os.environ:
        yield False
        return
    os.environ[FULL_ERROR] = "1"
    try:
        yield True
    finally:
        os.environ.pop(FULL_ERROR, None)


def _first_paragraph(text: str) -> str:
    """The lines of ``text`` before its first blank line, joined by "; "."""
    lines = []
    for line in text.strip().splitlines():
        if not line.strip():
            break
        lines.append(line.strip().rstrip("."))
    return "; ".join(lines)


def hydra_error_line(e: HydraException) -> str:
    """One line for a Hydra config error: the key, what is wrong, what is allowed."""
    cause = e.__cause__
    key = getattr(cause, "full_key", None)
    said = _first_paragraph(str(e))
    if isinstance(cause, ConfigKeyError | ConfigAttributeError) and key:
        # Hydra's advice ("To append to your config use +key=...") would only meet
        # validate's refusal of a key nothing reads: name the key and where keys are listed.
        first = said.split("; ")[0]
        parent, _, leaf = key.rpartition(".")
        siblings = getattr(cause, "parent_node", None)
        known = [str(k) for k in siblings.keys()] if isinstance(siblings, DictConfig) else []
        close = _closest(leaf, known)
        hint = f"; did you mean {parent + '.' if parent else ''}{close}?" if close else ""
        return (
            f"unknown config key {key}{hint} ({first}; check the spelling, or see "
            "python -m ganlab.train --info config)"
        )
    if isinstance(e, MissingConfigException) and e.options:
        asked = re.search(r"Could not find '(?:[^'/]+/)*([^'/]+)'", said)
        close = _closest(asked.group(1), e.options) if asked else None
        hint = f" (did you mean {close!r}?)" if close else ""
        return f"{said}{hint}; the options are {', '.join(e.options)}"
    if cause is not None and str(cause).strip():
        return f"{said}: {str(cause).strip().splitlines()[0]}"
    return said


def _closest(word: str, options: Iterable[str]) -> str | None:
    """The option ``word`` was most likely meant to be (a typo), if one is close enough."""
    matches = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return matches[0] if matches else None


def record_failure(run_dir: Path, error: BaseException) -> None:
    """Mark the run's results.json ``failed`` with the reason, when the folder can be written."""
    reason = " ".join(str(error).split())
    with contextlib.suppress(GanlabError, OSError):
        update_results(run_dir, {"status": "failed", "reason": reason})
