"""The runs of a sweep: finding their folders, reading what they wrote, telling failures apart.

A run folder holds ``results.json``, or a ``.hydra`` folder without it (a crashed run). Values
are read from results.json by dotted name (``metrics.fid``); a null there is a NaN/Inf the run
produced (results.json has no NaN), an absent key a number that was never computed.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ganlab.errors import GanlabError
from ganlab.rundir import (
    RESULTS_FILE,
    SAMPLES_DIR,
    STATUSES,
    TB_DIR,
    lookup,
    parse_overrides,
    read_results,
)

# Training-side numbers every run has, and where: outside ``metrics.`` (see metric_key).
TRAINING_METRICS = ("final.loss_d", "final.loss_g", "throughput.it_per_s")
FINAL_LOSSES = ("final.loss_d", "final.loss_g")

MISSING = "–"  # shown where there is no number, and the group of a run without a value
UNREADABLE = "unreadable results.json"  # the status given to a results.json that isn't JSON
_WHY = "__why__"  # beside UNREADABLE: what is wrong with the file


class ReportError(GanlabError):
    """The sweep cannot be reported (no such folder, no runs, unknown metric)."""


@dataclass
class Run:
    """One run folder of the sweep.

    ``results`` is empty for a run that left no results.json (crashed or still running).
    ``label`` is the short name shown in tables: the overrides that differ between runs.
    """

    path: Path
    name: str
    results: dict[str, Any]
    overrides: dict[str, str]
    label: str = ""
    failure: str | None = None  # why the run counts as failed (set by summarize)

    @property
    def failed(self) -> bool:
        return self.failure is not None


# --- finding and reading run folders --------------------------------------------------------


def _read_hydra(run_dir: Path, name: str) -> Any:
    """A YAML file Hydra saved in the run's ``.hydra/`` (None when absent, empty or unreadable:
    a damaged run folder is reported as such, it does not stop the report)."""
    path = run_dir / ".hydra" / name
    try:
        return yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


# The parts of results.json the report reads, and their types: a file where one is of
# another type (hand-edited, or not ganlab's) is unreadable, not a crash of the report.
_SECTIONS = ("metrics", "final", "throughput", "data", "evaluation")


def _read_results(run_dir: Path) -> dict[str, Any]:
    try:
        results = read_results(run_dir)
    except GanlabError as e:
        # A half-written (or hand-edited) file: report it as a failure, don't stop.
        why = str(e).removeprefix(str(run_dir / RESULTS_FILE)).strip(": ")
        return {"status": UNREADABLE, _WHY: why}
    why = _shape_problem(results)
    return {"status": UNREADABLE, _WHY: why} if why else results


def _shape_problem(results: dict[str, Any]) -> str | None:
    """What makes a results.json object unusable (``"status": 5``, ``"metrics": "x"``)."""
    status = results.get("status")
    if status is not None and status not in STATUSES:
        return f"status is {status!r}, not one of {', '.join(STATUSES)}"
    reason = results.get("reason")
    if reason is not None and not isinstance(reason, str):
        return f"reason is {reason!r}, not a text"
    for key in _SECTIONS:
        value = results.get(key)
        if value is not None and not isinstance(value, dict):
            return f"{key} is {value!r:.40}, not an object"
    return None


def _run_dirs(root: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, _ in os.walk(root):
        path = Path(dirpath)
        # A crashed run has Hydra's folder but never got to write results.json.
        if (path / RESULTS_FILE).is_file() or (path / ".hydra").is_dir():
            found.append(path)
            dirnames.clear()  # a run's own subfolders (tb/, samples/) hold no runs
        else:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    return sorted(found)


def _short_labels(runs: Sequence[Run]) -> None:
    """Label each run by the overrides whose value differs between runs (``loss=hinge,seed=1``)."""
    keys = sorted({k for run in runs for k in run.overrides})
    varying = [k for k in keys if len({run.overrides.get(k) for run in runs}) > 1]
    for run in runs:
        parts = [f"{k}={run.overrides[k]}" for k in varying if k in run.overrides]
        run.label = ",".join(parts) or run.name
    # Copied or hand-made folders can share overrides: the first keeps the short label,
    # the others are named by their folder (unique by construction).
    seen: set[str] = set()
    for run in runs:
        if run.label in seen:
            run.label = run.name
        seen.add(run.label)


def collect_runs(sweep_dir: str | Path) -> list[Run]:
    """Every run folder under ``sweep_dir`` (itself included), sorted by path."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise ReportError(f"sweep dir {root} does not exist or is not a folder")
    runs = []
    for path in _run_dirs(root):
        name = path.relative_to(root).as_posix() if path != root else path.name
        listed = _read_hydra(path, "overrides.yaml")
        overrides = parse_overrides(listed if isinstance(listed, list) else [])
        runs.append(Run(path, name, _read_results(path), overrides))
    _short_labels(runs)
    return runs


