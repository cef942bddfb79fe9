"""How the training iteration runs: eager, or compiled with ``torch.compile``; fp32 or bf16.

``Trainer.iteration`` (n_critic D updates, a G update, the EMA update, both optimizers'
steps) is one function of tensors with static shapes and no host sync. Eager runs it as it
is; ``trainer.compile`` wraps the same function in ``torch.compile``, so both share one code
path and the CPU tests can hold them equal. ``reduce-overhead`` is the mode that replays the
compiled graphs as CUDA graphs on a GPU, where a small GAN step is bound by Python and kernel
launches; on a CPU, where the convolutions dominate, compiling was measured slower (0.64x),
so ``auto`` is eager there.

What cannot be compiled falls back to eager with one log line saying why, never a silent
wrong result: the gradient penalties need a double backward through D, which torch.compile's
AOT autograd does not support (pytorch/pytorch#91469); and if compilation itself fails on the
first iteration, the trainer's state is restored to before it and the iteration reruns eager.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)

# trainer.compile: "off" is eager; the others are torch.compile modes ("default" is its own
# default mode); "auto" resolves per device (resolve_compile).
COMPILE_MODES = ("off", "auto", "default", "reduce-overhead", "max-autotune")
# What auto picks on CUDA: the mode that replays CUDA graphs. Equivalence is verified on the
# CPU (tests/test_execution.py); its GPU speed is measured by scripts/gpu_check.py.
CUDA_AUTO = "reduce-overhead"
AMP_MODES = {"off": None, "bf16": torch.bfloat16}  # trainer.amp -> autocast dtype
# trainer.compile_backend: inductor generates kernels; aot_eager and eager trace the same
# graphs but run them with PyTorch's own kernels (to debug, or where no C++ compiler is).
BACKENDS = ("inductor", "aot_eager", "eager")

Iteration = Callable[[tuple[bool, ...]], list[dict[str, Tensor]]]


def resolve_compile(mode: str, device: torch.device) -> str:
    """``auto``: eager on a CPU (compiling the DCGAN step there was measured 0.64x), the
    CUDA-graph mode on CUDA; any other mode as asked."""
    if mode != "auto":
        return mode
    return CUDA_AUTO if device.type == "cuda" else "off"


def with_amp(iteration: Iteration, amp: str, device: torch.device) -> Iteration:
    """``iteration`` under autocast to ``amp``'s dtype (the forward passes; backward and the
    optimizers follow the dtypes autocast chose, the weights stay fp32)."""
    dtype = AMP_MODES[amp]
    if dtype is None:
        return iteration

    def autocast_iteration(penalty_due: tuple[bool, ...]) -> list[dict[str, Tensor]]:
        with torch.autocast(device.type, dtype=dtype):
            return iteration(penalty_due)

    return autocast_iteration


def compiled(
    iteration: Iteration,
    mode: str,
    backend: str,
    snapshot: Callable[[], Any],
    restore: Callable[[Any], None],
) -> Iteration:
    """``torch.compile(iteration)`` in ``mode``, guarded: if compiling fails on the first
    call, ``restore(snapshot())`` undoes whatever that call had done (graphs before a graph
    break may have run) and the run goes on eager, with one log line naming the failure."""
    options: dict[str, Any] = {"backend": backend}
    if backend == "inductor" and mode != "default":
        options["mode"] = mode
    torch._dynamo.reset()  # one trainer at a time: a sweep's earlier jobs hold no cache slots
    fast = torch.compile(iteration, **options)
    current: Iteration | None = None  # None until the first call has compiled

    def run(penalty_due: tuple[bool, ...]) -> list[dict[str, Tensor]]:
        nonlocal current
        if current is not None:
            return current(penalty_due)
        saved = snapshot()
        try:
            logs = fast(penalty_due)
            current = fast
            return logs
        except Exception as e:  # noqa: BLE001 - any compiler failure: undo, then run eager
            reason = " ".join(str(e).split())[:200] or type(e).__name__
            log.warning("trainer.compile=%s failed (%s): running eager", mode, reason)
            restore(saved)
            current = iteration
            return iteration(penalty_due)

    return run


def weights_apart(a: Iterable[Tensor], b: Iterable[Tensor], tol: float) -> float:
    """The share of the weights that differ between two runs by more than ``tol``: how the
    tests and scripts/gpu_check.py compare a compiled run with an eager one (Adam turns
    rounding-level differences of near-zero gradients into lr-sized steps, so a norm of the
    difference would be dominated by those few weights)."""
    apart = torch.cat(
        [(p.detach() - q.detach()).abs().flatten() > tol for p, q in zip(a, b, strict=True)]
    )
    return apart.float().mean().item()


__all__ = [
    "AMP_MODES",
    "BACKENDS",
    "COMPILE_MODES",
    "compiled",
    "resolve_compile",
    "weights_apart",
    "with_amp",
]
