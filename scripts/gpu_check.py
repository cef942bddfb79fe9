"""The GPU check: are the compiled modes right, and how fast is each mode, inside a time budget.

    python scripts/gpu_check.py --budget-s 420 --data-root .gpu/mnist --out gpu_check_out
    python scripts/gpu_check.py --device cpu --budget-s 120 --backend aot_eager --out OUT

The plan runs the most informative items first (``plan``) and starts an item only when its
estimated time still fits in what is left of ``--budget-s`` (counted from the start, imports
included). ``gpu_check.json`` is rewritten after every item, so a command stopped at its
limit still leaves everything it measured, and the items it ran and skipped:

1. ``learning``: DCGAN vanilla, one seed, ``steps`` steps eager and with
   ``trainer.compile=reduce-overhead``, each a whole run (ganlab.api.train: the tracker
   summing the logs, samples, checkpoints, the final FID). Passes when the compiled run used
   its mode and its FID is within ``FID_RATIO`` of eager's either way (one seed each: a smoke
   check that catches a compiled run that does not learn, not a ranking).
2. ``equivalence``: ``EQUIV_ITERATIONS`` iterations compiled with ``reduce-overhead`` (inductor's
   ``fallback_random``, so both draw the same batches and noise) against eager from one
   seed, for vanilla and for hinge + spectral norm + EMA: the CUDA-graph trees warm up on the
   first call, record on the second and replay from the third. Every logged value within
   rtol 5e-3 (atol 1e-3); the weights (G, D and the EMA's) no further apart than rounding
   puts them (``ROUNDING_FACTOR`` below, measured on each case with a nudged eager run), none
   more than ``MAX_STEPS_APART`` Adam steps; the EMA's update count exact. cuDNN runs
   deterministic here, and a second eager run shows that eager then equals itself.
3. ``throughput``: DCGAN vanilla at batch 64 and 1024 (naive DataLoader, eager,
   reduce-overhead, bf16), wgan_gp eager at 64: one row each (scripts/bench_throughput.py's
   ``measure``), the first iteration (compilation) and the warm-up timed apart.
4. the rest, while time is left: more throughput rows (reduce-overhead+bf16, default, hinge,
   batch 256, the MLP), the equivalence of the other losses, max-autotune last.

An item's estimate comes from the device's priors (``PRIORS``) until the check has measured
something better (the longest compilation so far). The verdict (``verdict``) says which mode
``trainer.compile=auto`` may use on this device: ``reduce-overhead`` only when it learned,
matched eager and was faster than eager at batch 64; else eager. Writes ``gpu_check.json``
and ``gpu_check.md`` (the throughput table) to ``--out``; exits 1 if a check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig

from ganlab.api import train
from ganlab.build import build_trainer
from ganlab.execution import weights_apart
from ganlab.runtime import resolve_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_throughput import bench_config, measure  # noqa: E402  (the benchmark, beside this)

GRAPHS = "reduce-overhead"  # the compiled mode auto would use on CUDA
FID_RATIO = 1.5  # learning: the compiled run's FID within eager's / 1.5 .. eager's x 1.5
LOSS_RTOL, LOSS_ATOL, STEP_TOL, MAX_SHARE = 5e-3, 1e-3, 2e-5, 0.05
EQUIV_ITERATIONS = 4
# Rounding, the yardstick on a GPU: inductor's fused kernels round differently from eager's,
# and Adam's first steps move a weight by about lr whatever the size of its gradient, so a
# near-zero gradient whose sign rounding flips puts that weight two steps apart. How many
# weights that reaches is measured on each case: eager against eager with the initial weights
# scaled by 1 + NUDGE (a few float32 ulps). The compiled run may be at most ROUNDING_FACTOR
# times as far apart (or MAX_SHARE, whichever is larger), and no weight more than
# MAX_STEPS_APART Adam steps (ADAM_LR) apart: a skipped or doubled update, a stale
# replayed input or a wrong gradient moves most weights, or some by many steps.
NUDGE, ROUNDING_FACTOR = 2.0**-20, 2.0
ADAM_LR, MAX_STEPS_APART = 2e-4, 2.0 * EQUIV_ITERATIONS


@dataclass(frozen=True)
class Priors:
    """What an item costs on a device before the check has measured anything (seconds)."""

    compile_s: float  # the first compiled iteration of a new configuration
    autotune_s: float  # max-autotune's compilation
    eager_it_s: float  # DCGAN eager iterations per second at batch 64
    eval_s: float  # a final evaluation (FID on the learning run's samples)
    start_s: float  # building a trainer, a run's folder and logs


@dataclass(frozen=True)
class Sizes:
    """How big each item is on a device: the full check on a GPU, a small one on a CPU."""

    learn_steps: int
    fid_samples: int
    model: tuple[str, ...]  # the DCGAN's overrides (the default model on a GPU)
    bench_steps: int
    bench_seconds: float  # a throughput row stops measuring after this long
    big_batch: int


PRIORS = {
    "cuda": Priors(compile_s=40, autotune_s=400, eager_it_s=140, eval_s=15, start_s=5),
    "cpu": Priors(compile_s=15, autotune_s=60, eager_it_s=40, eval_s=10, start_s=2),
}
SIZES = {
    "cuda": Sizes(1000, 5000, (), 300, 2.0, 1024),
    "cpu": Sizes(
        40, 1000, ("model.generator.channels=8", "model.discriminator.channels=8"), 10, 0.5, 128
    ),
}


@dataclass
class Check:
    """The check's state: its clock, what it measured, and the report it writes."""

    device: torch.device
    root: str
    backend: str
    budget_s: float
    out: Path
    sizes: Sizes
    priors: Priors
    start: float = field(default_factory=time.perf_counter)
    compile_s: float = 0.0  # the longest first compiled iteration measured so far
    report: dict = field(default_factory=dict)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def compile_cost(self) -> float:
        """A new configuration's compilation: the longest measured so far, else the prior."""
        return self.compile_s or self.priors.compile_s

    def save(self) -> None:
        self.report["elapsed_s"] = round(self.elapsed, 1)
        self.report["verdict"] = verdict(self.report)
        (self.out / "gpu_check.json").write_text(json.dumps(self.report, indent=2) + "\n")
        (self.out / "gpu_check.md").write_text(table(self.report))