def read_scalars(run_dir: Path, tags: Sequence[str]) -> dict[str, dict[int, float]]:
    """``{tag: {step: value}}`` from the run's ``tb/`` (empty when it has none).

    The last event at a step wins (a resumed run may repeat steps).
    """
    tb = run_dir / TB_DIR
    if not tb.is_dir():
        return {}
    # Imported here: TensorBoard's import is slow and only the plots need it.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # All scalars (0 = keep everything); no image is needed, the PNGs are on disk.
    acc = EventAccumulator(str(tb), size_guidance={"scalars": 0, "images": 1})
    acc.Reload()
    present = set(acc.Tags().get("scalars", []))
    return {
        tag: {event.step: event.value for event in acc.Scalars(tag)}
        for tag in tags
        if tag in present
    }


def step_of(png: Path) -> int:
    """The training step in a samples file name (``step_000500.png`` → 500), or -1."""
    numbers = re.findall(r"\d+", png.stem)
    return int(numbers[-1]) if numbers else -1


def last_sample(run_dir: Path) -> Path | None:
    """The samples PNG with the highest step (``step_000500.png``), if any."""
    return max((run_dir / SAMPLES_DIR).glob("*.png"), key=step_of, default=None)


def samples(run_dir: Path) -> list[Path]:
    """The run's saved grids, by step."""
    return sorted((run_dir / SAMPLES_DIR).glob("*.png"), key=step_of)


# --- values in results.json -----------------------------------------------------------------

_ABSENT = object()  # lookup's answer for a key that is not there (None is a null)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(value: Any) -> float | None:
    """The value as a float when it is a finite number, else None (null, NaN, Inf, text)."""
    if _is_number(value) and math.isfinite(value):
        return float(value)
    return None


def _numeric_leaves(tree: dict[str, Any], prefix: str = "") -> Iterable[str]:
    # Nulls count as numeric leaves: results.json writes NaN as null.
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _numeric_leaves(value, f"{prefix}{key}.")
        elif _is_number(value) or value is None:
            yield f"{prefix}{key}"


def metric_names(run: Run) -> Iterable[str]:
    """The numeric (or null) leaves under the run's ``metrics.``: ``fid``, ``kid.mean``."""
    return _numeric_leaves(run.results.get("metrics") or {})


def metric_key(name: str) -> str:
    """Where a metric lives in results.json: ``fid`` → ``metrics.fid``; others as written."""
    return name if name in TRAINING_METRICS else f"metrics.{name}"


def result_value(run: Run, dotted: str) -> float | None:
    """A finite number in results.json by its dotted path (``throughput.cpu_s_per_it``)."""
    return _finite(lookup(run.results, dotted))


def metric_value(run: Run, name: str) -> float | None:
    return result_value(run, metric_key(name))


