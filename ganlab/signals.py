"""Stopping a run cleanly on SIGINT (Ctrl-C) or SIGTERM (cluster preemption)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class StopRequest:
    """Whether a stop was asked for (true once a SIGINT/SIGTERM arrived), and by which signal."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    def request(self, signum: int) -> None:
        """Keep the first signal: the one the run says it stopped for."""
        if self.signum is None:
            self.signum = signum

    @property
    def name(self) -> str:
        """``SIGINT``, ``SIGTERM``; empty before a stop was asked for."""
        return "" if self.signum is None else signal.Signals(self.signum).name


@contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """Turn the first SIGINT/SIGTERM into a StopRequest that the loop reads after a whole
    step. The run then saves a checkpoint and exits cleanly; a second signal acts as usual.
    """
    received = StopRequest()
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        received.request(signum)
        signal.signal(signum, previous[signum])

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class RunInterrupted(Exception):
    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
