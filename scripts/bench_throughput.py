"""Training throughput by execution mode, side by side in one run.

    python scripts/bench_throughput.py --data-root ../shared/data/mnist \
        [--models mlp,dcgan] [--losses vanilla,wgan_gp,hinge] [--batches 64,256,1024] \
        [--modes naive,eager,default,reduce-overhead,max-autotune,bf16] [--steps 50] [--json F]

For model x loss x batch size x mode, G iterations/s (n_critic D updates + 1 G update each)
on the current device, every mode on the same trainer config and seed:
- ``naive``: a torch Dataset with per-item PIL transforms and a shuffling DataLoader, the way
  most GAN scripts feed MNIST (eager), the baseline every ratio is to;
- ``eager``: ganlab's trainer, the dataset one uint8 tensor on the device, batches drawn
  there, no host sync per step (``trainer.compile=off``);
- ``default`` / ``reduce-overhead`` / ``max-autotune``: ``trainer.compile=<mode>`` (the
  whole iteration under torch.compile; reduce-overhead replays CUDA graphs on a GPU);
- ``bf16``: eager under bfloat16 autocast (``trainer.amp=bf16``); ``<mode>+bf16`` both.

The first iteration (compilation, for compiled modes) and the warm-up are timed apart from the
measured steps. A mode that falls back to eager (the gradient penalties' double backward)
says so in its row. Peak memory is CUDA's allocator peak (none on a CPU). Prints a table and
writes JSON with ``--json``. On a CPU, modes default to naive,eager,bf16 (compiling is slower
there: measured 0.64x); ask for the others with ``--modes``.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import time
from collections.abc import Iterator

import torch
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from ganlab.build import build_trainer
from ganlab.config import hydra_compose
from ganlab.runtime import resolve_device

COMPILED = ("default", "reduce-overhead", "max-autotune")
CHUNK = 10  # iterations between clock reads when a row's time is capped (one sync each)


class PILDataset(Dataset):
    """Per-item PIL images and transforms: the common (slow) way to feed a GAN."""

    def __init__(self, images_u8: torch.Tensor):
        self.images = images_u8.cpu().numpy()[:, 0]
        self.transform = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize([0.5], [0.5])]
        )

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(Image.fromarray(self.images[i], mode="L"))


def naive_batches(images_u8: torch.Tensor, batch_size: int, device) -> Iterator[torch.Tensor]:
    loader = DataLoader(PILDataset(images_u8), batch_size, shuffle=True, drop_last=True)
    while True:
        for real in loader:
            yield real.to(device)


def split_mode(mode: str) -> tuple[str, str]:
    """A mode name as (trainer.compile, trainer.amp): "reduce-overhead+bf16" -> both."""
    compile_mode, _, amp = mode.partition("+")
    if compile_mode == "bf16":
        return "off", "bf16"
    return ("off" if compile_mode in ("naive", "eager") else compile_mode), amp or "off"


def bench_config(
    model: str, loss: str, batch: int, data_root: str, extra: tuple[str, ...] = ()
) -> DictConfig:
    """The trainer config a row measures: the MNIST test split (so that every device has the
    same data), no metrics, ``extra`` overrides last."""
    overrides = [f"model={model}", f"loss={loss}", f"trainer.batch_size={batch}"]
    overrides += [f"data.root={data_root}", "data.download=false", "data.split=test"]
    overrides += ["metrics.enabled=false", *extra]
    return hydra_compose(overrides)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(
    cfg, mode: str, steps: int, device: torch.device, max_seconds: float | None = None
) -> dict:
    """One mode: first-iteration time, warm-up time, then it/s over ``steps`` iterations
    (fewer when ``max_seconds`` of measuring run out first: whole chunks of ``CHUNK``)."""
    compile_mode, amp = split_mode(mode)
    cfg = copy.deepcopy(cfg)  # built as a run in this mode is (capturable optimizers on CUDA)
    cfg.trainer.compile, cfg.trainer.amp = compile_mode, amp
    torch.manual_seed(0)
    trainer = build_trainer(cfg, device)
    if mode == "naive":  # the same trainer and losses; only the data path differs
        batches = naive_batches(trainer.data.images, trainer.batch_size, device)
        trainer.data.sample = lambda n: next(batches)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def timed(n: int, limit: float | None = None) -> tuple[int, float]:
        """Iterations run and their seconds: ``n``, or whole chunks until ``limit`` s."""
        sync(device)
        start, done = time.perf_counter(), 0
        while done < n:
            for _ in range(min(CHUNK, n - done)):
                trainer.iterate()
            done += min(CHUNK, n - done)
            if limit is not None:
                sync(device)
                if time.perf_counter() - start >= limit:
                    break
        sync(device)
        return done, time.perf_counter() - start

    first = timed(1)[1]  # compilation, for a compiled mode; the DataLoader's start for naive
    warmup = timed(max(3, steps // 10), max_seconds)[1]  # CUDA-graph recording, allocator
    done, seconds = timed(steps, max_seconds)
    used = trainer.execution["compile"]  # after the iterations: a failed compile fell back
    return {
        "it_per_s": done / seconds,
        "images_per_s": done / seconds * cfg.trainer.batch_size,
        "steps": done,
        "first_iteration_s": first,
        "warmup_s": warmup,
        "compile_used": used,
        "fallback": compile_mode != "off" and used == "off",
        "error": trainer.execution.get("error"),
        "peak_memory_mb": (
            torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default="~/.cache/ganlab/mnist")
    parser.add_argument("--models", default="mlp,dcgan")
    parser.add_argument("--losses", default="vanilla,wgan_gp,hinge")
    parser.add_argument("--batches", default="64,256,1024")
    parser.add_argument(
        "--modes", default=None, help="default: all on CUDA; on CPU naive,eager,bf16"
    )
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json")
    args = parser.parse_args()
    device = resolve_device(args.device)
    default_modes = (
        "naive,eager,default,reduce-overhead,max-autotune,bf16,reduce-overhead+bf16"
        if device.type == "cuda"
        else "naive,eager,bf16"
    )
    modes = (args.modes or default_modes).split(",")
    for mode in modes:
        compile_mode, amp = split_mode(mode)
        if compile_mode not in ("off", *COMPILED) or amp not in ("off", "bf16"):
            parser.error(f"unknown mode {mode!r}")

    rows = []
    header = f"{'model':6} {'loss':8} {'batch':>5} {'mode':22} {'it/s':>9} {'img/s':>10} "
    header += f"{'x naive':>8} {'first s':>8} {'warm s':>7} {'peak MB':>8}"
    print(header, flush=True)
    for model, loss, batch in itertools.product(
        args.models.split(","), args.losses.split(","), map(int, args.batches.split(","))
    ):
        cfg = bench_config(model, loss, batch, args.data_root)
        naive = None
        for mode in modes:
            row = {"model": model, "loss": loss, "batch": batch, "mode": mode}
            row["n_critic"] = cfg.trainer.n_critic
            row.update(measure(cfg, mode, args.steps, device))
            naive = row["it_per_s"] if mode == "naive" else naive
            row["x_naive"] = row["it_per_s"] / naive if naive else None
            rows.append(row)
            peak = row["peak_memory_mb"]
            shown = mode + (" (eager: fallback)" if row["fallback"] else "")
            print(
                f"{model:6} {loss:8} {batch:5} {shown:22} {row['it_per_s']:9.1f} "
                f"{row['images_per_s']:10.0f} "
                f"{row['x_naive'] or float('nan'):8.2f} {row['first_iteration_s']:8.2f} "
                f"{row['warmup_s']:7.2f} {'-' if peak is None else f'{peak:.0f}':>8}",
                flush=True,
            )
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"\ndevice {device} ({name}), torch {torch.__version__}; G iterations/s over "
        f"{args.steps} steps after the first iteration and a warm-up"
    )
    if args.json:
        with open(args.json, "w") as f:
            info = {"device": str(device), "device_name": name, "torch": torch.__version__}
            json.dump({**info, "steps": args.steps, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
