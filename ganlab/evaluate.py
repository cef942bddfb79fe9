"""``python -m ganlab.evaluate <run dir | checkpoint.pt> [--n N] [--data-root R] [--json F]``:
recompute a checkpoint's sample-quality metrics; print a table, then the same as JSON.
``--images X.npz`` (or a folder of PNGs, ``[--labels F]``) scores a set of images instead, with
the same metrics, floors and provenance (``ganlab.image_sets`` says what it reads).

Generated images (z seeded by ``--seed``) are compared with the MNIST test split found under
``--data-root`` (default: the run's ``data.root``), beside the real-vs-real floor (training
images vs the test split). The JSON records the classifier's sha256: compare only numbers
made with the same classifier.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from ganlab.build import GENERATORS, load_generator
from ganlab.cli import entry_point
from ganlab.config import MIN_SAMPLES
from ganlab.console import results_table
from ganlab.data import DEFAULT_ROOT
from ganlab.errors import GanlabError
from ganlab.image_sets import ImageSet, read_images
from ganlab.metrics import suite
from ganlab.metrics.session import EvaluationSession
from ganlab.metrics.suite import GeneratorSpec, Request
from ganlab.plugins import load_plugins
from ganlab.runtime import resolve_device
from ganlab.sampling import SEED_MAX, check_writable
from ganlab.stacked import MODE_SAMPLES

log = logging.getLogger(__name__)

DEFAULT_SAMPLES = 10_000


def evaluate(
    path: str | Path,
    n: int | None = None,
    data_root: str | None = None,
    device: str = "auto",
    seed: int = 0,
    download: bool = False,
    floor: bool = True,
    generator: str = "auto",
) -> dict[str, Any]:
    """Metrics of the checkpoint's G (n samples) and the real floor, with their provenance,
    measured as its run measured them (``ganlab.metrics.suite``: every family that applies).

    ``n`` defaults to ``DEFAULT_SAMPLES``, or all the real images when there are fewer; an
    ``n`` larger than the real set is an error (it cannot be compared at that size). A
    Stacked MNIST G is measured as in training: n digits (its channels), and the mode
    metrics of the run's ``metrics.mode_samples`` images (ganlab.metrics.modes); a
    class-conditional G with labels drawn uniformly for the feature metrics, and
    ``label_accuracy`` and ``intra_fid`` on n images with balanced labels.
    """
    start = time.perf_counter()
    torch_device = resolve_device(device)
    G, path, state = load_generator(path, torch_device, generator)
    config = state["config"]
    root = data_root or config.get("data", {}).get("root", DEFAULT_ROOT)
    wanted = DEFAULT_SAMPLES if n is None else n
    session = EvaluationSession(
        root, torch_device, wanted, download=download, floor=floor, seed=seed
    )
    if n is not None and n > session.n:  # compare fewer than asked: say so, never cap silently
        raise GanlabError(
            f"--n {n}: at most {session.n} samples can be compared, the number of real images "
            f"in {session.reference.source} under {root}; use --n {session.n} or less"
        )
    mode_samples = (config.get("metrics") or {}).get("mode_samples", MODE_SAMPLES)
    spec = GeneratorSpec(G, G.z_dim, torch_device, G.n_classes, G.image_channels)
    result = suite.evaluate(session, spec, Request((session.n,), seed, mode_samples))
    return {
        "checkpoint": str(path),
        "step": state.get("step"),
        "loss": config.get("loss", {}).get("name"),
        "model": config["model"].get("name"),
        "generator": state["generator"],
        "n_samples": session.n,
        "seed": seed,
        "data": _data_record(session, root),
        "classifier": session.classifier_info,
        "feature_network": session.features_info,
        "metrics": result.metrics[session.n],
        "floor": result.floors[session.n] or None,
        "evaluation": result.provenance[session.n],
        "seconds": round(time.perf_counter() - start, 2),
    }


def evaluate_images(
    images: str | Path,
    n: int | None = None,
    labels: str | Path | None = None,
    data_root: str | None = None,
    device: str = "auto",
    seed: int = 0,
    download: bool = False,
    floor: bool = True,
) -> dict[str, Any]:
    """Metrics of a set of images read from a file or folder (``ganlab.image_sets``: an .npz,
    an .npy, a folder of PNGs) and the real floor, with their provenance, measured through
    the same families as a generator's samples (``suite.evaluate_images``).

    ``n`` (default: all of them) takes a seeded random subset; with labels (``labels``, or a
    ``labels`` array in the .npz) ``label_accuracy`` and ``intra_fid`` are added. Raises
    ``GanlabError`` (one line) for a missing file, bad shapes, dtypes, ranges, NaN, or fewer
    than ``MIN_SAMPLES`` images, before the classifier is loaded.
    """
    start = time.perf_counter()
    found = read_images(images, labels)
    wanted = _requested(found, n)
    torch_device = resolve_device(device)
    root = data_root or DEFAULT_ROOT
    channels = found.images.shape[1]
    session = EvaluationSession(
        root, torch_device, wanted * channels, download=download, floor=floor, seed=seed
    )
    if channels == 1 and session.n < wanted:  # as many real images as scored ones, or fewer
        if n is not None:
            raise GanlabError(
                f"--n {n}: at most {session.n} images can be compared, the number of real "
                f"images in {session.reference.source} under {root}; use --n {session.n}"
            )
        log.warning(
            "%s: %d of its %d images are scored (seeded), as many as there are real images",
            found.source,
            session.n,
            len(found),
        )
        wanted = session.n
    used = found.subset(wanted, seed) if wanted < len(found) else found
    n_samples, result = suite.evaluate_images(session, used.images, used.labels, seed)
    return {
        "images": {**found.describe(), "count": len(found), "used": len(used)},
        "n_samples": n_samples,
        "seed": seed,
        "data": _data_record(session, root),
        "classifier": session.classifier_info,
        "feature_network": session.features_info,
        "metrics": result.metrics[n_samples],
        "floor": result.floors[n_samples] or None,
        "evaluation": {**result.provenance[n_samples], "images": found.source},
        "seconds": round(time.perf_counter() - start, 2),
    }


def _requested(found: ImageSet, n: int | None) -> int:
    """How many of ``found``'s images are asked for, refused (one line) when there are fewer
    than that or fewer than ``MIN_SAMPLES``."""
    wanted = len(found) if n is None else n
    if wanted > len(found):
        raise GanlabError(f"--n {n}: {found.source} holds only {len(found):,} images")
    if wanted < MIN_SAMPLES:
        raise GanlabError(
            f"{found.source}: {wanted} images; at least {MIN_SAMPLES} are needed (k-NN "
            "metrics with k=5 and KID's subsets; metrics.n_samples has the same floor)"
        )
    return wanted


def _data_record(session: EvaluationSession, root: str | Path) -> dict[str, Any]:
    """Where the real images an image set was compared with came from."""
    return {
        "root": str(root),
        "reference": session.reference.source,
        "reference_images": len(session.reference),
        "floor": session.floor_set.source if session.floor_set is not None else None,
    }


def format_table(report: dict[str, Any]) -> str:
    """The run's results table (``ganlab.console.results_table``), every real floor beside
    its metric."""
    floors = {f"{key}_floor": value for key, value in (report["floor"] or {}).items()}
    return results_table({**report["metrics"], **floors}, report["evaluation"])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ganlab.evaluate",
        description="Recompute a checkpoint's sample-quality metrics, or score a set of images "
        "with --images (table, then JSON).",
        epilog="key=value works too, as ganlab-sample's older style: n=2000 data_root=R "
        "floor=false",
    )
    parser.add_argument(
        "path",
        nargs="?",
        help="a checkpoint file, or a run dir (its newest loadable checkpoint)",
    )
    parser.add_argument(
        "--images",
        type=Path,
        default=None,
        help="score these images instead of a checkpoint's: an .npz (its 'images' array, as "
        "ganlab-sample writes, or its only one; 'labels' optional), an .npy, or a folder of "
        "28x28 grayscale PNGs; uint8 0..255 or floats in [0, 1] or [-1, 1], shaped [n, 28, 28], "
        "[n, 1, 28, 28], [n, 28, 28, 1] or [n, 784] ([n, 3, 28, 28]: Stacked MNIST)",
    )
    parser.add_argument(
        "--labels",
        type=Path,
        default=None,
        help="with --images: the digit of each image (.npy, .npz or one integer per line; PNGs "
        "in name order): adds label_accuracy and intra_fid",
    )
    parser.add_argument(
        "--n",
        type=int,
        default=None,
        help=f"generated and real samples each (default {DEFAULT_SAMPLES:,}, or all the real "
        "images when there are fewer); with --images a seeded subset (default: all of them)",
    )
    parser.add_argument(
        "--data-root",
        default=None,
        help=f"MNIST IDX folder (default: the run's; with --images {DEFAULT_ROOT})",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0, help="seed of z and of the real subset")
    parser.add_argument("--download", action="store_true", help="download missing MNIST files")
    parser.add_argument(
        "--generator",
        choices=GENERATORS,
        default="auto",
        help="auto: the EMA generator when the run kept one, else G",
    )
    parser.add_argument(
        "--no-floor", dest="floor", action="store_false", help="skip the real-vs-real floor"
    )
    return parser


def _check_args(args: argparse.Namespace) -> None:
    """Ranges and the output file, before a checkpoint is loaded or an image generated."""
    if args.images is not None and args.path is not None:
        raise GanlabError(
            f"give a checkpoint ({args.path}) or --images {args.images}, not both: --images "
            "scores a set of images in place of a generator's samples"
        )
    if args.images is None and args.path is None:
        raise GanlabError("give a checkpoint or run dir to evaluate, or --images FILE")
    if args.images is None and args.labels is not None:
        raise GanlabError(f"--labels {args.labels} goes with --images (the digit of each image)")
    if args.images is not None and args.generator != "auto":
        raise GanlabError(f"--generator {args.generator} picks a checkpoint's G, not --images")
    if args.n is not None and args.n < MIN_SAMPLES:
        raise GanlabError(
            f"--n must be >= {MIN_SAMPLES} (k-NN metrics with k=5 and KID's subsets need "
            f"that many; metrics.n_samples has the same floor), got {args.n}"
        )
    if not 0 <= args.seed <= SEED_MAX:
        raise GanlabError(f"--seed {args.seed} must be in 0..{SEED_MAX}")
    if args.json is not None:
        check_writable(args.json, f"--json {args.json}")


def _pairs_as_flags(argv: list[str]) -> list[str]:
    """``n=2000``, ``data_root=R``, ``floor=false`` (the key=value style ganlab-sample used to
    have) as the flags they stand for; a path that exists stays a path."""
    valued = {"n", "data_root", "json", "device", "seed", "generator", "images", "labels"}
    switches = {"download": ("--download", None), "floor": (None, "--no-floor")}
    flags = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.replace("-", "_")
        if not sep or arg.startswith("-") or Path(arg).exists():
            flags.append(arg)
        elif key in valued:
            flags += [f"--{key.replace('_', '-')}", value]
        elif key in switches and value.lower() in ("true", "false"):
            flag = switches[key][0 if value.lower() == "true" else 1]
            flags += [flag] if flag else []
        else:
            flags.append(arg)
    return flags


@entry_point
def main(argv: list[str] | None = None) -> None:
    load_plugins()  # a checkpoint of a plugin's model or loss needs its registry entry
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(_pairs_as_flags(argv))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _check_args(args)
    if args.images is not None:
        report = evaluate_images(
            args.images,
            args.n,
            args.labels,
            args.data_root,
            args.device,
            args.seed,
            args.download,
            args.floor,
        )
    else:
        report = evaluate(
            args.path,
            args.n,
            args.data_root,
            args.device,
            args.seed,
            args.download,
            args.floor,
            args.generator,
        )
    text = json.dumps(report, indent=2)
    print(format_table(report))
    print(text)
    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(text + "\n")
        except OSError as e:  # checked at the start, but the disk may have filled since
            raise GanlabError(f"cannot write --json {args.json}: {e.strerror or e}") from None


if __name__ == "__main__":
    main()
