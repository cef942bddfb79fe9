"""``results.json``: the run's summary, rewritten atomically whenever it changes."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.json"


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _finite_or_none(value: Any) -> Any:
    # JSON has no NaN/Inf; a diverged number is recorded as null (status says why).
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    return value


def read_results(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / RESULTS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def update_results(run_dir: Path, patch: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``patch`` into the run's results.json (created if absent) and return it."""
    results = _merge(read_results(run_dir), _finite_or_none(patch))
    path = Path(run_dir) / RESULTS_FILE
    tmp = path.with_name(f".{RESULTS_FILE}.tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return results
