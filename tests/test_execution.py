"""trainer.compile / trainer.amp: the compiled iteration equals the eager one on the CPU.

The compiled runs use torch.compile's ``aot_eager`` backend: Dynamo traces the iteration and
AOT autograd builds its forward and backward graphs exactly as for inductor, but the graphs
run with PyTorch's kernels, so the check needs no C++ compiler and a few seconds per
configuration. Inductor's own kernels are checked by ``scripts/gpu_check.py`` (on a CUDA
machine, or with ``--device cpu``).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ganlab.build import build_trainer
from ganlab.checkpoint import load_checkpoint
from ganlab.execution import native_bf16_cpu, resolve_amp, resolve_memory_format, weights_apart
from ganlab.losses import LOSSES
from ganlab.rundir import read_results
from ganlab.train import train
from tests.conftest import tiny

CPU = torch.device("cpu")
ITERATIONS = 3
# Weights after ITERATIONS iterations: the share of G's and D's parameters whose value
# differs between the compiled and the eager run by more than a tenth of one Adam step
# (lr 2e-4). Adam's first steps move a weight by about lr whatever its gradient's size, so
# where a gradient is near zero, rounding-level differences (AOT autograd's decompositions)
# become lr-sized: measured at most 1.7 % of the weights (lsgan). A skipped, doubled or
# wrong update moves almost every weight by that much.
STEP_TOL = 2e-5
MAX_SHARE = 0.05
# Every logged loss, penalty and score, every iteration: the scores of iteration 3 come from
# weights that already differ as above (measured: 1.7e-3 on ragan's mean real score).
LOSS_RTOL, LOSS_ATOL = 5e-3, 1e-5


def run(cfg, mode: str, backend: str = "aot_eager", iterations: int = ITERATIONS):
    torch.manual_seed(0)
    trainer = build_trainer(cfg, CPU)
    start = [p.detach().clone() for p in (*trainer.G.parameters(), *trainer.D.parameters())]
    used = trainer.compile(mode, backend=backend)
    logs = [trainer.iterate() for _ in range(iterations)]
    return trainer, start, logs, used


def weights(trainer) -> list[torch.Tensor]:
    return [p.detach() for p in (*trainer.G.parameters(), *trainer.D.parameters())]


def assert_same_run(eager, compiled) -> None:
    (a, start, logs_a, _), (b, _, logs_b, _) = eager, compiled
    for step_a, step_b in zip(logs_a, logs_b, strict=True):
        for update_a, update_b in zip(step_a, step_b, strict=True):
            assert update_a.keys() == update_b.keys()
            for tag in update_a:
                torch.testing.assert_close(
                    update_b[tag], update_a[tag], rtol=LOSS_RTOL, atol=LOSS_ATOL, msg=tag
                )
    moved = torch.cat([(w - s).flatten() for w, s in zip(weights(a), start, strict=True)])
    assert (moved.abs() > STEP_TOL).float().mean() > 0.5  # the check can see a missed update
    assert weights_apart(weights(a), weights(b), STEP_TOL) < MAX_SHARE
    assert (a.step, a.d_updates) == (b.step, b.d_updates)


CASES = {
    # wgan_gp is wgan with penalty=gp: the penalty falls back to eager (tested below)
    **{f"mlp-{loss}": ("mlp", [f"loss={loss}"]) for loss in LOSSES if loss != "wgan_gp"},
    "dcgan-vanilla": ("dcgan", ["loss=vanilla"]),
    # EMA, spectral norm and class conditioning together, on the conv nets
    "dcgan-hinge-sn-ema-projection": (
        "dcgan",
        [
            "loss=hinge",
            "trainer.ema=0.99",
            "model.discriminator.spectral_norm=true",
            "cond=projection",
        ],
    ),
    "mlp-acgan-feature_matching": ("mlp", ["cond=acgan", "+aux.feature_matching=1.0"]),
    # DiffAugment: random transforms inside the traced updates, drawn from the same RNG
    "dcgan-diffaugment": ("dcgan", ["aug=diffaugment"]),
}


@pytest.mark.parametrize("case", CASES)
def test_compiled_iteration_matches_eager(make_cfg, case):
    """Every loss (the MLP; wgan with its weight clipping), and EMA, spectral norm,
    conditioning and an auxiliary term: same losses every iteration, same weights after.
    n_critic 2: each iteration holds more than one D update."""
    model, overrides = CASES[case]
    cfg = make_cfg(*tiny(model), "data=mnist_sample", "trainer.n_critic=2", *overrides)
    eager = run(cfg, "off")
    compiled = run(cfg, "default")
    assert compiled[3] == "default" and compiled[0].execution["compile"] == "default"
    assert_same_run(eager, compiled)
    if compiled[0].ema is not None:  # the averaged weights followed the same updates
        for p, q in zip(eager[0].ema.G.parameters(), compiled[0].ema.G.parameters(), strict=True):
            torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-4)
        assert compiled[0].ema.updates == eager[0].ema.updates == ITERATIONS


def test_the_iteration_breaks_only_at_the_backward_calls(make_cfg):
    """No host sync and no branch on a tensor's value inside the iteration: Dynamo's only
    graph breaks are the two ``loss.backward()`` (one per network), which it does not trace."""
    cfg = make_cfg(*tiny("mlp"), "data=mnist_sample", "trainer.ema=0.99")
    torch.manual_seed(0)
    trainer = build_trainer(cfg, CPU)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(trainer.iteration)((False,))
    reasons = [str(b.reason) for b in explained.break_reasons]
    assert reasons and all("backward" in r for r in reasons), reasons


@pytest.mark.parametrize("penalty", ["gp", "r1", "dragan"])
def test_a_gradient_penalty_falls_back_to_eager_and_says_why(make_cfg, caplog, penalty):
    cfg = make_cfg(*tiny("mlp"), "data=mnist_sample", f"penalty={penalty}", "penalty.weight=1")
    with caplog.at_level(logging.INFO, logger="ganlab.trainer"):
        trainer, _, logs, used = run(cfg, "reduce-overhead", iterations=1)
    assert used == "off" and trainer.execution["compile"] == "off"
    lines = [r.getMessage() for r in caplog.records if "running eager" in r.getMessage()]
    assert len(lines) == 1 and "double backward" in lines[0] and "91469" in lines[0]
    assert f"penalty/{penalty}" in logs[0][0]  # and the penalty still trains D


def test_a_compiler_failure_mid_iteration_restores_the_state_and_runs_eager(make_cfg, caplog):
    """A backend that compiles the first graph and fails on the second: the first graph has
    already drawn a batch and noise by then. The state from before the call is restored, so
    the run equals the eager run exactly, and one warning says what happened."""
    calls = []

    def flaky(gm, example_inputs):
        calls.append(gm)
        if len(calls) == 2:
            raise RuntimeError("boom: a compiler failure")
        return gm.forward

    cfg = make_cfg(*tiny("mlp"), "data=mnist_sample", "trainer.ema=0.99")
    eager = run(cfg, "off")
    with caplog.at_level(logging.WARNING, logger="ganlab.execution"):
        flaky_run = run(cfg, "default", backend=flaky)
    assert len(calls) == 2  # the first graph ran before the failure
    for p, q in zip(weights(eager[0]), weights(flaky_run[0]), strict=True):
        assert torch.equal(p, q)
    assert flaky_run[0].ema.updates == ITERATIONS
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "boom" in warnings[0] and "running eager" in warnings[0]
    assert flaky_run[0].execution["compile"] == "off"


def test_bf16_autocast_trains_fp32_weights_close_to_fp32(make_cfg):
    cfg = make_cfg(*tiny("mlp"), "data=mnist_sample", "trainer.amp=bf16")
    torch.manual_seed(0)
    trainer = build_trainer(cfg, CPU)
    assert trainer.execution["amp"] == "bf16"
    bf16 = [trainer.iterate() for _ in range(2)]
    reference = run(make_cfg(*tiny("mlp"), "data=mnist_sample"), "off", iterations=2)[2]
    assert all(p.dtype == torch.float32 for p in weights(trainer))
    for step_a, step_b in zip(reference, bf16, strict=True):
        for update_a, update_b in zip(step_a, step_b, strict=True):
            for tag in ("loss/D", "loss/G"):
                if tag in update_a:  # bf16 has 8 bits of mantissa: within a few percent
                    torch.testing.assert_close(
                        update_b[tag].float(), update_a[tag], rtol=0.05, atol=0.01
                    )


@pytest.mark.parametrize("native", [True, False])
def test_amp_auto_is_bf16_only_on_a_cpu_with_bfloat16_instructions(monkeypatch, caplog, native):
    """auto: bf16 where the CPU has the instructions (measured faster), else off; an explicit
    bf16 on a CPU without them runs as asked, with a warning that it is emulated."""
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda native=native: native)
    assert resolve_amp("auto", CPU)[0] == ("bf16" if native else "off")
    assert resolve_amp("auto", torch.device("cuda"))[0] == "off"  # not measured there
    assert resolve_amp("off", CPU) == ("off", "")
    with caplog.at_level(logging.WARNING, logger="ganlab.execution"):
        assert resolve_amp("bf16", CPU)[0] == "bf16"
    assert bool(caplog.records) is not native
    assert native or "emulated" in caplog.text


def test_the_bf16_probe_agrees_with_the_cpus_own_flags():
    """Against /proc/cpuinfo, an independent account of the CPU's instructions."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file() or "flags" not in cpuinfo.read_text():
        pytest.skip("needs Linux on x86 (/proc/cpuinfo with a flags line)")
    flags = set(cpuinfo.read_text().split("flags")[1].splitlines()[0].split())
    assert native_bf16_cpu() == bool(flags & {"avx512_bf16", "amx_tile"})