def failure_reason(run: Run, primary: str) -> str | None:
    """Why the run failed (diverged, NaN, crashed), or None for a usable run."""
    if not run.results:
        return "no results.json (crashed, or still running)"
    status = run.results.get("status")
    if status == UNREADABLE:
        why = run.results.get(_WHY)
        return f"{UNREADABLE} ({why})" if why else UNREADABLE
    reasons = []
    if status == "failed" and run.results.get("reason"):
        # the run said why it failed: that, not the null losses it left behind
        return f"failed: {' '.join(str(run.results['reason']).split())}"
    if status != "completed":
        reasons.append(f"status {status!r}" if status else "no status (did not finish)")
    # A null is a NaN/Inf the run produced; an absent metric was never computed (not a
    # failure), except the final losses, which every finished run has.
    for name in dict.fromkeys([*FINAL_LOSSES, primary]):
        value = lookup(run.results, metric_key(name), _ABSENT)
        if value is _ABSENT and name in FINAL_LOSSES:
            value = None
        if value is not _ABSENT and _finite(value) is None:
            shown = "null (NaN/Inf)" if value is None else repr(value)
            reasons.append(f"{name} is {shown}")
    return "; ".join(reasons) or None


# Measured numbers: grouping by them makes no sense, so --group-by's suggestions leave them out.
_MEASURED = ("metrics", "evaluation", "final", "throughput")


def group_keys(runs: Sequence[Run]) -> list[str]:
    """The keys a sweep can be grouped by: results.json's (dotted, but not the measured
    numbers) and the overrides' of any run."""
    keys = {k for run in runs for k in run.overrides}
    for run in runs:
        if run.results.get("status") != UNREADABLE:  # its status is ours, not the run's
            keys.update(k for k in _leaf_keys(run.results) if k.split(".")[0] not in _MEASURED)
    return sorted(keys)


def _leaf_keys(tree: dict[str, Any], prefix: str = "") -> Iterable[str]:
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _leaf_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def check_group_by(runs: Sequence[Run], group_by: str) -> None:
    """ReportError unless some run has a value for each key of ``group_by`` (when any run has
    keys at all: a sweep of crashed runs is still reported, as one group)."""
    keys = group_keys(runs)
    for key in group_by.split(","):
        if keys and all(_value_of(run, key) == MISSING for run in runs):
            raise ReportError(
                f"--group-by {key!r} is in no run's results.json, overrides or config; "
                f"valid keys: {', '.join(keys)}"
            )


V2_FEATURES = "none recorded (metrics v2: the classifier's own features)"


def feature_network(run: Run) -> str | None:
    """The sha256 of the feature network a run's FID, KID and PRDC were measured with (older
    runs record none: ``V2_FEATURES``); None for a run that recorded no metrics."""
    evaluation = run.results.get("evaluation")
    if not isinstance(evaluation, dict) or not isinstance(run.results.get("metrics"), dict):
        return None
    sha = evaluation.get("feature_network_sha256")
    return sha if isinstance(sha, str) else V2_FEATURES


def check_feature_networks(runs: Sequence[Run], mixed: bool = False) -> None:
    """ReportError (one line: which runs, which hashes) when runs were measured with different
    feature networks, whose numbers do not compare, unless ``mixed``."""
    by_network: dict[str, list[str]] = {}
    for run in runs:
        if (sha := feature_network(run)) is not None:
            by_network.setdefault(sha, []).append(run.name)
    if len(by_network) > 1 and not mixed:
        groups = "; ".join(
            f"{sha[:12] if sha != V2_FEATURES else sha}: {_names(names)}"
            for sha, names in by_network.items()
        )
        raise ReportError(
            f"runs measured with different feature networks do not rank together ({groups}); "
            "re-score them with ganlab-eval, or pass --mixed-metrics to rank them anyway"
        )


def _names(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def group_of(run: Run, group_by: str) -> str:
    """The run's group: its value of ``group_by``, or of each of its comma-separated keys
    joined by ", " (``--group-by loss,model.discriminator.pack``: "hinge, 2")."""
    return ", ".join(_value_of(run, key) for key in group_by.split(","))


def _value_of(run: Run, group_by: str) -> str:
    """The run's value of one key: from results.json, else its overrides, else its config."""
    value = lookup(run.results, group_by)
    if value is None:
        value = run.overrides.get(group_by)
    if value is None:
        value = lookup(_read_hydra(run.path, "config.yaml"), group_by)
    if isinstance(value, dict):  # a config group such as loss: {name: hinge, ...}
        value = value.get("name")
    return MISSING if value is None else str(value)
