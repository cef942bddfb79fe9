"""The run folder: what a run writes where, its ``results.json``, its command-line overrides.

One home for the layout every other module (the loop, the CLIs, the report) reads::

    <run dir>/.hydra/overrides.yaml   Hydra's record of the command line
    <run dir>/tb/                     TensorBoard events
    <run dir>/samples/                PNG grids, step_000500.png ...
    <run dir>/checkpoints/            last.pt and numbered copies
    <run dir>/results.json            the run's summary, rewritten atomically
    <sweep dir>/.refused.jsonl        the jobs of the last invocation refused their folders
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ganlab.errors import GanlabError

RESULTS_FILE = "results.json"
# A run's end, as results.json's "status" says it (TensorBoard's HParams sessions, the report)
STATUSES = ("completed", "interrupted", "diverged", "failed")
TB_DIR = "tb"
SAMPLES_DIR = "samples"
CHECKPOINTS_DIR = "checkpoints"
HYDRA_DIR = ".hydra"  # the composed config and the command line's overrides (ganlab.tracking)
# In a sweep's folder, beside its jobs: the jobs refused their folders in this invocation (one
# JSON line each), which the sweep's summary reports; a refused job writes nothing in its own.
REFUSALS_FILE = ".refused.jsonl"
PROBE_BYTES = 4096  # a run writes at least this much at once (an event file, a log line)
NAME_MAX = 255  # bytes in one file or folder name (Linux, macOS): longer is ENAMETOOLONG


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


def check_writable(folder: str | Path, label: str = "") -> None:
    """Make ``folder`` (with its parents) and write a few bytes in it, before a run writes
    anything there; else a GanlabError naming it (or ``label``) and why (a full disk, no
    permission). An empty file needs no free space: only written bytes find a full disk.
    A folder made here is removed again when the probe fails."""
    folder = Path(folder)
    probe, made = folder / ".ganlab-write-test", not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as fh:
            fh.write(b"\0" * PROBE_BYTES)
            fh.flush()
            os.fsync(fh.fileno())  # some filesystems say "full" only when the data goes out
    except OSError as e:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
            if made:
                folder.rmdir()
        raise GanlabError(f"cannot write {label or f'in {folder}'}: {e.strerror or e}") from None
    probe.unlink(missing_ok=True)


def read_results(run_dir: str | Path) -> dict[str, Any]:
    """The run's results.json as a dict; {} when there is none.

    A file that is not a JSON object (half-written by a killed process, or edited) is a
    GanlabError naming it.
    """
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        return {}
    try:
        results = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GanlabError(f"{path}: unreadable ({e})") from None
    if not isinstance(results, dict):
        raise GanlabError(f"{path}: expected a JSON object, found {type(results).__name__}")
    return results


def update_results(run_dir: str | Path, patch: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``patch`` into the run's results.json (created if absent) and return it."""
    results = _merge(read_results(run_dir), _finite_or_none(patch))
    write_results(run_dir, results)
    return results


