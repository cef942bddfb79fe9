"""``python -m ganlab.sample <checkpoint | run dir> [--n 64] [--out grid.png] [--seed 0]
[--nrow 8] [--scale 3] [--device auto] [--generator auto]``: images from a trained generator,
as a PNG grid (each pixel ``--scale`` x ``--scale``, as the grids a run saves) or an ``.npz``
of uint8. ``--generator auto`` uses the EMA generator when the run kept one.

Options are ``--key value`` like every ganlab tool's; ``key=value`` (the older style) works too.
The same seed gives the same images on any device (z is drawn on the CPU).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ganlab.build import load_generator
from ganlab.cli import entry_point
from ganlab.errors import GanlabError
from ganlab.metrics.conditional import balanced_labels
from ganlab.plugins import load_plugins
from ganlab.runtime import resolve_device
from ganlab.sampling import (
    FORMATS,
    GRID_SCALE,
    MAX_GRID,
    MAX_SAMPLES,
    SEED_MAX,
    check_writable,
    class_rows,
    generate,
    generate_labeled,
    sample_fn,
    save_samples,
    stream_npz,
)

USAGE = (
    "usage: python -m ganlab.sample <checkpoint.pt | run dir> "
    "[--n 64] [--out grid.png] [--seed 0] [--nrow 8] [--scale 3] [--device auto] "
    "[--generator auto|ema|raw] [--digit 0..9|all] (or key=value: n=64 out=grid.png ...)"
)
DEFAULTS: dict[str, Any] = {
    "n": 64,
    "out": "grid.png",
    "seed": 0,
    "nrow": 8,
    "scale": GRID_SCALE,  # a PNG grid's pixels enlarged as a run's own grids are
    "device": "auto",
    "generator": "auto",
    "digit": "",  # class-conditional runs: one digit, or all (one row per digit)
}
DIGITS = ("all", *map(str, range(10)))


def _flags_as_pairs(argv: list[str]) -> list[str]:
    """``--n 64`` / ``--n=64`` (the style of every ganlab tool) as ``n=64`` (the older style,
    still accepted), after the other arguments: ``--out g.png run`` is ``run out=g.png``."""
    rest, pairs, args = [], [], iter(argv)
    for arg in args:
        if not arg.startswith("--") or arg == "--":
            rest.append(arg)
            continue
        key, sep, value = arg[2:].partition("=")
        if not sep:
            value = next(args, None)
            if value is None:
                raise GanlabError(f"{arg} needs a value; {USAGE}")
        if key not in DEFAULTS:
            allowed = ", ".join(f"--{k}" for k in DEFAULTS)
            raise GanlabError(f"unknown argument {arg!r}; allowed: {allowed}")
        pairs.append(f"{key}={value}")
    return rest + pairs


def parse_args(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """(checkpoint or run dir, options) from ``<path> --key value ...`` or ``key=value``."""
    argv = _flags_as_pairs(argv)
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
    _check_options(options)
    return argv[0], options


def _check_options(options: dict[str, Any]) -> None:
    """Ranges and the output file, before a checkpoint is loaded or an image generated."""
    for key in ("n", "nrow", "scale"):
        if options[key] < 1:
            raise GanlabError(f"{key}={options[key]} must be >= 1")
    out = Path(options["out"])
    if out.suffix not in FORMATS:
        raise GanlabError(f"out={options['out']!r} must end in {' or '.join(FORMATS)}")
    if options["n"] > MAX_SAMPLES:
        raise GanlabError(f"n={options['n']} is too many: at most {MAX_SAMPLES:,} per call")
    if out.suffix == ".png" and options["n"] > MAX_GRID:
        raise GanlabError(
            f"n={options['n']} is too many for one PNG grid (at most {MAX_GRID:,}); "
            "use out=<file>.npz for more"
        )
    if options["digit"] not in ("", *DIGITS):
        raise GanlabError(f"digit={options['digit']!r} must be 0..9 or all")
    if not 0 <= options["seed"] <= SEED_MAX:
        raise GanlabError(f"seed={options['seed']} must be in 0..{SEED_MAX}")
    check_writable(out, f"out={options['out']}")


def _labels(options: dict[str, Any], n_classes: int, suffix: str, path: Path) -> Tensor | None:
    """The digits to ask a conditional G for (None for an unconditional one)."""
    digit = options["digit"]
    if not n_classes:
        if digit:
            raise GanlabError(
                f"digit={digit}: {path} holds an unconditional generator (cond=none); train "
                "with cond=projection or cond=acgan to ask for digits"
            )
        return None
    if digit not in ("", "all"):
        return torch.full((options["n"],), int(digit))
    if suffix == ".png":  # one row per digit, nrow of each
        return class_rows(n_classes, options["nrow"])
    return balanced_labels(options["n"], options["seed"])


def _check_finite(G: torch.nn.Module, path: Path, state: dict[str, Any]) -> None:
    """A generator with NaN/Inf weights (a run that diverged, a damaged file) would draw a
    grid of NaN: refuse it, naming the checkpoint and the tensor."""
    for name, tensor in [*G.named_parameters(), *G.named_buffers()]:
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise GanlabError(
                f"{path}: the {state.get('generator', 'G')} generator's {name} holds NaN/Inf "
                "(the run diverged?); sample an earlier checkpoint (checkpoints/step_*.pt)"
            )


@entry_point
def main(argv: list[str] | None = None) -> None:
    load_plugins()  # a checkpoint of a plugin's model or loss needs its registry entry
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        print(
            f"{USAGE}\n\n--out *.png: one grid, --nrow per row, each pixel --scale wide; "
            "--out *.npz: uint8 [n, 28, 28] under 'images' ([n, 3, 28, 28] for "
            "data=stacked_mnist, in colour in a grid).\n"
            "A run dir means its newest loadable checkpoint."
        )
        return
    path, options = parse_args(argv)
    device = resolve_device(options["device"])
    G, path, state = load_generator(path, device, options["generator"])
    _check_finite(G, path, state)
    z_dim = state["config"]["model"]["z_dim"]
    out = Path(options["out"])
    labels = _labels(options, G.n_classes, out.suffix, path)
    if labels is not None:  # a class-conditional generator: the asked-for digits
        images = generate_labeled(G, z_dim, labels, options["seed"], device)
        save_samples(images, out, options["nrow"], labels, options["scale"])
        options["n"] = len(labels)
    elif out.suffix == ".npz":  # streamed to disk a batch at a time: flat memory for any n
        stream_npz(sample_fn(G, z_dim, device, options["seed"]), options["n"], out)
    else:
        images = generate(G, z_dim, options["n"], options["seed"], device)
        save_samples(images, out, options["nrow"], scale=options["scale"])
    print(
        f"wrote {options['n']} samples from step {state.get('step')} of {path} "
        f"({state['generator']} generator) to {out}"
    )


if __name__ == "__main__":
    main()
