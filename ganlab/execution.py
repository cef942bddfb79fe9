"""How the training iteration runs: eager or compiled; fp32 or bf16; contiguous or NHWC.

``Trainer.iteration`` (n_critic D updates, a G update, the EMA update, both optimizers'
steps) is a function of tensors with static shapes and no host sync. Eager runs it as it
is; ``trainer.compile`` runs the same function with its two updates (``d_update``,
``g_update``) under ``torch.compile``, so both share one code path and the CPU tests can hold
them equal. ``reduce-overhead`` is the mode that replays the compiled graphs as CUDA graphs
on a GPU, where a small GAN step is bound by Python and kernel launches; on a CPU, where the
convolutions dominate, compiling was measured slower (0.64x), so ``auto`` is eager there,
and on CUDA it is eager until a GPU record verifies a compiled mode (``CUDA_AUTO``).

What cannot be compiled falls back to eager with one log line saying why, never a silent
wrong result: the gradient penalties need a double backward through D, which torch.compile's
AOT autograd does not support (pytorch/pytorch#91469); and if compiling, recording or first
replaying fails in one of the first iterations, the trainer's state is restored to before
that iteration and it reruns eager.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

log = logging.getLogger(__name__)

# trainer.compile: "off" is eager; the others are torch.compile modes ("default" is its own
# default mode); "auto" resolves per device (resolve_compile).
COMPILE_MODES = ("off", "auto", "default", "reduce-overhead", "max-autotune")
# What auto picks on CUDA, and the GPU record that decided it. Eager until a committed record
# of scripts/gpu_check.py (docs/gpu/) shows a compiled mode learning like eager, equal to it
# over replayed iterations, and faster; tests/test_gpu_check.py holds these two constants to
# the newest record's verdict, so they cannot drift apart.
CUDA_AUTO = "reduce-overhead"
CUDA_AUTO_RECORD: str | None = "docs/gpu/gpu_check_h200_2026-12-04.json"
# The inductor modes that replay the compiled graphs as CUDA graphs on a GPU.
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")
# Calls of a compiled iteration after which a failure is no longer caught: the first compiles,
# the second records the CUDA graphs, the third replays them.
GUARDED_CALLS = 3
AMP_MODES = {"off": None, "bf16": torch.bfloat16}  # trainer.amp -> autocast dtype
AMP_CHOICES = ("auto", *AMP_MODES)  # trainer.amp's values; auto resolves per device (resolve_amp)
# trainer.memory_format -> how the models' 4-D weights, and so the convolutions' activations,
# lie in memory; auto resolves per device (resolve_memory_format)
MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
MEMORY_FORMAT_CHOICES = ("auto", *MEMORY_FORMATS)
# trainer.compile_backend: inductor generates kernels; aot_eager and eager trace the same
# graphs but run them with PyTorch's own kernels (to debug, or where no C++ compiler is).
BACKENDS = ("inductor", "aot_eager", "eager")

Iteration = Callable[[tuple[bool, ...]], list[dict[str, Tensor]]]


def resolve_compile(mode: str, device: torch.device) -> tuple[str, str]:
    """The mode to run and why: ``auto`` is eager on a CPU (compiling the DCGAN step there was
    measured 0.64x) and ``CUDA_AUTO`` on CUDA; any other mode as asked."""
    if mode != "auto":
        return mode, f"trainer.compile={mode} was asked for"
    if device.type != "cuda":
        return "off", (
            f"trainer.compile=auto is eager on {device.type} (compiling the DCGAN step on a "
            "CPU was measured 0.64x as fast)"
        )
    if CUDA_AUTO == "off":
        return "off", "trainer.compile=auto is eager on CUDA: " + (
            f"{CUDA_AUTO_RECORD} did not verify a compiled mode"
            if CUDA_AUTO_RECORD
            else "no GPU record has verified a compiled mode yet (scripts/gpu_check.py)"
        )
    return CUDA_AUTO, f"trainer.compile=auto is {CUDA_AUTO} on CUDA, as {CUDA_AUTO_RECORD} verified"


def native_bf16_cpu() -> bool:
    """Whether this CPU has bfloat16 instructions (x86's AVX512-BF16 or AMX) for oneDNN's
    convolutions and matrix products. Without them bf16 is emulated: on this project's CPU,
    limited to AVX-512 or AVX2 (ONEDNN_MAX_CPU_ISA), a +preset=fast10 step under bf16
    autocast cost 2.4x and 11x the CPU of fp32; with AMX, 0.57x (batch 128; 0.63x at the
    preset's batch 64, channels-last). Unknown (False) where torch has no probe (other
    architectures)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_amp(amp: str, device: torch.device) -> tuple[str, str]:
    """The autocast mode to run and why (empty when it was asked for and runs as fast as
    expected): ``auto`` is bf16 on a CPU with bfloat16 instructions and off elsewhere (an
    emulated bf16 is slower; on CUDA it is not measured yet)."""
    if amp == "auto":
        if device.type == "cpu" and native_bf16_cpu():
            return "bf16", (
                "trainer.amp=auto is bf16 on a CPU with bfloat16 instructions (a "
                "+preset=fast10 step measured 0.63x the CPU of fp32)"
            )
        where = "a CPU without bfloat16 instructions" if device.type == "cpu" else device.type
        return "off", f"trainer.amp=auto is off on {where} (bf16 not measured faster there)"
    if amp == "bf16" and device.type == "cpu" and not native_bf16_cpu():
        log.warning(
            "trainer.amp=bf16 on a CPU without bfloat16 instructions (AVX512-BF16, AMX): "
            "emulated, it was measured 2.4x to 11x slower than trainer.amp=off"
        )
    return amp, ""


def resolve_memory_format(memory_format: str, device: torch.device) -> tuple[str, str]:
    """The memory format of the models' weights and why: ``auto`` is channels-last on a CPU,
    where oneDNN's convolutions run in that layout without reordering (a +preset=fast10 step
    measured 0.89x the CPU of contiguous weights under bf16, 0.95x in fp32), and contiguous
    on CUDA, where it is not measured and inductor's own layout choice has failed before
    (compile_options)."""
    if memory_format != "auto":
        return memory_format, f"trainer.memory_format={memory_format} was asked for"
    if device.type == "cpu":
        return "channels_last", (
            "trainer.memory_format=auto is channels_last on a CPU (a +preset=fast10 step "
            "measured 0.89x the CPU of contiguous in bf16, 0.95x in fp32)"
        )
    return "contiguous", f"trainer.memory_format=auto is contiguous on {device.type} (not measured)"


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


def compile_options(mode: str, backend: str) -> dict[str, Any]:
    """``torch.compile``'s keyword arguments for ``trainer.compile=mode``.

    Inductor's mode is spelt out as its options, so that one more can be set: no layout
    optimization. With it, inductor keeps the convolutions' saved activations channels-last,
    CUDA's convolution backward then returns channels-last gradients where inductor's own
    shape propagation expects contiguous ones, and the DCGAN iteration fails to compile on
    CUDA ("expected size 64==64, stride 196==1 ... aten.convolution_backward", seen on an
    H200 with torch 2.11, docs/gpu; pytorch/pytorch#171622).
    """
    if backend != "inductor":
        return {"backend": backend}
    from torch._inductor import list_mode_options

    options = {
        **list_mode_options(mode),  # (None would list every mode's options)
        "layout_optimization": False,
    }
    return {"backend": backend, "options": options}


def compiled(
    functions: Sequence[Callable[..., Any]], mode: str, backend: str
) -> list[Callable[..., Any]]:
    """Each of ``functions`` under ``torch.compile`` in ``mode`` (compiled lazily, on its
    first call). The trainer compiles its two updates, not the iteration around them: each
    update breaks the graph once, at its ``backward()``, and a break inside the iteration's
    loop over the D updates would hand Dynamo's resumed frame a new list each call (on Python
    3.12, where comprehensions run inline), so it recompiled at every iteration until its
    recompile limit and then ran eager (seen on an H200, torch 2.11)."""
    torch._dynamo.reset()  # one trainer at a time: a sweep's earlier jobs hold no cache slots
    options = compile_options(mode, backend)
    return [torch.compile(fn, **options) for fn in functions]


def guarded(
    fast: Iteration,
    eager: Iteration,
    mode: str,
    snapshot: Callable[[], Any],
    restore: Callable[[Any, str], None],
) -> Iteration:
    """``fast``, falling back to ``eager`` if it fails in one of its first ``GUARDED_CALLS``
    calls (compilation on the first; CUDA-graph recording on the second, the first replay on
    the third): ``restore(snapshot(), reason)`` undoes whatever that call had done (graphs
    before a graph break may have run) and the run goes on eager, with one log line naming
    the failure. A mode that replays CUDA graphs gets its logs copied out (``graph_safe``)."""
    if mode in CUDA_GRAPH_MODES:
        fast = graph_safe(fast)
    calls = 0
    current = fast

    def run(penalty_due: tuple[bool, ...]) -> list[dict[str, Tensor]]:
        nonlocal calls, current
        if calls >= GUARDED_CALLS or current is eager:
            return current(penalty_due)
        calls += 1
        saved = snapshot()
        try:
            return fast(penalty_due)
        except Exception as e:  # noqa: BLE001 - any compiler failure: undo, then run eager
            reason = " ".join(str(e).split()) or type(e).__name__
            log.warning("trainer.compile=%s failed (%s): running eager", mode, reason[:200])
            restore(saved, reason)
            current = eager
            return eager(penalty_due)

    return run


def graph_safe(fast: Iteration) -> Iteration:
    """``fast`` with each call a new CUDA-graph step and its logs copied out.

    The outputs of a replayed CUDA graph live in the graph's memory pool, and the next replay
    writes over them; the logs outlive their iteration (the tracker sums them until the log
    interval, the GPU check compares them afterwards), so each call returns copies. Marking
    the step tells the CUDA-graph trees that the previous step's outputs are no longer read
    (the weights, optimizer moments and EMA are updated in place, and are not outputs). On
    a CPU there are no graphs, and this costs a few scalar copies per iteration.
    """

    def run(penalty_due: tuple[bool, ...]) -> list[dict[str, Tensor]]:
        torch.compiler.cudagraph_mark_step_begin()
        logs = fast(penalty_due)
        return [{tag: value.clone() for tag, value in step.items()} for step in logs]

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
    "CUDA_AUTO",
    "CUDA_AUTO_RECORD",
    "CUDA_GRAPH_MODES",
    "GUARDED_CALLS",
    "compile_options",
    "compiled",
    "graph_safe",
    "guarded",
    "resolve_compile",
    "weights_apart",
    "with_amp",
]
