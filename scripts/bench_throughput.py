"""Training throughput, side by side: a typical DataLoader GAN script vs ganlab's trainer.

    python scripts/bench_throughput.py --data-root ../shared/data/mnist [--steps 50] [--json F]

For model x loss x batch size, measures G iterations/s (n_critic D steps + 1 G step each)
after a warm-up, on the current device:
- ``naive``: a torch Dataset over the images with per-item PIL transforms and a shuffling
  DataLoader, the way most GAN scripts feed MNIST;
- ``resident``: ganlab's Trainer, the dataset one uint8 tensor on the device, batches drawn
  there, no host sync per step.
Prints a table and optionally writes JSON. (Compiled and CUDA-graph modes are not built yet.)
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import torch
from hydra import compose, initialize_config_dir
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from ganlab.build import build_trainer
from ganlab.config import config_dir
from ganlab.runtime import resolve_device


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


def naive_batches(trainer, batch_size: int, device: torch.device):
    loader = DataLoader(PILDataset(trainer.data.images), batch_size, shuffle=True, drop_last=True)
    while True:
        for real in loader:
            yield real.to(device)


def measure(trainer, steps: int, n_critic: int, device: torch.device, naive: bool) -> float:
    if naive:  # same trainer and losses; only the data path differs
        batches = naive_batches(trainer, trainer.batch_size, device)
        trainer.data.sample = lambda n: next(batches)

    def run(n: int) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(n):
            for _ in range(n_critic):
                trainer.d_step()
            trainer.g_step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    run(max(2, steps // 10))  # warm-up: allocator, kernels, DataLoader start
    return steps / run(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default="~/.cache/ganlab/mnist")
    parser.add_argument("--models", default="mlp,dcgan")
    parser.add_argument("--losses", default="vanilla,wgan_gp,hinge")
    parser.add_argument("--batches", default="64,256")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json")
    args = parser.parse_args()
    device = resolve_device(args.device)

    rows = []
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
        for model, loss, batch in itertools.product(
            args.models.split(","), args.losses.split(","), map(int, args.batches.split(","))
        ):
            cfg = compose(
                "config",
                [
                    f"model={model}",
                    f"loss={loss}",
                    f"trainer.batch_size={batch}",
                    f"data.root={args.data_root}",
                    "data.download=false",
                    "data.split=test",
                    "metrics.enabled=false",
                ],
            )
            row = {"model": model, "loss": loss, "batch": batch, "n_critic": cfg.trainer.n_critic}
            for mode in ("naive", "resident"):
                torch.manual_seed(0)
                trainer = build_trainer(cfg, device)
                row[mode] = measure(
                    trainer, args.steps, cfg.trainer.n_critic, device, naive=mode == "naive"
                )
            row["speedup"] = row["resident"] / row["naive"]
            row["images_per_s"] = row["resident"] * batch
            rows.append(row)
            print(
                f"{model:6} {loss:8} batch {batch:5}: naive {row['naive']:8.1f} it/s  "
                f"resident {row['resident']:8.1f} it/s  x{row['speedup']:.2f}",
                flush=True,
            )
    print(f"\ndevice {device}; G iterations/s over {args.steps} steps after a warm-up")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(device), "steps": args.steps, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
