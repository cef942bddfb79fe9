"""Learning-rate schedules: the factor on every optimizer's configured lr, as a function of
how much of the run is done.

``trainer.lr_schedule`` names the decay, ``trainer.lr_warmup`` the fraction of the run over
which the factor first rises linearly from 0 to 1; the decay then runs over the rest:

- ``constant``: 1 (the default; with no warm-up the lr is never touched).
- ``linear``: 1 − p, to 0 at the end (as in BigGAN-style and many GAN codes' linear decay).
- ``cosine``: (1 + cos πp) / 2, to 0 at the end (Loshchilov & Hutter 2017, without restarts).

p is the run's progress after the warm-up, in [0, 1], counted once the update being made is
done (the first warm-up update gets a small lr, not 0; the last update gets the schedule's
end, 0 for linear and cosine). The run's clock is ``trainer.steps``,
or — when ``trainer.cpu_minutes`` is set — whichever budget is the more spent (G steps done
of ``trainer.steps``, CPU seconds of ``60 × cpu_minutes``), so the lr reaches its end where
the run does. Both are carried by checkpoints (the step, the CPU seconds spent), so a resumed
run continues the schedule where it stopped: nothing of the schedule is saved apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": lambda p: 1.0,
    "linear": lambda p: 1.0 - p,
    "cosine": lambda p: 0.5 * (1.0 + math.cos(math.pi * p)),
}


def run_progress(step: int, steps: int, cpu_s: float = 0.0, cpu_minutes: float = 0.0) -> float:
    """The fraction of the run done, in [0, 1]: of ``steps``, or of the CPU budget when one is
    set and is the more spent."""
    done = step / steps
    if cpu_minutes > 0:
        done = max(done, cpu_s / (60.0 * cpu_minutes))
    return min(1.0, max(0.0, done))


@dataclass(frozen=True)
class LrSchedule:
    name: str = "constant"
    warmup: float = 0.0  # fraction of the run, in [0, 1)

    @property
    def active(self) -> bool:
        """Whether the lr ever differs from the configured one."""
        return self.name != "constant" or self.warmup > 0

    def factor(self, progress: float) -> float:
        """The factor on the configured lr at ``progress`` (the run's fraction done)."""
        if progress < self.warmup:
            return progress / self.warmup
        after = (progress - self.warmup) / (1.0 - self.warmup)
        return SCHEDULES[self.name](min(1.0, after))


class ScheduledLr:
    """Optimizers whose lr follows a schedule: ``follow(progress)`` before each update sets
    every param group's lr to its configured value times the schedule's factor. Built only for
    an active schedule (ganlab.build): a constant one leaves the optimizers alone."""

    def __init__(self, schedule: LrSchedule, optimizers: Sequence[torch.optim.Optimizer]):
        self.schedule = schedule
        self.optimizers = list(optimizers)
        # The configured lrs, taken before any checkpoint is loaded (a loaded optimizer holds
        # the lr of the step it was saved at).
        self.base = [[group["lr"] for group in opt.param_groups] for opt in self.optimizers]

    @property
    def compile_blocker(self) -> str:
        """Why a schedule keeps the iteration eager: a compiled step holds its lr fixed."""
        return f"trainer.lr_schedule={self.schedule.name} changes lr every step"

    def follow(self, progress: float) -> None:
        """Set the lr for the next update (``progress``: the run's fraction done once it is
        made)."""
        factor = self.schedule.factor(progress)
        for opt, base in zip(self.optimizers, self.base, strict=True):
            for group, lr in zip(opt.param_groups, base, strict=True):
                group["lr"] = lr * factor


__all__ = ["SCHEDULES", "LrSchedule", "ScheduledLr", "run_progress"]
