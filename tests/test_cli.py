"""The command line as users run it: `python -m ganlab.train`, in subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TINY, train_cli

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["loss=hinje"], "Could not find 'loss/hinje'"),
        (["trainer.batch_size=0"], "error: invalid value for trainer.batch_size: 0"),
        (["optimizer.lr=-0.001"], "error: invalid value for optimizer.lr: -0.001"),
        (
            ["data.root={missing}", "data.download=false", "data.strict=true"],
            "error: MNIST split 'train' not found",
        ),
        (["trainer.batchsize=8"], "Could not override 'trainer.batchsize'"),
    ],
)
def test_bad_input_fails_early_with_one_readable_line(tmp_path, overrides, expected):
    missing = tmp_path / "no-mnist-here"
    overrides = [o.format(missing=missing) for o in overrides]
    proc = train_cli(*overrides, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    first_line = proc.stderr.strip().splitlines()[0]
    assert expected in first_line, proc.stderr
    # Nothing was trained: no checkpoint, no results.
    assert not (tmp_path / "run" / "results.json").exists()
    if "data.root" in overrides[0]:
        assert str(missing) in first_line


def test_multirun_gives_one_run_dir_per_job(tmp_path):
    sweep = tmp_path / "sweep"
    proc = train_cli(
        "-m",
        "loss=vanilla,hinge",
        "model=mlp,dcgan",
        *TINY,
        "model.z_dim=8",
        "data=mnist_sample",
        "trainer.steps=3",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = sorted(p for p in sweep.iterdir() if p.is_dir())
    # Folders are named by each job's overrides (hydra.job.override_dirname).
    jobs = [dict(kv.split("=", 1) for kv in run.name.split(",")) for run in runs]
    assert sorted((j["loss"], j["model"]) for j in jobs) == [
        ("hinge", "dcgan"),
        ("hinge", "mlp"),
        ("vanilla", "dcgan"),
        ("vanilla", "mlp"),
    ]
    for run, job in zip(runs, jobs, strict=True):
        assert job["trainer.steps"] == "3"
        results = json.loads((run / "results.json").read_text())
        assert (results["loss"], results["model"], results["steps"]) == (
            job["loss"],
            job["model"],
            3,
        )
        assert list((run / "tb").glob("events.out.tfevents.*"))
        assert (run / "checkpoints" / "last.pt").is_file()


def test_info_runs_from_any_directory(tmp_path):
    proc = train_cli("--info", "config", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "loss:" in proc.stdout and "n_critic" in proc.stdout