def write_results(run_dir: str | Path, results: dict[str, Any]) -> None:
    """Replace results.json atomically (temp file, then rename)."""
    path = Path(run_dir) / RESULTS_FILE
    tmp = path.with_name(f".{RESULTS_FILE}.tmp")
    try:
        tmp.write_text(json.dumps(_finite_or_none(results), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise GanlabError(f"cannot write {path}: {e.strerror or e}") from None


def record_refusal(sweep_dir: str | Path, job_dir: str | Path, reason: str) -> None:
    """Add a refused job to its sweep's ``REFUSALS_FILE`` (one line, appended)."""
    line = json.dumps({"job": str(job_dir), "reason": " ".join(reason.split())})
    with open(Path(sweep_dir) / REFUSALS_FILE, "a") as fh:
        fh.write(line + "\n")


def read_refusals(sweep_dir: str | Path) -> dict[str, str]:
    """The refused jobs of a sweep's folder: job folder -> reason (unreadable lines skipped)."""
    path = Path(sweep_dir) / REFUSALS_FILE
    refused: dict[str, str] = {}
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError, TypeError, KeyError):
                entry = json.loads(line)
                refused[str(entry["job"])] = str(entry["reason"])
    return refused


def parse_overrides(lines: Iterable[str]) -> dict[str, str]:
    """``["loss=hinge", "+x=1"]`` → ``{"loss": "hinge", "x": "1"}``.

    Deletions (``~key``) and Hydra's own keys (``hydra.*``) are dropped: neither names a run.
    """
    overrides = {}
    for line in lines:
        key, sep, value = str(line).partition("=")
        key = key.lstrip("+")
        if sep and not key.startswith(("~", "hydra.", "hydra/")):
            overrides[key] = value
    return overrides


def lookup(tree: Any, dotted: str, default: Any = None) -> Any:
    """``tree["a"]["b"]`` for ``"a.b"`` in nested dicts (results.json, a saved config);
    ``default`` where a part is missing or not a dict."""
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return default
        tree = tree[part]
    return tree


def job_dirname(name: str) -> str:
    """A sweep job's folder name from its overrides (``hydra.job.override_dirname``).

    The name itself when it fits in ``NAME_MAX`` bytes, so every existing sweep keeps its
    folders. Past that, the longest values are shortened to their start and a hash of the
    value (``hidden=[1024,1024,10...3f9a2c1b``), longest first, until the name fits: every
    override stays readable, the name stays unique and the same each time the sweep is run
    (``trainer.resume=auto`` finds it). Too many overrides even so: the name's start and a
    hash of the whole.
    """
    if _fits(name):
        return name
    items = _split_overrides(name)
    for i in sorted(range(len(items)), key=lambda i: -len(items[i])):
        key, sep, value = items[i].partition("=")
        if len(value) > _KEPT + 11:
            items[i] = f"{key}{sep}{value[:_KEPT]}...{_digest(value, 8)}"
        if _fits(",".join(items)):
            return ",".join(items)
    suffix = f",...{_digest(name, 16)}"
    head = name.encode()[: NAME_MAX - len(suffix)].decode(errors="ignore")  # whole characters
    return head + suffix


# Overrides that change nothing trained (how often it logs, samples, saves, evaluates; what
# it measures): left out of a single run's name. (The keys excluded from Hydra's
# override_dirname, conf/config.yaml, never reach it.)
UNNAMED = ("trainer.log_every", "trainer.sample_every", "trainer.ckpt_every")
UNNAMED_PREFIXES = ("trainer.eval_every", "metrics.", "device")


def run_name(loss: str, model: str, overrides: str) -> str:
    """A single run's folder name (after its time): the loss, the model, then every other
    override that changes what is trained, shortened (``cond=acgan``, ``preset=fast``,
    ``ema=0.999``; a key's last part, or its last two where two overrides share the last):
    ``vanilla_mlp_cond=acgan_ema=0.999``. ``overrides`` is Hydra's ``override_dirname``.
    Past ``NAME_MAX`` bytes it is shortened as a sweep job's name is (``job_dirname``)."""
    items = [item for item in _split_overrides(overrides) if item]
    named: list[tuple[list[str], str]] = []
    for item in items:
        key, _, value = item.partition("=")
        key = key.lstrip("+~")
        if key in ("loss", "model") or key in UNNAMED or key.startswith(UNNAMED_PREFIXES):
            continue
        named.append((key.split("."), value))
    leaves = [parts[-1] for parts, _ in named]
    short = [
        ".".join(parts[-2:] if leaves.count(parts[-1]) > 1 else parts[-1:]) + f"={value}"
        for parts, value in named
    ]
    return job_dirname("_".join([loss, model, *short]))


_KEPT = 16  # characters kept of a shortened value


def _fits(name: str) -> bool:
    return len(name.encode()) <= NAME_MAX


def _digest(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _split_overrides(name: str) -> list[str]:
    """``a=1,b=[1,2],c=x`` → ``["a=1", "b=[1,2]", "c=x"]``: commas inside brackets or quotes
    belong to a value."""
    items, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(name):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            items.append(name[start:i])
            start = i + 1
    return [*items, name[start:]]