def test_amp_auto_runs_and_records_what_it_resolved_to(make_cfg):
    trainer = build_trainer(make_cfg(*tiny("mlp"), "data=mnist_sample", "trainer.amp=auto"), CPU)
    expected = "bf16" if native_bf16_cpu() else "off"
    assert trainer.execution["amp"] == expected
    assert trainer.execution["amp_why"].startswith(f"trainer.amp=auto is {expected} on a CPU")
    trainer.iterate()


def test_memory_format_auto_is_channels_last_on_a_cpu_and_contiguous_on_cuda():
    assert resolve_memory_format("auto", CPU)[0] == "channels_last"
    assert resolve_memory_format("auto", torch.device("cuda"))[0] == "contiguous"  # unmeasured
    assert resolve_memory_format("contiguous", CPU) == (
        "contiguous",
        "trainer.memory_format=contiguous was asked for",
    )


@pytest.mark.parametrize("extra", [[], ["penalty=r1", "penalty.weight=1"]], ids=["plain", "r1"])
def test_channels_last_weights_train_like_contiguous_ones(make_cfg, extra):
    """The DCGAN's 4-D weights (G's, D's and the EMA G's) lie channels-last, and the run
    follows the contiguous one: same losses each iteration, same weights after, with R1's
    double backward through the convolutions too."""
    common = [*tiny("dcgan"), "data=mnist_sample", "trainer.n_critic=2", "trainer.ema=0.99"]
    reference = run(make_cfg(*common, *extra, "trainer.memory_format=contiguous"), "off")
    last = run(make_cfg(*common, *extra, "trainer.memory_format=channels_last"), "off")
    assert_same_run(reference, last)
    trainer = last[0]
    assert trainer.execution["memory_format"] == "channels_last"
    nets = (trainer.G, trainer.D, trainer.ema.G)
    kernels = [p for net in nets for p in net.parameters() if p.dim() == 4]
    assert len(kernels) == 8  # G's three transposed convolutions, D's two, the EMA G's three
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in kernels)
    assert sum(not p.is_contiguous() for p in kernels) >= 5  # not merely ambiguous shapes
    contiguous = reference[0]
    assert all(p.is_contiguous() for p in contiguous.D.parameters())


