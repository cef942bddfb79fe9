"""A run's progress: the bar on a terminal, its wall and CPU clocks, its CPU-minute budget.

CPU seconds count every thread of the process (``time.process_time``), over every sitting of
a run: a checkpoint carries what earlier sittings spent (``cpu_before``), so an interrupted
run given ``trainer.cpu_minutes`` gets only what is left of its budget.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch

with warnings.catch_warnings():
    # In a notebook without ipywidgets, importing tqdm.auto (tqdm.contrib imports it too) warns
    # "IProgress not found" and falls back to the text bar: the bar this module uses anyway
    warnings.filterwarnings("ignore", message="IProgress not found")
    from tqdm.contrib.logging import logging_redirect_tqdm

    try:
        import ipywidgets  # noqa: F401  (a notebook's widget bar needs it)
        from tqdm.auto import tqdm
    except ImportError:
        from tqdm.std import tqdm

log = logging.getLogger(__name__)


def budget_reached(cpu_s: float, cpu_minutes: float) -> bool:
    """Whether ``cpu_s`` CPU seconds use up a budget of ``cpu_minutes`` (never when it is 0)."""
    return cpu_minutes > 0 and cpu_s >= 60 * cpu_minutes


class Progress:
    """The loop's clocks and bar. ``start`` opens them for one sitting; ``elapsed`` and
    ``cpu_s`` hold the sitting's wall and CPU seconds once it ends (NaN before)."""

    def __init__(
        self,
        total: int,
        start_step: int,
        cpu_minutes: float,
        cpu_before: float = 0.0,
        show: bool = True,
        desc: str = "",
    ):
        self.total, self.start_step, self.show, self.desc = total, start_step, show, desc
        self.cpu_minutes = cpu_minutes  # 0: no budget
        self.cpu_before = cpu_before  # CPU seconds of the loops of earlier sittings
        self.bar: tqdm | None = None
        now, cpu = time.perf_counter(), time.process_time()
        self.t0 = self.t_log = now  # the sitting's start; the last logged interval's start
        self.cpu0 = cpu
        self.step_log = start_step  # the step at t_log
        self.spent = False  # the budget is used up: the loop's last step
        self.elapsed = self.cpu_s = float("nan")

    @contextmanager
    def start(self, device: torch.device) -> Iterator[None]:
        """The sitting: the bar (on a terminal), the clocks from now, log lines above the bar."""
        self.bar = tqdm(
            total=self.total,
            initial=self.start_step,
            disable=None if self.show else True,
            desc=self.desc,
            dynamic_ncols=True,
        )
        self.t0 = self.t_log = time.perf_counter()
        self.cpu0 = time.process_time()
        try:
            with logging_redirect_tqdm():
                yield
        finally:
            self.bar.close()
            if device.type == "cuda":
                torch.cuda.synchronize()
            self.elapsed = time.perf_counter() - self.t0
            self.cpu_s = time.process_time() - self.cpu0

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def rewind(self, step: int) -> None:
        """After a rollback: the bar and the interval clock back at ``step``."""
        self.step_log = step
        if self.bar is not None:
            self.bar.n = step

    def interval(self, step: int) -> float:
        """G steps per second since the last call (the logged interval), and restart it."""
        now = time.perf_counter()
        rate = (step - self.step_log) / (now - self.t_log)
        self.t_log, self.step_log = now, step
        return rate

    def show_losses(self, loss_d: float, loss_g: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(D=f"{loss_d:.3f}", G=f"{loss_g:.3f}", refresh=False)

    # --- CPU time and the budget --------------------------------------------------------------

    def cpu_spent(self) -> float:
        """CPU seconds of the training loop so far, earlier sittings included."""
        return self.cpu_before + time.process_time() - self.cpu0

    def sitting(self) -> tuple[float, float]:
        """(wall, CPU) seconds of this sitting so far."""
        return time.perf_counter() - self.t0, self.cpu_spent() - self.cpu_before

    def out_of_budget(self, step: int) -> bool:
        """True once the loop has used ``trainer.cpu_minutes`` of CPU time (when set): the
        budget counts the training loop's CPU time (all threads, periodic evaluations
        included) over every sitting of the run, carried by its checkpoints."""
        if budget_reached(self.cpu_spent(), self.cpu_minutes):
            if not self.spent:
                log.info("trainer.cpu_minutes=%g spent at step %d", self.cpu_minutes, step)
            self.spent = True
        return self.spent
