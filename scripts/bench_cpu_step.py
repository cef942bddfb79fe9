"""CPU-seconds per training iteration of config variants, interleaved A B A B, with pair ratios.

    OMP_NUM_THREADS=1 python scripts/bench_cpu_step.py --base +preset=fast10 \
        --variant contiguous=trainer.memory_format=contiguous \
        --variant channels_last=trainer.memory_format=channels_last [--reps 3] [--json F]

Each variant is a trainer built from ``--base`` plus its own overrides (comma-separated), all
built and warmed up first; then each repetition times ``--iterations`` iterations of every
variant in turn, so load from other processes falls on all of them alike. Process CPU time
(``time.process_time``), not wall time: on a shared machine it is the cost a budget of
``trainer.cpu_minutes`` is spent in. Ratios are per repetition, each variant against the
first one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from ganlab.build import build_trainer
from ganlab.config import hydra_compose


def cpu_seconds_per_iteration(trainer, iterations: int) -> float:
    start = time.process_time()
    for _ in range(iterations):
        trainer.iterate()
    return (time.process_time() - start) / iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="", help="overrides every variant shares (commas)")
    parser.add_argument("--variant", action="append", required=True, help="NAME=OVERRIDES")
    parser.add_argument("--data-root", default=None, help="default: the 5,000-image sample")
    parser.add_argument("--iterations", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    variants = {}
    for spec in args.variant:
        name, sep, overrides = spec.partition("=")
        if not sep or not name:
            parser.error(f"--variant {spec!r}: expected NAME=OVERRIDES")
        variants[name] = [o for o in overrides.split(",") if o]
    data = (
        [f"data.root={args.data_root}", "data.download=false"]
        if args.data_root
        else ["data=mnist_sample"]
    )
    base = [o for o in args.base.split(",") if o]
    trainers = {}
    for name, overrides in variants.items():
        torch.manual_seed(0)
        cfg = hydra_compose([*base, *data, "metrics.enabled=false", *overrides])
        trainers[name] = build_trainer(cfg, torch.device("cpu"))
        cpu_seconds_per_iteration(trainers[name], args.warmup)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.reps):
        for name, trainer in trainers.items():
            times[name].append(cpu_seconds_per_iteration(trainer, args.iterations))
    first = next(iter(variants))
    rows = []
    print(f"{'variant':24} {'CPU-s/it (min..max)':>22} {'ratio to ' + first:>28}")
    for name, seconds in times.items():
        ratios = [s / f for s, f in zip(seconds, times[first], strict=True)]
        row = {"variant": name, "overrides": variants[name], "cpu_s": seconds, "ratios": ratios}
        rows.append(row)
        spread = f"{statistics.median(seconds):.4f} ({min(seconds):.4f}..{max(seconds):.4f})"
        shown = " ".join(f"{r:.3f}" for r in ratios)
        print(f"{name:24} {spread:>22} {shown:>28}")
    threads = torch.get_num_threads()
    print(f"\n{args.reps} x {args.iterations} iterations each, interleaved; {threads} thread(s)")
    if args.json:
        with open(args.json, "w") as f:
            info = {"base": base, "iterations": args.iterations, "threads": threads}
            json.dump({**info, "torch": torch.__version__, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