def test_a_channels_last_run_resumes_exactly_and_in_either_layout(make_cfg, tmp_path):
    """4 steps straight equal 2 steps and a resume for 2 more, bit for bit; resumed with
    contiguous weights instead, the run goes on from the same values (not bit for bit: the
    convolutions' algorithms differ with the layout)."""
    common = [*tiny("dcgan"), "data=mnist_sample", "trainer.ckpt_every=2", "trainer.ema=0.99"]
    last = "trainer.memory_format=channels_last"
    train(make_cfg(*common, last, "trainer.steps=4"), tmp_path / "straight")
    for name, layout in (("split", last), ("switched", "trainer.memory_format=contiguous")):
        train(make_cfg(*common, last, "trainer.steps=2"), tmp_path / name)
        train(make_cfg(*common, layout, "trainer.steps=4", "trainer.resume=auto"), tmp_path / name)
    a, b, c = (
        load_checkpoint(tmp_path / name / "checkpoints" / "last.pt")
        for name in ("straight", "split", "switched")
    )
    for net in ("G", "D"):
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), (net, key)
    weights_of = [[ckpt[net][k] for net in ("G", "D") for k in a[net]] for ckpt in (a, c)]
    assert weights_apart(*weights_of, STEP_TOL) < MAX_SHARE
    assert read_results(tmp_path / "switched")["execution"]["memory_format"] == "contiguous"


