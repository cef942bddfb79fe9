"""``python -m ganlab.sample <checkpoint | run dir> [n=64] [out=grid.png] [seed=0] [nrow=8]
[device=auto]``: images from a trained generator, as a PNG grid or an ``.npz`` of uint8.

Arguments after the path are ``key=value``, like the training overrides. The same seed gives
the same images on any device (z is drawn on the CPU).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn
from torchvision.utils import save_image

from ganlab.checkpoint import CheckpointDir, load_checkpoint
from ganlab.errors import GanlabError
from ganlab.metrics.evaluator import sample_fn
from ganlab.models import build_models
from ganlab.train import resolve_device

USAGE = (
    "usage: python -m ganlab.sample <checkpoint.pt | run dir> "
    "[n=64] [out=grid.png] [seed=0] [nrow=8] [device=auto]"
)
DEFAULTS: dict[str, Any] = {"n": 64, "out": "grid.png", "seed": 0, "nrow": 8, "device": "auto"}
FORMATS = (".png", ".npz")
BATCH = 1000  # images per forward pass: memory stays flat for any n


def find_checkpoint(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """(file, state) of a checkpoint file, or of a run dir's newest loadable checkpoint."""
    path = Path(path).expanduser()
    if path.is_dir():
        found = CheckpointDir(path / "checkpoints").load_newest_valid()
        if found is None:
            raise GanlabError(
                f"no checkpoint in {path / 'checkpoints'}: give a checkpoint file or a run dir"
            )
        return found
    return path, load_checkpoint(path, required=("G", "config"))


def device_from(name: str) -> torch.device:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N``...; a device this machine lacks is an error."""
    try:
        device = resolve_device(name)
    except RuntimeError:
        raise GanlabError(f"device={name!r} is not a torch device (try auto, cpu, cuda)") from None
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise GanlabError(f"device={name!r}: no such CUDA device here; use device=cpu")
    return device


def load_generator(
    path: str | Path, device: torch.device
) -> tuple[nn.Module, Path, dict[str, Any]]:
    """(G in eval mode on device, checkpoint file, its state) from a checkpoint or run dir."""
    path, state = find_checkpoint(path)
    model_cfg = state["config"].get("model") if isinstance(state["config"], dict) else None
    if not isinstance(model_cfg, dict):
        raise GanlabError(f"{path} is not a ganlab training checkpoint (no model config)")
    G, _ = build_models(OmegaConf.create(model_cfg))
    try:
        G.load_state_dict(state["G"])
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise GanlabError(f"{path}: G does not match its model config ({first})") from None
    return G.to(device).eval(), path, state


@torch.no_grad()
def generate(G: nn.Module, z_dim: int, n: int, seed: int, device: torch.device) -> Tensor:
    """n images [n, 1, 28, 28] in [-1, 1] on the CPU, from z ~ N(0, I) seeded by ``seed``."""
    draw = sample_fn(G, z_dim, device, seed)
    return torch.cat([draw(min(BATCH, n - start)).cpu() for start in range(0, n, BATCH)])


def to_uint8(images: Tensor) -> Tensor:
    """[-1, 1] -> uint8 0..255, rounded (the inverse of the data pipeline's scaling)."""
    return images.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)


def save_samples(images: Tensor, out: Path, nrow: int) -> None:
    """``.png``: one grid, nrow images per row; ``.npz``: uint8 [n, 28, 28] under "images"."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".png":
        save_image(images, out, nrow=nrow, normalize=True, value_range=(-1, 1))
    else:
        np.savez_compressed(out, images=to_uint8(images)[:, 0].numpy())


def parse_args(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """(checkpoint or run dir, options) from ``<path> key=value ...``."""
    # Sweep run dirs contain "=" (loss=hinge,seed=1): a path that exists is a path.
    if not argv or argv[0].startswith("-") or ("=" in argv[0] and not Path(argv[0]).exists()):
        raise GanlabError(f"the first argument must be a checkpoint or run dir; {USAGE}")
    allowed = ", ".join(f"{key}=" for key in DEFAULTS)
    options = dict(DEFAULTS)
    for arg in argv[1:]:
        key, sep, value = arg.partition("=")
        if not sep or key not in DEFAULTS:
            raise GanlabError(f"unknown argument {arg!r}; allowed: {allowed}")
        if isinstance(DEFAULTS[key], int):
            try:
                options[key] = int(value)
            except ValueError:
                raise GanlabError(f"{key}={value!r} is not an integer") from None
        else:
            options[key] = value
    for key in ("n", "nrow"):
        if options[key] < 1:
            raise GanlabError(f"{key}={options[key]} must be >= 1")
    if Path(options["out"]).suffix not in FORMATS:
        raise GanlabError(f"out={options['out']!r} must end in {' or '.join(FORMATS)}")
    return argv[0], options


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        print(
            f"{USAGE}\n\nout=*.png: one grid, nrow per row; out=*.npz: uint8 [n, 28, 28] "
            "under 'images'.\nA run dir means its newest loadable checkpoint."
        )
        return
    try:
        path, options = parse_args(argv)
        device = device_from(options["device"])
        G, path, state = load_generator(path, device)
        z_dim = state["config"]["model"]["z_dim"]
        images = generate(G, z_dim, options["n"], options["seed"], device)
        out = Path(options["out"])
        save_samples(images, out, options["nrow"])
    except GanlabError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"wrote {options['n']} samples from step {state.get('step')} of {path} to {out}")


if __name__ == "__main__":
    main()
