"""ganlab from Python: train a run as ``python -m ganlab.train`` does, and get its results.

```python
>>> from ganlab.api import train
>>> results = train(["model=mlp", "trainer.steps=3000"])      # doctest: +SKIP
>>> results["status"], results["metrics"]["fid"], results["run_dir"]  # doctest: +SKIP
```

``overrides`` are the command line's (``loss=hinge``, ``trainer.steps=500``,
``+aux.feature_matching=1``); or pass a composed ``cfg`` (``compose_config(overrides)``, then
edit it). The run folder is named as the command line names it
(``outputs/<date>/<HH-MM-SS>_<loss>_<model>`` under the working directory) unless ``out_dir``
is given, and holds the same files (``.hydra/``, ``train.log``, ``results.json``, ``tb/``,
``samples/``, ``progress.gif``, ``checkpoints/``). The log lines go to ``train.log`` and, when
the program configured no logging of its own (a script, a notebook), to the console.

A wrong value raises ``GanlabError`` (one line naming the key) before any folder is made; a
misspelt key raises Hydra's ``ConfigCompositionException``; Ctrl-C saves a checkpoint and
raises ``RunInterrupted``. A diverged run returns its results (``status: diverged``).
"""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from ganlab.claim import holds_a_run, refusal
from ganlab.config import hydra_compose, validate
from ganlab.errors import GanlabError, Refused
from ganlab.plugins import load_plugins
from ganlab.rundir import check_writable, read_results
from ganlab.runtime import resolve_device
from ganlab.train import train as train_in

LOG_FORMAT = "[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"  # Hydra's


def _compose(overrides: Sequence[str]) -> DictConfig:
    """The config with Hydra's own node (run dir, overrides), as a command line composes it."""
    load_plugins()  # GANLAB_PLUGINS' names are config options, as on the command line
    return hydra_compose(overrides, hydra_node=True)


def _task(full: DictConfig) -> DictConfig:
    """The run's config: ``full`` without Hydra's node, as the command line passes it on."""
    cfg = copy.deepcopy(full)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def compose_config(overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``python -m ganlab.train <overrides>`` runs (without Hydra's own node)."""
    return _task(_compose(overrides))


@contextmanager
def _logging_to(log_file: Path, console: bool) -> Iterator[None]:
    """ganlab's INFO lines into ``log_file`` and, if asked, onto stdout, for the call."""
    logger = logging.getLogger("ganlab")
    handlers: list[logging.Handler] = [logging.FileHandler(log_file)]
    # Hydra prints on stdout; a program that set up logging keeps its own console handlers.
    if console and not logging.getLogger().handlers:
        handlers.append(logging.StreamHandler(sys.stdout))
    level = logger.level
    for handler in handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if level == logging.NOTSET else level)
    try:
        yield
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            with suppress(OSError):  # a full disk: the run's own error says so, not this
                handler.close()
        logger.setLevel(level)


@contextmanager
def _hydra_config(full: DictConfig) -> Iterator[None]:
    """Hydra's node of the config as ``HydraConfig`` for the call, as in a command-line run
    (the run records its overrides as HParams and in the continue command)."""
    previous = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(full)
    try:
        yield
    finally:
        HydraConfig.instance().cfg = previous


def _run_dir(full: DictConfig, cfg: DictConfig) -> Path:
    """The command line's run folder name (``hydra.run.dir``) for this loss and model."""
    pattern = OmegaConf.to_container(full.hydra.run, resolve=False)["dir"]
    names = {"loss": {"name": cfg.loss.name}, "model": {"name": cfg.model.name}}
    # Hydra sets override_dirname when it runs a job: the same, from the composed overrides
    excluded = set(full.hydra.job.config.override_dirname.exclude_keys)
    kept = [o for o in full.hydra.overrides.task if o.split("=", 1)[0].lstrip("+~") not in excluded]
    job = {"job": {"override_dirname": ",".join(sorted(kept))}}
    return Path(OmegaConf.create({**names, "hydra": job, "dir": pattern}).dir)


def _prepare(out_dir: Path, cfg: DictConfig) -> None:
    """The folder, as the command line makes it; a folder holding another run is refused
    first, unchanged (train() writes ``.hydra/`` once the run owns the folder)."""
    t = cfg.trainer
    if out_dir.exists() and not out_dir.is_dir():
        raise GanlabError(f"out_dir {out_dir} is a file, not a folder; give a folder")
    if holds_a_run(out_dir) and t.resume != "auto" and not t.overwrite:
        raise Refused(refusal(out_dir))
    check_writable(out_dir, f"out_dir {out_dir}")  # made; a full disk is said here, once


def _check_arguments(
    overrides: Sequence[str], cfg: DictConfig | None, out_dir: str | Path | None
) -> list[str]:
    """The overrides as a list; one GanlabError for arguments of the wrong kind."""
    # a string is a sequence of one-letter "overrides": Hydra would say "Error parsing 'm'"
    if isinstance(overrides, str | bytes) or not isinstance(overrides, Iterable):
        raise GanlabError(
            f"overrides must be a list of strings such as ['model=mlp'], not {overrides!r}"
        )
    overrides = list(overrides)
    wrong = [o for o in overrides if not isinstance(o, str)]
    if wrong:
        raise GanlabError(f"overrides must be strings such as 'model=mlp', not {wrong[0]!r}")
    if cfg is not None and overrides:
        raise GanlabError(
            "give overrides or cfg, not both: a composed config does not take overrides; "
            "compose_config(overrides), edit it, then train(cfg=cfg)"
        )
    if out_dir is not None and not str(out_dir).strip():
        # Path("") is the working directory: the run's files would be strewn there
        raise GanlabError("out_dir is empty: give a folder, or None for one named by the run")
    return overrides


def train(
    overrides: Sequence[str] = (),
    *,
    cfg: DictConfig | None = None,
    out_dir: str | Path | None = None,
    console: bool = True,
) -> dict[str, Any]:
    """Train one run; return its ``results.json`` as a dict, plus ``run_dir`` (its folder).

    ``overrides``: a list, as on the command line; or ``cfg``: a config from
    ``compose_config(overrides)``, edited (not both: overrides cannot be applied to a composed
    config). ``out_dir``: the run folder (default: named like the command line's, under the
    working directory). ``console``: also print the log lines (when the program has no logging
    of its own).
    """
    overrides = _check_arguments(overrides, cfg, out_dir)
    full = _compose(overrides)
    task = _task(full) if cfg is None else cfg
    validate(task)  # before any folder is made
    resolve_device(task.device)  # a device this machine lacks, too
    run_dir = Path(out_dir) if out_dir is not None else _run_dir(full, task)
    run_dir = run_dir.expanduser().resolve()
    _prepare(run_dir, task)
    with _hydra_config(full), _logging_to(run_dir / "train.log", console):
        train_in(task, run_dir)
    return {**read_results(run_dir), "run_dir": str(run_dir)}


__all__ = ["compose_config", "train"]