def test_a_compiled_run_resumes_exactly_and_says_how_it_ran(make_cfg, tmp_path):
    """Checkpoints of a compiled run are the eager format: 4 steps straight equal 2 steps,
    a new process-like start (a fresh trainer, compiled anew) and 2 more."""
    common = [*tiny("mlp"), "data=mnist_sample", "trainer.compile=default"]
    common += ["trainer.compile_backend=aot_eager", "trainer.ckpt_every=2"]
    train(make_cfg(*common, "trainer.steps=4"), tmp_path / "straight")
    train(make_cfg(*common, "trainer.steps=2"), tmp_path / "split")
    train(make_cfg(*common, "trainer.steps=4", "trainer.resume=auto"), tmp_path / "split")
    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    for net in ("G", "D"):
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), (net, key)
    execution = read_results(tmp_path / "split")["execution"]
    assert execution == {
        "compile": "default",
        "amp": "off",
        "backend": "aot_eager",
        "why": "trainer.compile=default was asked for",
        "memory_format": "channels_last",
        "memory_format_why": resolve_memory_format("auto", CPU)[1],
    }


def test_weights_apart_counts_the_share_of_weights_beyond_the_tolerance():
    a = [torch.zeros(6), torch.zeros(2, 2)]
    b = [torch.tensor([0.0, 1e-6, 3e-5, 0, 0, 0]), torch.full((2, 2), -1.0)]
    assert weights_apart(a, a, STEP_TOL) == 0
    assert weights_apart(a, b, STEP_TOL) == pytest.approx(5 / 10)


def test_bench_throughput_puts_the_modes_side_by_side(tmp_path, mnist_root):
    out = tmp_path / "bench.json"
    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_throughput.py"
    subprocess.run(
        [
            sys.executable,
            str(script),
            "--data-root",
            str(mnist_root),
            "--models",
            "mlp",
            "--losses",
            "vanilla,wgan_gp",
            "--batches",
            "16",
            "--modes",
            "naive,eager,bf16",
            "--steps",
            "3",
            "--json",
            str(out),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    rows = json.loads(out.read_text())["rows"]
    assert [(r["loss"], r["mode"]) for r in rows] == [
        (loss, mode) for loss in ("vanilla", "wgan_gp") for mode in ("naive", "eager", "bf16")
    ]
    for row in rows:
        assert row["it_per_s"] > 0 and row["images_per_s"] == pytest.approx(16 * row["it_per_s"])
        naive = next(r for r in rows if r["loss"] == row["loss"] and r["mode"] == "naive")
        assert row["x_naive"] == pytest.approx(row["it_per_s"] / naive["it_per_s"])


def test_bench_cpu_step_times_the_variants_interleaved(tmp_path):
    out = tmp_path / "step.json"
    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_cpu_step.py"
    layouts = [f"{f}=trainer.memory_format={f}" for f in ("contiguous", "channels_last")]
    subprocess.run(
        [sys.executable, str(script), "--base", ",".join(tiny("dcgan"))]
        + [arg for spec in layouts for arg in ("--variant", spec)]
        + ["--iterations", "2", "--warmup", "1", "--reps", "2", "--json", str(out)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    rows = json.loads(out.read_text())["rows"]
    assert [r["overrides"] for r in rows] == [[spec.split("=", 1)[1]] for spec in layouts]
    first, second = (r["cpu_s"] for r in rows)
    assert len(first) == len(second) == 2 and min(first + second) > 0
    assert rows[0]["ratios"] == [1.0, 1.0]
    assert rows[1]["ratios"] == pytest.approx([b / a for a, b in zip(first, second, strict=True)])
