"""Hardening: each defect of the adversarial pass reproduced, and shown fixed.

(The crafted-checkpoint attack is in test_structure.py; bad inputs in test_bad_input.py.)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ganlab.checkpoint import load_checkpoint
from ganlab.errors import GanlabError
from ganlab.run import TrainingRun
from ganlab.rundir import read_results
from ganlab.signals import RunInterrupted
from ganlab.train import train
from tests.conftest import tiny, train_cli

TINY_RUN = [*tiny("mlp"), "data=mnist_sample", "trainer.sample_every=0"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def signal_at_step(monkeypatch, step: int, signum: int = signal.SIGINT) -> None:
    """Deliver a real signal to this process right after the given training step."""
    iterate = TrainingRun.iterate

    def iterate_then_signal(self):
        iterate(self)
        if self.trainer.step == step:
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(TrainingRun, "iterate", iterate_then_signal)


def test_sigint_while_diverging_keeps_the_good_checkpoint(make_cfg, tmp_path, monkeypatch):
    train(make_cfg(*TINY_RUN, "loss=lsgan", "trainer.steps=20", "trainer.ckpt_every=10"), tmp_path)
    good = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    numbered = snapshot(tmp_path / "checkpoints")
    # An absurd lr blows D up within a few steps; the signal arrives between log steps.
    signal_at_step(monkeypatch, 33)
    diverging = make_cfg(
        *TINY_RUN,
        "loss=lsgan",
        "optimizer.lr=1e4",
        "trainer.steps=200",
        "trainer.log_every=50",
        "trainer.ckpt_every=1000",
        "trainer.resume=auto",
    )
    objective = train(diverging, tmp_path)  # no RunInterrupted: divergence comes first
    assert objective != objective  # NaN
    results = read_results(tmp_path)
    assert results["status"] == "diverged" and results["divergence"]["step"] == 33
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == good
    assert snapshot(tmp_path / "checkpoints") == numbered  # nothing rotated out


def test_a_second_run_in_a_used_folder_is_refused_and_changes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    args = [*TINY_RUN, "trainer.steps=4", f"hydra.run.dir={run_dir}"]
    assert train_cli(*args, cwd=tmp_path).returncode == 0
    before = snapshot(run_dir)
    again = train_cli(*args, "loss=hinge", cwd=tmp_path)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    line = again.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {run_dir} holds another run") and "overwrite" in line
    assert snapshot(run_dir) == before
    # Told to overwrite: the old run's files go first, then the new run writes its own.
    fresh = train_cli(*args, "loss=hinge", "trainer.overwrite=true", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert read_results(run_dir)["loss"] == "hinge"
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["config"]["loss"]["name"] == "hinge"


def test_a_live_process_holds_its_folder(make_cfg, tmp_path):
    lock = tmp_path / ".ganlab.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
            "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(GanlabError, match="another ganlab process is training in"):
            train(make_cfg(*TINY_RUN, "trainer.steps=2"), tmp_path)
        assert not (tmp_path / "checkpoints").exists()
    finally:
        holder.kill()
        holder.wait()


def test_resume_with_another_model_says_what_differs(make_cfg, tmp_path):
    train(make_cfg(*TINY_RUN, "trainer.steps=4"), tmp_path)
    other = make_cfg(
        *TINY_RUN, "trainer.steps=8", "trainer.resume=auto", "model.generator.hidden=[32,32]"
    )
    with pytest.raises(GanlabError, match=r"model\.generator=\{'hidden': \[32, 64\]\}"):
        train(other, tmp_path)


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
    (bad_dir,) = [p for name, p in jobs.items() if "model.z_dim=0," in name]
    (good_dir,) = [p for name, p in jobs.items() if "model.z_dim=16," in name]
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


def test_resuming_a_finished_run_changes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    args = [*TINY_RUN, "trainer.steps=4", f"hydra.run.dir={run_dir}"]
    assert train_cli(*args, cwd=tmp_path).returncode == 0
    results = (run_dir / "results.json").read_bytes()
    checkpoints = snapshot(run_dir / "checkpoints")
    again = train_cli(*args, "trainer.resume=auto", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already completed 4 steps" in again.stdout + again.stderr
    assert (run_dir / "results.json").read_bytes() == results
    assert snapshot(run_dir / "checkpoints") == checkpoints
    # with more steps it continues
    more = train_cli(*args[:-2], "trainer.steps=6", args[-1], "trainer.resume=auto", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert read_results(run_dir)["steps"] == 6


def test_sigint_during_the_final_evaluation_still_ends_with_a_status(
    make_cfg, tmp_path, monkeypatch, ganlab_cache
):
    final_evaluation = TrainingRun.final_evaluation

    def signal_then_evaluate(self, stop):
        os.kill(os.getpid(), signal.SIGINT)  # the real handler sets the stop flag
        return final_evaluation(self, stop)

    monkeypatch.setattr(TrainingRun, "final_evaluation", signal_then_evaluate)
    cfg = make_cfg(
        *TINY_RUN,
        "trainer.steps=3",
        "metrics.enabled=true",
        "metrics.n_samples=200",
        "metrics.floor=false",
    )
    with pytest.raises(RunInterrupted, match="SIGINT at step 3"):
        train(cfg, tmp_path)
    results = read_results(tmp_path)
    assert results["status"] == "interrupted" and "metrics" not in results
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 3


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (needs root: mount -t tmpfs), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_disk_that_fills_mid_run_gives_one_line_and_keeps_the_last_checkpoint(
    tmp_path, small_disk
):
    run_dir = small_disk / "run"
    proc = train_cli(
        *TINY_RUN,  # ~1.3 MB of G, D and Adam state per checkpoint: the second does not fit
        "trainer.steps=40",
        "trainer.ckpt_every=10",
        "trainer.keep_checkpoints=0",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: cannot write") and "the disk is full" in line, line
    assert not list((run_dir / "checkpoints").glob(".*.tmp"))
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")  # the previous one loads
    assert 10 <= state["step"] < 40
    results = read_results(run_dir)
    assert results["status"] == "failed" and "cannot write" in results["reason"]
    shutil.rmtree(run_dir, ignore_errors=True)


def test_stale_temp_files_of_a_killed_write_are_removed_at_resume(make_cfg, tmp_path):
    train(make_cfg(*TINY_RUN, "trainer.steps=2"), tmp_path)
    stale = tmp_path / "checkpoints" / ".last.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    train(make_cfg(*TINY_RUN, "trainer.steps=4", "trainer.resume=auto"), tmp_path)
    assert not stale.exists()
    assert torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["step"] == 4
