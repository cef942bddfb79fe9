"""The one failure policy of ganlab's command-line entry points.

Every console script is wrapped once by ``entry_point``:

- a ``GanlabError`` (the user's input is wrong) prints ``error: <one line>`` on stderr, writes
  the same line into the run's log file when there is one (Hydra's ``train.log``), and exits 2;
- a ``RunInterrupted`` (Ctrl-C, SIGTERM: the run saved a checkpoint first) prints
  ``interrupted: ...`` and exits 128 + the signal number, as shells expect;
- anything else is a bug and keeps its traceback.

In a sweep a job's error must not stop the other jobs: ``record_failure`` marks the job's
results.json ``failed`` with the reason, and the sweep's end (``ganlab.callbacks``) exits
non-zero when any job failed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from ganlab.errors import GanlabError
from ganlab.rundir import update_results
from ganlab.signals import RunInterrupted

P = ParamSpec("P")
T = TypeVar("T")

USER_ERROR = 2


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
            return fn(*args, **kwargs)
        except GanlabError as e:
            report("error", e)
            raise SystemExit(USER_ERROR) from None
        except RunInterrupted as e:
            report("interrupted", e)
            raise SystemExit(128 + e.signum) from None

    return wrapper


def record_failure(run_dir: Path, error: BaseException) -> None:
    """Mark the run's results.json ``failed`` with the reason, when the folder can be written."""
    reason = " ".join(str(error).split())
    with contextlib.suppress(GanlabError, OSError):
        update_results(run_dir, {"status": "failed", "reason": reason})
