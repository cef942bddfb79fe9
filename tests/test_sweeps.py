"""Sweeps through Hydra launchers, the HParams each run leaves for TensorBoard, a sweep with a
failing job, and a sweep that survives interruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from ganlab.checkpoint import load_checkpoint
from ganlab.rundir import read_results
from tests.conftest import TINY, TINY_RUN, tiny, train_cli

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
    assert hp["trainer.steps"] == "4" and hp["model.z_dim"] == "8"  # the run's overrides
    assert hp["lr"] == pytest.approx(2e-4)


def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path):
    check_two_runs(sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"))


def test_submitit_local_launcher(tmp_path):
    runs = sweep(tmp_path, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10")
    check_two_runs(runs)
    assert (tmp_path / "sweep" / ".submitit").is_dir()


def test_a_sweep_with_one_bad_job_runs_the_others_and_reports_the_failure(tmp_path):
    sweep = tmp_path / "sweep"
    proc = train_cli(
        "-m",
        *TINY_RUN,
        "trainer.steps=3",
        "model.z_dim=0,16",  # z_dim 0 is refused by validate: that job fails
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    jobs = {p.name: p for p in sweep.iterdir() if p.is_dir()}
    assert sorted(jobs) == ["model.z_dim=0", "model.z_dim=16"]  # the swept key alone
    bad_dir, good_dir = jobs["model.z_dim=0"], jobs["model.z_dim=16"]
    bad, good = read_results(bad_dir), read_results(good_dir)
    assert bad["status"] == "failed" and "model.z_dim" in bad["reason"]
    assert good["status"] == "completed"
    assert "1 job(s) of the sweep failed" in proc.stderr
    report = subprocess.run(
        [sys.executable, "-m", "ganlab.report", str(sweep), "--group-by", "model.z_dim"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert report.returncode == 0, report.stderr
    markdown = (sweep / "report.md").read_text()
    assert "z_dim=0" in markdown and "model.z_dim" in markdown and "failed" in markdown


# --- a sweep that survives interruption -------------------------------------------------------

SWEEP_STEPS = 600
RESUMABLE = [
    "loss=vanilla,hinge,lsgan",
    *tiny("mlp"),
    "data=mnist_sample",
    f"trainer.steps={SWEEP_STEPS}",
    "trainer.log_every=50",
    "trainer.ckpt_every=100",
    "trainer.sample_every=0",
    "trainer.resume=auto",
    "hydra.sweep.subdir=${loss.name}",  # the overrides would make too long a folder name
]


# One thread in the sweep and in the reference run it is compared with: on some CPUs a matmul
# split over two threads rounds differently from one, and the comparison is bit for bit.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def _sweep_proc(sweep_dir: Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ganlab.train", "-m", *RESUMABLE, f"hydra.sweep.dir={sweep_dir}"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **ONE_THREAD},
        start_new_session=True,  # its own process group: the kill takes the whole sweep
    )


def test_a_killed_sweep_run_again_skips_finished_jobs_and_resumes_the_rest(tmp_path):
    """SIGKILL a real sweep in its second job; the same command again leaves the finished
    job as it was, continues the killed one from its checkpoint (bit-identical to a run
    never interrupted) and runs the job that had not started."""
    out = tmp_path / "sweep"
    first, second, third = (out / loss for loss in ("vanilla", "hinge", "lsgan"))
    proc = _sweep_proc(out, tmp_path)
    deadline = time.monotonic() + 300
    while not (second / "checkpoints" / "step_000300.pt").exists():
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "the second job never reached step 300"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert read_results(first)["status"] == "completed"
    assert read_results(second).get("status") != "completed" and not third.exists()
    finished = (first / "results.json").read_bytes(), (first / "checkpoints" / "last.pt").stat()
    logged = (first / "train.log").read_bytes()
    killed_at = load_checkpoint(second / "checkpoints" / "last.pt")["step"]
    assert 100 <= killed_at < SWEEP_STEPS  # last.pt follows the numbered copy a moment later

    again = _sweep_proc(out, tmp_path)
    log = again.communicate(timeout=600)[0]
    assert again.returncode == 0, log[-3000:]
    assert f"already completed {SWEEP_STEPS} steps" in log
    assert f"resumed from {second / 'checkpoints' / 'last.pt'} at step {killed_at}" in log
    assert (first / "results.json").read_bytes() == finished[0]  # left as it was
    assert (first / "checkpoints" / "last.pt").stat().st_mtime_ns == finished[1].st_mtime_ns
    assert (first / "train.log").read_bytes() == logged  # skipped: not even a line appended
    for job in (first, second, third):
        results = read_results(job)
        assert results["status"] == "completed" and results["steps"] == SWEEP_STEPS
    assert "3 completed" in log  # the sweep's summary counts every job, the skipped one too

    # the resumed job equals the same run trained without an interruption
    reference = tmp_path / "reference"
    single = [a for a in RESUMABLE if not a.startswith(("loss=", "hydra."))]
    proc = train_cli(
        "loss=hinge", *single, f"hydra.run.dir={reference}", cwd=tmp_path, env=ONE_THREAD
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (load_checkpoint(r / "checkpoints" / "last.pt") for r in (reference, second))
    for net in ("G", "D"):
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net]), net
