"""Copy a sweep's run folders without their bulk, to commit a study beside its report.

    python scripts/slim_runs.py outputs/loss_study docs/loss_study --grids-every 500

Per run it keeps ``results.json``, ``train.log``, ``.hydra/`` (what ``ganlab.report`` reads),
the TensorBoard events without their images (scalars, text and HParams: the curves and the
HParams tab), the sample grids at every ``--grids-every`` steps (the report's pictures) and
the final generator alone (``generator.pt``: the EMA G in float16, 0.5 MB for the study's
DCGAN), which ``ganlab-eval RUN/generator.pt`` re-scores when the metrics change.
Checkpoints, ``progress.gif`` and TensorBoard's copies of the grids stay behind: the 48 runs
of docs/loss_study (grids every 500 steps) keep 12 MB of their 666 MB. Folders already in
DST are refused, not merged.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
from tensorboard.compat.proto.event_pb2 import Event
from torch.utils.tensorboard.writer import FileWriter

from ganlab.checkpoint import GENERATOR_FILE, locate, save_generator
from ganlab.report.runs import step_of
from ganlab.rundir import CHECKPOINTS_DIR, RESULTS_FILE, SAMPLES_DIR, TB_DIR

KEPT_FILES = (RESULTS_FILE, "train.log")


def _is_image(value) -> bool:  # a tensorboard Summary.Value
    return value.HasField("image") or value.metadata.plugin_data.plugin_name == "images"


def slim_events(src: Path, dst: Path) -> int:
    """Each event file of ``src`` rewritten under ``dst`` without image values; returns the
    number of images left out."""
    dropped = 0
    for events in sorted(src.glob("events.out.tfevents.*")):
        writer = FileWriter(str(dst), filename_suffix=events.name.split("tfevents", 1)[1])
        # raw records: the plain loader migrates scalars into tensors, which the report's
        # EventAccumulator would then not list as scalars
        for record in RawEventFileLoader(str(events)).Load():
            event = Event.FromString(record)
            if event.HasField("summary"):
                kept = [v for v in event.summary.value if not _is_image(v)]
                dropped += len(event.summary.value) - len(kept)
                if not kept:
                    continue
                del event.summary.value[:]
                event.summary.value.extend(kept)
            writer.add_event(event)
        writer.close()
    return dropped


def slim_run(src: Path, dst: Path, grids_every: int) -> None:
    dst.mkdir(parents=True)
    for name in KEPT_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    if (src / ".hydra").is_dir():
        shutil.copytree(src / ".hydra", dst / ".hydra")
    if (src / TB_DIR).is_dir():
        slim_events(src / TB_DIR, dst / TB_DIR)
    grids = sorted((src / SAMPLES_DIR).glob("step_*.png"))
    kept = [g for g in grids if step_of(g) % grids_every == 0] or grids[-1:]
    if kept:
        (dst / SAMPLES_DIR).mkdir()
    for grid in kept:
        shutil.copy2(grid, dst / SAMPLES_DIR / grid.name)
    if (src / CHECKPOINTS_DIR).is_dir():  # the newest loadable checkpoint: the final G
        save_generator(locate(src)[1], dst / GENERATOR_FILE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="the sweep folder (hydra.sweep.dir)")
    parser.add_argument("dst", type=Path, help="where the slim copies go (one folder per run)")
    parser.add_argument("--grids-every", type=int, default=500, help="keep grids at these steps")
    args = parser.parse_args(argv)
    if args.grids_every < 1:
        parser.error(f"--grids-every must be at least 1, got {args.grids_every}")
    runs = sorted(p.parent for p in args.src.glob(f"*/{RESULTS_FILE}"))
    if not runs:
        print(f"error: no run folders (*/{RESULTS_FILE}) in {args.src}", file=sys.stderr)
        return 2
    clashes = [r.name for r in runs if (args.dst / r.name).exists()]
    if clashes:
        print(
            f"error: {args.dst} already holds {clashes[0]} (and {len(clashes) - 1} more); "
            "choose an empty folder",
            file=sys.stderr,
        )
        return 2
    for run in runs:
        slim_run(run, args.dst / run.name, args.grids_every)
    if (args.src / "multirun.yaml").is_file():
        shutil.copy2(args.src / "multirun.yaml", args.dst / "multirun.yaml")
    print(f"copied {len(runs)} runs from {args.src} to {args.dst} (final G only, no TB images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