@dataclass(frozen=True)
class Item:
    """One step of the plan: its name, its estimated seconds, and what it runs."""

    name: str
    estimate: Callable[[Check], float]
    run: Callable[[Check], dict]
    core: bool = True  # one of the items the issue asks for first (1-3), not "the rest"


# --- what the items run -------------------------------------------------------------------


def row_config(check: Check, model: str, loss: str, batch: int, *extra: str) -> DictConfig:
    """A benchmark row's config (``bench_config``) at this check's backend and model size."""
    extra = (f"trainer.compile_backend={check.backend}", *extra)
    extra += check.sizes.model if model == "dcgan" else ()
    return bench_config(model, loss, batch, check.root, extra)


def learning(check: Check) -> dict:
    """Item 1: the default DCGAN trained eager and with CUDA graphs; FID of both."""
    s, runs = check.sizes, {}
    for mode in ("off", GRAPHS):
        t0 = time.perf_counter()
        skips = cudagraph_skips()
        with skip_messages() as messages:
            results = train(
                [
                    "seed=0",
                    f"trainer.steps={s.learn_steps}",
                    f"trainer.compile={mode}",
                    f"metrics.n_samples={s.fid_samples}",
                    "metrics.floor=false",
                    "trainer.progress=false",
                    f"trainer.ckpt_every={s.learn_steps}",
                    f"device={check.device}",
                    f"data.root={check.root}",
                    "data.download=false",
                    "data.split=test",
                    f"trainer.compile_backend={check.backend}",
                    *s.model,
                ],
                out_dir=check.out / f"learn_{mode}",
            )
        runs[mode] = {
            "fid": results["metrics"]["fid"],
            "it_per_s": results["throughput"]["it_per_s"],
            "seconds": time.perf_counter() - t0,
            "execution": results["execution"],
            "final": results["final"],
            "cudagraph_skips": cudagraph_skips() - skips,
            "skip_messages": messages[:5],
            "error": results["execution"].get("error"),
        }
        print(
            f"  learning {mode:16} fid {runs[mode]['fid']:.2f}, "
            f"{runs[mode]['it_per_s']:.1f} it/s, {runs[mode]['seconds']:.0f} s",
            flush=True,
        )
    # the compiled run's extra time is its compilation (and CUDA-graph recording)
    check.compile_s = max(check.compile_s, runs[GRAPHS]["seconds"] - runs["off"]["seconds"])
    eager, graphs = runs["off"]["fid"], runs[GRAPHS]["fid"]
    used = runs[GRAPHS]["execution"]["compile"]
    ok = used == GRAPHS and eager / FID_RATIO <= graphs <= eager * FID_RATIO
    return {"steps": s.learn_steps, "runs": runs, "fid_ratio": graphs / eager, "ok": ok}


