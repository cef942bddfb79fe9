"""Quality per step and per CPU-minute of training recipes, side by side.

    python scripts/bench_quality.py --data-root ../shared/data/mnist \
        --variants mlp_default,mlp_ema --out docs/quality [--runs DIR] [--seeds 0] [--n 10000]

Each variant is a set of training overrides (VARIANTS below). It is trained with the real
CLI (metrics off, a numbered checkpoint every ``--every`` steps, all kept), then every
checkpoint is evaluated with the same EvaluationSession (``--n`` samples vs the test split),
so the FID curve has one sample count and the CPU time is the training's alone
(results.json ``throughput.cpu_s_per_it`` × step). Prints a table and writes JSON and
``fid_vs_cpu.png`` to ``--out``; the run folders (checkpoints) go under ``--runs``.
``--variants '' --merge A.json --merge B.json`` trains nothing: it combines earlier outputs
(same metric networks and ``--n``) into one table, JSON and plot.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from ganlab.build import load_generator
from ganlab.checkpoint import CheckpointDir
from ganlab.metrics.labels import class_histogram
from ganlab.metrics.session import EvaluationSession
from ganlab.rundir import read_results
from ganlab.runtime import resolve_device
from ganlab.sampling import sample_fn

MLP = ["model=mlp"]


def mlp_mbstd(group: int, lr: str, *extra: str, ema: str = "0.999") -> list[str]:
    """The MLP with an EMA G, D's minibatch standard deviation over ``group`` samples and
    Adam at ``lr``, plus ``extra`` overrides: the measured MLP variants of docs/losses.md."""
    mbstd = f"model.discriminator.minibatch_std={group}"
    return [*MLP, f"trainer.ema={ema}", mbstd, *extra, f"optimizer.lr={lr}"]


# the best trial of the first (lost) run of +experiment=preset_search at 10 CPU-minutes, rank
# 3 of docs/preset_study_10min (2026-12-06), less its linear lr schedule
SEARCH10 = [
    "model.generator.channels=32",
    "model.discriminator.channels=48",
    "optimizer.lr=8.24e-4",
    "optimizer.betas=[0.0,0.9]",
    "trainer.batch_size=128",
    "trainer.ema=0.9999",
]
# the study's best trial (rank 1): the same recipe at its lr, rounded to 7e-4
STUDY10 = ["optimizer.lr=7e-4" if o.startswith("optimizer.lr=") else o for o in SEARCH10]
# +preset=fast10 as it was before batch 64 and trainer.memory_format (both 2026-12-07)
FAST10_B128 = ["+preset=fast10", "trainer.batch_size=128", "trainer.memory_format=contiguous"]
# Rows committed before trainer.memory_format (2026-12-07) ran with contiguous weights, the
# only layout then; since then auto is channels-last on a CPU (the same run, ~5-11 % less CPU
# per step, so more steps in a CPU budget): add trainer.memory_format=contiguous to redo them.
VARIANTS: dict[str, list[str]] = {
    "mlp_default": [*MLP],
    "mlp_ema": [*MLP, "trainer.ema=0.999"],
    "mlp_sn": [*MLP, "model.discriminator.spectral_norm=true"],
    "mlp_r1_ema": [*MLP, "penalty=r1", "penalty.weight=1", "trainer.ema=0.999"],
    "mlp_sn_ema": [*MLP, "model.discriminator.spectral_norm=true", "trainer.ema=0.999"],
    "mlp_ema_mbstd": [*MLP, "trainer.ema=0.999", "model.discriminator.minibatch_std=4"],
    "mlp_ema_dropout": [*MLP, "trainer.ema=0.999", "model.discriminator.dropout=0.3"],
    "mlp_ema_mbstd_dropout": [
        *MLP,
        "trainer.ema=0.999",
        "model.discriminator.minibatch_std=4",
        "model.discriminator.dropout=0.3",
    ],
    "mlp_ema_diffaug": [*MLP, "trainer.ema=0.999", "aug=diffaugment"],
    "mlp_ema_mbstd_lr4e-4": mlp_mbstd(4, "4e-4"),
    "mlp_ema_mbstd_lr8e-4": mlp_mbstd(4, "8e-4"),
    "mlp_ema_mbstd16_lr4e-4": mlp_mbstd(16, "4e-4"),
    "mlp_ema_mbstd16_dropout_lr4e-4": mlp_mbstd(16, "4e-4", "model.discriminator.dropout=0.3"),
    "mlp_ema9999_mbstd_lr4e-4": mlp_mbstd(4, "4e-4", ema="0.9999"),
    "mlp_ema_mbstd_dropout_lr4e-4": mlp_mbstd(4, "4e-4", "model.discriminator.dropout=0.3"),
    # PacGAN: D scores pairs
    "mlp_ema_mbstd16_pack2_lr4e-4": mlp_mbstd(16, "4e-4", "model.discriminator.pack=2"),
    "mlp_ema_mbstd16_lr8e-4": mlp_mbstd(16, "8e-4"),  # +preset=mlp's recipe (docs/losses.md)
    "dcgan_default": [],
    "dcgan_fast": ["+preset=fast"],
    "dcgan_search10": [*SEARCH10, "trainer.lr_schedule=linear"],
    "dcgan_search10_constant": SEARCH10,  # the schedule's share of the gain
    # the study's rank 1, lr rounded: +preset=fast10 before lazy R1 and bf16 joined it
    "dcgan_study10": STUDY10,
    # bfloat16 autocast: on this CPU (AMX) an iteration costs ~0.57x the CPU of fp32
    "dcgan_study10_bf16": [*STUDY10, "trainer.amp=bf16"],
    "dcgan_study10_bf16_linear": [*STUDY10, "trainer.amp=bf16", "trainer.lr_schedule=linear"],
    "dcgan_study10_bf16_translation": [
        *STUDY10,
        "trainer.amp=bf16",
        "aug=diffaugment",
        "aug.policy=[translation]",
    ],
    # +preset=fast10: the study's rank 1 + lazy R1 (gamma 1, every 16th D step) + bf16 where
    # native (trainer.amp=auto) + batch 64; channels-last weights (the CPU's default layout)
    "dcgan_fast10": ["+preset=fast10"],
    "dcgan_fast10_b32": ["+preset=fast10", "trainer.batch_size=32"],
    # the same at batch 128 and contiguous weights: +preset=fast10 before 2026-12-07 ~04:00
    "dcgan_fast10_b128": FAST10_B128,
    "dcgan_fast10_b128_fp32": [*FAST10_B128, "trainer.amp=off"],  # bf16's share of the gain
    "dcgan_fast10_b128_r1w3": [*FAST10_B128, "penalty.weight=3"],
    "dcgan_fast10_b128_linear": [*FAST10_B128, "trainer.lr_schedule=linear"],
    "dcgan_fast10_b128_lr1e-3": [*FAST10_B128, "optimizer.lr=1e-3"],
    "dcgan_fast10_b128_d32": [*FAST10_B128, "model.discriminator.channels=32"],
    "dcgan_fast10_contiguous": ["+preset=fast10", "trainer.memory_format=contiguous"],
    "dcgan_fast_cl": ["+preset=fast", "trainer.memory_format=channels_last"],
    "dcgan_fast_diffaug": ["+preset=fast", "aug=diffaugment"],
    "dcgan_fast_diffaug_tc": ["+preset=fast", "aug=diffaugment", "aug.policy=[translation,cutout]"],
    "dcgan_fast_cosine": ["+preset=fast", "trainer.lr_schedule=cosine"],
    "dcgan_ema": ["trainer.ema=0.999"],
    "dcgan_32_lr5e-4": [
        "model.generator.channels=32",
        "model.discriminator.channels=32",
        "optimizer.lr=5e-4",
    ],
    "dcgan_32_lr5e-4_ema": [
        "model.generator.channels=32",
        "model.discriminator.channels=32",
        "optimizer.lr=5e-4",
        "trainer.ema=0.999",
    ],
}


def train_variant(
    name: str, seed: int, steps: int, every: int, root: str, out: Path, cpu_minutes: float = 0
) -> Path:
    run_dir = out / f"{name}_seed{seed}" if not cpu_minutes else out / f"{name}_seed{seed}_cpu"
    done = read_results(run_dir) if (run_dir / "results.json").is_file() else {}
    if done.get("status") == "completed" and (cpu_minutes or done.get("steps") == steps):
        return run_dir  # already trained (the bench can be re-run to add variants)
    if cpu_minutes:  # the budget ends the run; steps only caps it
        steps = 1_000_000
    args = [
        *VARIANTS[name],
        f"seed={seed}",
        f"trainer.steps={steps}",
        f"trainer.cpu_minutes={cpu_minutes}",
        f"trainer.ckpt_every={every}",
        f"trainer.keep_checkpoints={steps // every + 1}",
        "trainer.sample_every=0",
        "trainer.progress=false",
        "metrics.enabled=false",
        f"data.root={root}",
        "data.download=false",
        f"hydra.run.dir={run_dir}",
        "trainer.overwrite=true",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    subprocess.run([sys.executable, "-m", "ganlab.train", *args], check=True, env=env)
    return run_dir


def curve(
    run_dir: Path, session: EvaluationSession, n: int, device, generator: str = "auto"
) -> list[dict]:
    """FID (and coverage) of every numbered checkpoint, oldest first; ``generator``: auto
    (the EMA G when the run kept one), or raw (G itself)."""
    cpu_per_it = read_results(run_dir)["throughput"]["cpu_s_per_it"]
    points = []
    for path in reversed(CheckpointDir(run_dir / "checkpoints").numbered()):
        G, _, state = load_generator(path, device, generator)
        z_dim = state["config"]["model"]["z_dim"]
        with torch.no_grad():
            m = session.metrics(sample_fn(G, z_dim, device), n)
            # the label reader's class mix of the same n samples (the MLP's even-cover target)
            logits = session.evaluator.embed(sample_fn(G, z_dim, device), n).logits
        shares = class_histogram(logits)
        points.append(
            {
                "step": state["step"],
                "cpu_min": state["step"] * cpu_per_it / 60,
                "generator": state["generator"],
                **{k: m[k] for k in ("fid", "kid", "classes_covered", "precision", "recall")},
                "class_shares": [round(float(v), 4) for v in shares],
            }
        )
        print(
            f"  {run_dir.name} step {state['step']} ({generator}): fid {m['fid']:.1f}, "
            f"classes {100 * shares.min():.1f}-{100 * shares.max():.1f} %",
            flush=True,
        )
    return points


def plot(rows: dict[str, list[dict]], out: Path) -> None:
    import matplotlib
    from matplotlib.figure import Figure

    # one colour per variant, its seeds as lines of that colour ("name sN" rows)
    variants = sorted({name.rsplit(" ", 1)[0] for name in rows})
    palette = matplotlib.colormaps["tab20" if len(variants) > 10 else "tab10"]
    colour = {v: palette(i % palette.N) for i, v in enumerate(variants)}
    fig = Figure(figsize=(12, 4.5))
    for i, key in enumerate(("step", "cpu_min")):
        ax = fig.add_subplot(1, 2, i + 1)
        labelled = set()
        for name, points in sorted(rows.items()):
            variant = name.rsplit(" ", 1)[0]
            label = None if variant in labelled else variant
            labelled.add(variant)
            xs, ys = [p[key] for p in points], [p["fid"] for p in points]
            ax.plot(xs, ys, marker="o", markersize=3, color=colour[variant], label=label)
        ax.set_xlabel("G steps" if key == "step" else "training CPU-minutes")
        ax.set_ylabel("FID (ganlab feature network)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.tight_layout()
    fig.savefig(out / "fid_vs_cpu.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default="~/.cache/ganlab/mnist")
    parser.add_argument(
        "--variants", default="mlp_default,mlp_ema", help="'' with --merge: only combine"
    )
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--steps", type=int, default=None, help="default: 20000 MLP, 5000 DCGAN")
    parser.add_argument("--every", type=int, default=None, help="checkpoint interval")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument(
        "--cpu-minutes", type=float, default=0, help="train each run for this CPU time instead"
    )
    parser.add_argument("--raw", action="store_true", help="EMA runs: also the raw G's curve")
    parser.add_argument(
        "--merge", type=Path, action="append", default=[], help="rows of an earlier JSON too"
    )
    parser.add_argument("--out", type=Path, default=Path("docs/quality"))
    parser.add_argument("--runs", type=Path, default=Path("outputs/bench_quality"))
    args = parser.parse_args()
    device = resolve_device("auto")
    session = EvaluationSession(args.data_root, device, args.n)
    rows: dict[str, list[dict]] = {}
    for name in filter(None, args.variants.split(",")):
        mlp = name.startswith("mlp")
        steps = args.steps or (20_000 if mlp else 5_000)
        every = args.every or (steps // 4 if mlp else 1000)
        for seed in map(int, args.seeds.split(",")):
            run_dir = train_variant(
                name, seed, steps, every, args.data_root, args.runs, args.cpu_minutes
            )
            n = min(args.n, session.n)
            rows[f"{name} s{seed}"] = curve(run_dir, session, n, device)
            if args.raw and "ema" in name:  # the same checkpoints' raw G, beside the average
                rows[f"{name} s{seed} raw"] = curve(run_dir, session, n, device, "raw")
    label_reader = session.classifier_info["weights_sha256"]
    features = session.features_info["weights_sha256"]
    for earlier in args.merge:  # an earlier run of this script, same networks and n
        previous = json.loads(earlier.read_text())
        if (previous["classifier"], previous.get("features"), previous["n"]) != (
            label_reader,
            features,
            args.n,
        ):
            raise SystemExit(f"{earlier}: other metric networks or n; not comparable")
        rows = {**previous["rows"], **rows}
    width = max(map(len, rows), default=7) + 1
    print(f"\n{'variant':<{width}} FID at (step, training CPU-minutes)")
    for name, points in rows.items():  # each row its own steps (a CPU budget ends anywhere)
        print(
            f"{name:<{width}} "
            + "  ".join(f"{p['fid']:.1f} ({p['step']}, {p['cpu_min']:.1f})" for p in points)
            + f"   classes {points[-1]['classes_covered']}"
            + (
                f", shares {100 * min(points[-1]['class_shares']):.1f}-"
                f"{100 * max(points[-1]['class_shares']):.1f} %"
                if "class_shares" in points[-1]
                else ""
            )
        )
    print(
        f"label reader {label_reader[:12]}, feature network {features[:12]}; "
        f"n = {min(args.n, session.n)} vs {session.reference.source}; "
        f"floor fid {session.floor()['fid']:.2f}"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    plot(rows, args.out)
    record = {"classifier": label_reader, "features": features, "n": args.n, "rows": rows}
    (args.out / "bench_quality.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
