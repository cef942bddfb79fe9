"""``python -m ganlab.sample <checkpoint | run dir> [n=64] [out=grid.png] [seed=0] [nrow=8]
[device=auto]``: images from a trained generator, as a PNG grid or an ``.npz`` of uint8.

Arguments after the path are ``key=value``, like the training overrides. The same seed gives
the same images on any device (z is drawn on the CPU).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ganlab.build import load_generator
from ganlab.cli import entry_point
from ganlab.errors import GanlabError
from ganlab.runtime import resolve_device
from ganlab.sampling import FORMATS, generate, save_samples

USAGE = (
    "usage: python -m ganlab.sample <checkpoint.pt | run dir> "
    "[n=64] [out=grid.png] [seed=0] [nrow=8] [device=auto]"
)
DEFAULTS: dict[str, Any] = {"n": 64, "out": "grid.png", "seed": 0, "nrow": 8, "device": "auto"}


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


@entry_point
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        print(
            f"{USAGE}\n\nout=*.png: one grid, nrow per row; out=*.npz: uint8 [n, 28, 28] "
            "under 'images'.\nA run dir means its newest loadable checkpoint."
        )
        return
    path, options = parse_args(argv)
    device = resolve_device(options["device"])
    G, path, state = load_generator(path, device)
    z_dim = state["config"]["model"]["z_dim"]
    images = generate(G, z_dim, options["n"], options["seed"], device)
    out = Path(options["out"])
    save_samples(images, out, options["nrow"])
    print(f"wrote {options['n']} samples from step {state.get('step')} of {path} to {out}")


if __name__ == "__main__":
    main()