def equivalence(loss: str, extra: tuple[str, ...], mode: str = GRAPHS) -> Callable[[Check], dict]:
    """Item 2 (and the rest's): EQUIV_ITERATIONS iterations of ``mode`` against eager."""

    def run(check: Check) -> dict:
        cfg = row_config(check, "dcgan", loss, 64, *extra, f"trainer.compile={mode}")
        with same_random_stream(), deterministic_convolutions():
            eager = iterations(cfg, check.device, eager=True)
            again = iterations(cfg, check.device, eager=True)  # eager's own run-to-run noise
            nudged = iterations(cfg, check.device, eager=True, nudge=NUDGE)
            t0 = time.perf_counter()
            skips = cudagraph_skips()
            with skip_messages() as messages:
                compiled = iterations(cfg, check.device)
        row = {"loss": loss, "extra": list(extra), "mode": mode, "used": compiled["used"]}
        row["error"] = compiled["error"]
        row["seconds"] = time.perf_counter() - t0
        row["cudagraph_skips"] = cudagraph_skips() - skips
        row["skip_messages"] = messages[:5]
        row.update(compare(eager, compiled))
        noise, rounding = compare(eager, again), compare(eager, nudged)
        shown = ("loss_gap", "share_apart", "ema_share_apart", "max_steps_apart")
        row["eager_noise"] = {key: noise[key] for key in shown}
        row["rounding"] = {key: rounding[key] for key in shown}
        row["ok"] = (
            compiled["used"] == mode
            and row["loss_gap"] <= 1
            and row["share_apart"] <= max(MAX_SHARE, ROUNDING_FACTOR * rounding["share_apart"])
            and row["ema_share_apart"]
            <= max(MAX_SHARE, ROUNDING_FACTOR * rounding["ema_share_apart"])
            and row["max_steps_apart"] <= MAX_STEPS_APART
            and row["ema_updates"][0] == row["ema_updates"][1]
        )
        print(
            f"  equivalence {loss:8} {' '.join(extra) or '-':40} {mode:16} "
            f"{'ok' if row['ok'] else 'FAIL'}  loss gap {row['loss_gap']:.3f}, "
            f"{row['share_apart']:.2%} of the weights apart",
            flush=True,
        )
        return row

    return run


def iterations(cfg, device: torch.device, eager: bool = False, nudge: float = 0.0) -> dict:
    """A trainer built from seed 0 as ``cfg`` says (its optimizers capturable when it is
    compiled on CUDA, in both runs), run ``eager`` or compiled for EQUIV_ITERATIONS
    iterations; ``nudge``: G's and D's initial weights scaled by 1 + nudge first."""
    torch.manual_seed(0)
    trainer = build_trainer(cfg, device)
    if eager:
        trainer.compile("off", cfg.trainer.amp)
    with torch.no_grad():
        for p in (*trainer.G.parameters(), *trainer.D.parameters()):
            p.mul_(1 + nudge)
        if trainer.ema is not None:  # the average starts from the nudged G
            for q, p in zip(trainer.ema.G.parameters(), trainer.G.parameters(), strict=True):
                q.copy_(p)
    logs = [trainer.iterate() for _ in range(EQUIV_ITERATIONS)]
    execution = trainer.execution
    return {
        "trainer": trainer,
        "logs": logs,
        "used": execution["compile"],
        "error": execution.get("error"),
    }


def compare(eager: dict, compiled: dict) -> dict:
    """The worst logged-value gap (1 = at the tolerance) and the shares of weights apart."""
    worst, worst_at = 0.0, None
    for i, (step_a, step_b) in enumerate(zip(eager["logs"], compiled["logs"], strict=True)):
        for a, b in zip(step_a, step_b, strict=True):
            for tag in a:
                x, y = a[tag].float().item(), b[tag].float().item()
                gap = abs(y - x) / (LOSS_ATOL + LOSS_RTOL * abs(x))
                if not gap <= worst:  # NaN counts as the worst
                    worst, worst_at = gap, f"{tag} iteration {i + 1}: {x:.6g} vs {y:.6g}"
    a, b = eager["trainer"], compiled["trainer"]
    nets = [*a.G.parameters(), *a.D.parameters()], [*b.G.parameters(), *b.D.parameters()]
    ema = (a.ema, b.ema)
    gaps = [(p.detach() - q.detach()).abs().max().item() for p, q in zip(*nets, strict=True)]
    return {
        "loss_gap": worst,
        "worst": worst_at,
        "share_apart": weights_apart(*nets, STEP_TOL),
        "max_steps_apart": max(gaps) / ADAM_LR,
        "ema_share_apart": (
            weights_apart(ema[0].G.parameters(), ema[1].G.parameters(), STEP_TOL)
            if ema[0] is not None
            else 0.0
        ),
        "ema_updates": [e.updates if e is not None else 0 for e in ema],
    }


