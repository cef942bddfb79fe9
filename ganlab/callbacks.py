"""Hydra callbacks: checks before Hydra itself touches the disk, and a sweep's summary."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ganlab.claim import holds_a_run, refusal
from ganlab.errors import GanlabError
from ganlab.rundir import RESULTS_FILE, read_results


def _make_writable_dir(path: str, key: str) -> None:
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        probe = Path(path) / ".ganlab-write-test"
        probe.touch()
        probe.unlink()
    except OSError as e:
        print(
            f"error: cannot write the output folder {key}={path}: {e.strerror or e}",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


class CheckOutputDir(Callback):
    """Fail with one line when the run or sweep folder cannot be created or written."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _make_writable_dir(config.hydra.run.dir, "hydra.run.dir")
        # Refuse a folder holding another run before Hydra rewrites its .hydra/ files
        # (train() checks again, under a lock, for sweeps and the Python API).
        t = config.trainer
        if holds_a_run(Path(config.hydra.run.dir)) and t.resume != "auto" and not t.overwrite:
            print(f"error: {refusal(Path(config.hydra.run.dir))}", file=sys.stderr)
            raise SystemExit(2)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _make_writable_dir(config.hydra.sweep.dir, "hydra.sweep.dir")


class SweepSummary(Callback):
    """At a sweep's end: one line per job (status, FID), and exit 1 if any job failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        root = Path(config.hydra.sweep.dir)
        failed = []
        print(f"sweep {root}:", file=sys.stderr)
        for path in sorted(root.rglob(RESULTS_FILE)):
            try:
                results = read_results(path.parent)
            except GanlabError as e:
                results = {"status": "failed", "reason": str(e)}
            status, fid = results.get("status", "unknown"), results.get("metrics", {}).get("fid")
            shown = f", fid {fid:.4g}" if isinstance(fid, int | float) else ""
            reason = f": {results['reason']}" if results.get("reason") else ""
            print(f"  {path.parent.relative_to(root)}: {status}{shown}{reason}", file=sys.stderr)
            if status == "failed":
                failed.append(path.parent)
        print(f"  compare them: python -m ganlab.report {root}", file=sys.stderr)
        if failed:
            print(f"error: {len(failed)} job(s) of the sweep failed", file=sys.stderr)
            raise SystemExit(1)
