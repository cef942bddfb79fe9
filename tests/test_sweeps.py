"""Sweeps through Hydra launchers, and the HParams each run leaves for TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tests.conftest import TINY, train_cli

SWEEP = [
    "loss=vanilla,hinge",
    "model=mlp",
    *TINY,
    "model.z_dim=8",
    "data=mnist_sample",
    "trainer.steps=4",
    "trainer.log_every=2",
]


def sweep(tmp_path: Path, *launcher: str) -> list[Path]:
    out = tmp_path / "sweep"
    proc = train_cli("-m", *launcher, *SWEEP, f"hydra.sweep.dir={out}", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sorted(p.parent for p in out.glob("*/results.json"))


def hparams_of(run: Path) -> dict[str, object]:
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {k: v.string_value or v.number_value for k, v in info.hparams.items()}


def check_two_runs(runs: list[Path]) -> None:
    assert [json.loads((r / "results.json").read_text())["loss"] for r in runs] == [
        "hinge",
        "vanilla",
    ]
    for run in runs:
        results = json.loads((run / "results.json").read_text())
        assert results["status"] == "completed" and results["steps"] == 4


def test_basic_sweep_records_overrides_as_hparams(tmp_path):
    runs = sweep(tmp_path)
    check_two_runs(runs)
    hp = hparams_of(runs[0])
    assert hp["loss"] == "hinge" and hp["model"] == "mlp"
    assert hp["trainer.steps"] == 4 and hp["model.z_dim"] == 8  # the run's overrides
    assert hp["lr"] == pytest.approx(2e-4)


def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path):
    check_two_runs(sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"))


def test_submitit_local_launcher(tmp_path):
    runs = sweep(tmp_path, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10")
    check_two_runs(runs)
    assert (tmp_path / "sweep" / ".submitit").is_dir()