def throughput(loss: str, batch: int | None, mode: str, model: str = "dcgan"):
    """Item 3 (and the rest's): one row of the benchmark (None: the device's big batch)."""

    def run(check: Check) -> dict:
        size = batch or check.sizes.big_batch
        cfg = row_config(check, model, loss, size)
        skips = cudagraph_skips()
        with skip_messages() as messages:
            row = measure(
                cfg, mode, check.sizes.bench_steps, check.device, check.sizes.bench_seconds
            )
        if row["compile_used"] != "off":
            check.compile_s = max(check.compile_s, row["first_iteration_s"])
        row.update(model=model, loss=loss, batch=size, mode=mode, n_critic=cfg.trainer.n_critic)
        row["cudagraph_skips"] = cudagraph_skips() - skips
        row["skip_messages"] = messages[:5]
        naive = find_row(check.report, model, loss, size, "naive")
        row["x_naive"] = row["it_per_s"] / naive["it_per_s"] if naive else None
        row["ok"] = True  # a measurement; the targets are read off the table
        print(f"  {row_line(row)}", flush=True)
        return row

    return run


# --- the plan ------------------------------------------------------------------------------


def plan() -> list[Item]:
    """Every item, the most informative first."""

    def compiled_row(check: Check) -> float:
        return check.priors.start_s + check.compile_cost() + 3 * check.sizes.bench_seconds

    def eager_row(check: Check) -> float:
        return check.priors.start_s + 2 * check.sizes.bench_seconds

    def autotune_row(check: Check) -> float:
        return check.priors.start_s + check.priors.autotune_s + 3 * check.sizes.bench_seconds

    def learning_cost(check: Check) -> float:
        train_s = check.sizes.learn_steps / check.priors.eager_it_s
        return 2 * (check.priors.start_s + check.priors.eval_s + train_s) + check.compile_cost()

    def equivalence_cost(check: Check) -> float:
        return 3 * check.priors.start_s + check.compile_cost()

    def row(loss: str, batch: int | None, mode: str, model: str = "dcgan", core=True) -> Item:
        cost = {"naive": eager_row, "eager": eager_row, "bf16": eager_row}.get(mode, compiled_row)
        cost = autotune_row if mode.startswith("max-autotune") else cost
        name = f"throughput {model} {loss} {batch or 'big'} {mode}"
        return Item(name, cost, throughput(loss, batch, mode, model), core)

    sn_ema = ("model.discriminator.spectral_norm=true", "trainer.ema=0.999")
    items = [
        Item("learning", learning_cost, learning),
        Item("equivalence vanilla", equivalence_cost, equivalence("vanilla", ())),
        Item("equivalence hinge+sn+ema", equivalence_cost, equivalence("hinge", sn_ema)),
    ]
    for batch in (64, None):
        items += [row("vanilla", batch, mode) for mode in ("naive", "eager", GRAPHS, "bf16")]
    items.append(row("wgan_gp", 64, "eager"))
    rest = [
        row("vanilla", 64, f"{GRAPHS}+bf16", core=False),
        row("vanilla", 64, "default", core=False),
        row("hinge", 64, "naive", core=False),
        row("hinge", 64, "eager", core=False),
        row("hinge", 64, GRAPHS, core=False),
        row("wgan_gp", 64, "naive", core=False),
        row("vanilla", 256, "eager", core=False),
        row("vanilla", 256, GRAPHS, core=False),
        row("vanilla", 64, "naive", "mlp", core=False),
        row("vanilla", 64, "eager", "mlp", core=False),
        row("vanilla", 64, GRAPHS, "mlp", core=False),
    ]
    for loss in ("minimax", "lsgan", "wgan", "rsgan", "ragan"):
        rest.append(Item(f"equivalence {loss}", equivalence_cost, equivalence(loss, ()), False))
    rest.append(row("vanilla", 64, "max-autotune", core=False))
    return items + rest


def run_plan(check: Check, items: list[Item]) -> None:
    """Each item whose estimate fits in the budget's rest, in order; the report saved after
    each. An item that raises is recorded as failed (with the error) and the plan goes on."""
    check.report.update(items=[], skipped=[])
    for item in items:
        left = check.budget_s - check.elapsed
        estimate = item.estimate(check)
        if estimate > left:
            check.report["skipped"].append(
                {"name": item.name, "estimate_s": round(estimate, 1), "left_s": round(left, 1)}
            )
            print(f"skip {item.name}: needs ~{estimate:.0f} s, {left:.0f} s left", flush=True)
            continue
        print(f"{item.name} (~{estimate:.0f} s of {left:.0f} s left)", flush=True)
        record = {"name": item.name, "core": item.core, "started_s": round(check.elapsed, 1)}
        record["estimate_s"] = round(estimate, 1)
        try:
            record.update(item.run(check))
        except Exception as e:  # noqa: BLE001 - recorded; the other items still run
            record.update(ok=False, error=f"{type(e).__name__}: {' '.join(str(e).split())[:500]}")
            print(f"  {item.name} FAILED: {record['error']}", flush=True)
        record["seconds"] = round(check.elapsed - record["started_s"], 1)
        check.report["items"].append(record)
        check.save()


# --- reading the report ---------------------------------------------------------------------


def find_row(report: dict, model: str, loss: str, batch: int, mode: str) -> dict | None:
    wanted = (model, loss, batch, mode)
    for item in report.get("items", []):
        if (
            "it_per_s" in item
            and (item["model"], item["loss"], item["batch"], item["mode"]) == wanted
        ):
            return item
    return None


def verdict(report: dict) -> dict:
    """Which mode ``trainer.compile=auto`` may use on this device, from the items alone:
    ``reduce-overhead`` when it learned like eager, matched eager over replayed iterations in
    both equivalence cases, and ran faster than eager (DCGAN vanilla, batch 64); else eager."""
    items = {item["name"]: item for item in report.get("items", [])}
    needed = ("learning", "equivalence vanilla", "equivalence hinge+sn+ema")
    missing = [name for name in needed if name not in items]
    failed = [name for name in needed if name in items and not items[name].get("ok")]
    eager = find_row(report, "dcgan", "vanilla", 64, "eager")
    graphs = find_row(report, "dcgan", "vanilla", 64, GRAPHS)
    ok = all(item.get("ok") for item in items.values())
    if report.get("device_type") != "cuda":
        return {"ok": ok, "auto_cuda": "off", "why": "not a CUDA device"}
    if missing or failed:
        why = f"not verified: {', '.join(missing + failed)} {'missing' if missing else 'failed'}"
        return {"ok": ok, "auto_cuda": "off", "why": why}
    if eager is None or graphs is None:
        return {"ok": ok, "auto_cuda": "off", "why": "no batch-64 throughput of both modes"}
    speedup = graphs["it_per_s"] / eager["it_per_s"]
    if speedup <= 1:
        return {"ok": ok, "auto_cuda": "off", "why": f"{GRAPHS} ran {speedup:.2f}x eager"}
    why = f"{GRAPHS} learned like eager, matched it and ran {speedup:.2f}x eager at batch 64"
    return {"ok": ok, "auto_cuda": GRAPHS, "why": why}


def row_line(row: dict) -> str:
    x = f"{row['x_naive']:.2f}" if row.get("x_naive") else "-"
    mode = row["mode"] + (" (eager: fallback)" if row.get("fallback") else "")
    return (
        f"{row['model']:5} {row['loss']:8} {row['batch']:5} {mode:26} "
        f"{row['it_per_s']:9.1f} {row['images_per_s']:10.0f} {x:>8} "
        f"{row['first_iteration_s']:8.2f} {row['warmup_s']:7.2f}"
    )


def table(report: dict) -> str:
    """The throughput rows as a markdown table (README's GPU table), and the learning FIDs."""
    lines = [
        f"Device {report.get('device_name')}, torch {report.get('torch')}, CUDA "
        f"{report.get('cuda')}, {report.get('date')}; backend {report.get('backend')}.",
        "",
        "| model | loss | batch | mode | G-it/s | img/s | x naive | first it. s | warm-up s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for item in report.get("items", []):
        if item["name"].startswith("throughput") and "it_per_s" in item:
            x = f"{item['x_naive']:.1f}" if item.get("x_naive") else "-"
            mode = item["mode"] + (" (eager: fallback)" if item.get("fallback") else "")
            lines.append(
                f"| {item['model']} | {item['loss']} | {item['batch']} | {mode} | "
                f"{item['it_per_s']:,.1f} | {item['images_per_s']:,.0f} | {x} | "
                f"{item['first_iteration_s']:.1f} | {item['warmup_s']:.2f} |"
            )
    for item in report.get("items", []):
        if item["name"] == "learning" and "runs" in item:
            fids = ", ".join(f"{m}: {r['fid']:.2f}" for m, r in item["runs"].items())
            lines += ["", f"Learning ({item['steps']} steps, one seed): FID {fids}."]
    return "\n".join(lines) + "\n"


# --- torch's knobs the check turns ---------------------------------------------------------


@contextlib.contextmanager
def deterministic_convolutions() -> Iterator[None]:
    """cuDNN's deterministic algorithms (its default backward sums in a varying order: two
    eager runs of the DCGAN on an H200 had 2.6 % of the weights apart after 4 iterations)."""
    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


@contextlib.contextmanager
def same_random_stream() -> Iterator[None]:
    """Inductor's random numbers drawn as eager draws them, for the equivalence items only."""
    import torch._inductor.config as inductor_config

    before = inductor_config.fallback_random
    inductor_config.fallback_random = True
    try:
        yield
    finally:
        inductor_config.fallback_random = before


def cudagraph_skips() -> int:
    """How many graphs inductor has refused to run as CUDA graphs so far (0 on a CPU)."""
    from torch._dynamo.utils import counters

    return int(counters["inductor"]["cudagraph_skips"])


@contextlib.contextmanager
def skip_messages() -> Iterator[list[str]]:
    """What torch warns of that makes a compiled mode less than it says, collected: graphs
    inductor does not run as CUDA graphs, and frames Dynamo gave up recompiling (it then
    runs them eager)."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = " ".join(record.getMessage().split())
            if record.name.endswith("__cudagraphs") or "recompile_limit" in text:
                messages.append(text[:300])

    loggers = [
        logging.getLogger("torch._inductor.cudagraph_utils.__cudagraphs"),
        logging.getLogger("torch._dynamo.convert_frame"),
    ]
    handler = Collect(logging.WARNING)
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield messages
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget-s", type=float, default=420, help="seconds for the plan")
    parser.add_argument("--data-root", default="~/.cache/ganlab/mnist")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--backend", default="inductor", help="inductor, or aot_eager on a CPU")
    parser.add_argument("--out", type=Path, default=Path("gpu_check_out"))
    parser.add_argument("--core-only", action="store_true", help="items 1-3, not the rest")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    if device.type != "cuda" and args.device == "auto":
        parser.error("no CUDA device: pass --device cpu to run the plan on the CPU")
    if args.budget_s <= 0:
        parser.error(f"--budget-s must be positive seconds, not {args.budget_s:g}")
    args.out.mkdir(parents=True, exist_ok=True)
    kind = "cuda" if device.type == "cuda" else "cpu"
    check = Check(
        device, args.data_root, args.backend, args.budget_s, args.out, SIZES[kind], PRIORS[kind]
    )
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    check.report.update(
        check="scripts/gpu_check.py",
        device=str(device),
        device_type=device.type,
        device_name=name or "cpu",
        torch=torch.__version__,
        cuda=torch.version.cuda,
        triton=package_version("triton"),
        python=platform.python_version(),
        date=time.strftime("%Y-%m-%d"),
        budget_s=args.budget_s,
        backend=args.backend,
        sizes=dataclasses.asdict(check.sizes),
    )
    print(
        f"gpu_check on {device} ({name}), torch {torch.__version__}, CUDA "
        f"{torch.version.cuda}, budget {args.budget_s:g} s",
        flush=True,
    )
    items = [item for item in plan() if item.core or not args.core_only]
    run_plan(check, items)
    check.save()
    report = check.report
    print("\n" + table(report))
    ran, skipped = len(report["items"]), len(report["skipped"])
    failed = [item["name"] for item in report["items"] if not item.get("ok")]
    print(
        f"gpu_check: {ran} items in {report['elapsed_s']:.0f} s of {args.budget_s:g}, "
        f"{skipped} skipped; {'FAILED: ' + ', '.join(failed) if failed else 'all passed'}; "
        f"auto on CUDA: {report['verdict']['auto_cuda']} ({report['verdict']['why']}); "
        f"{args.out / 'gpu_check.json'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
