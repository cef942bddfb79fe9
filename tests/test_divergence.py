"""Divergence: a run whose D blows up stops, says so in results.json and its exit status,
keeps the last good checkpoint (a Ctrl-C while diverging too), and rolls back when asked."""

from __future__ import annotations

import os
import signal

from ganlab.run import TrainingRun
from ganlab.rundir import read_results
from ganlab.train import train
from tests.conftest import TINY_RUN, scalar_steps, short_run, snapshot, tiny, train_cli

# Resumed from a sane 20-step run with an absurd lr: D blows up within a few steps.
DIVERGING = [
    *tiny("mlp"),
    "data=mnist_sample",
    "loss=lsgan",
    "optimizer.lr=1e4",
    "trainer.steps=200",
    "trainer.log_every=1",
    "trainer.resume=auto",
]


def test_divergence_stops_marks_results_and_keeps_the_last_good_checkpoint(make_cfg, tmp_path):
    short_run(make_cfg, tmp_path, "trainer.steps=20", "loss=lsgan")
    good = (tmp_path / "checkpoints" / "last.pt").read_bytes()
    objective = train(
        make_cfg(
            *DIVERGING,
            "trainer.ckpt_every=10",
        ),
        tmp_path,
    )
    assert objective != objective  # NaN: a sweeper must not pick this run
    results = read_results(tmp_path)
    assert results["status"] == "diverged"
    assert 20 < results["divergence"]["step"] == results["steps"] < 200
    assert "D/" in results["divergence"]["reason"] or "nan" in results["divergence"]["reason"]
    assert (tmp_path / "checkpoints" / "last.pt").read_bytes() == good


def test_rollback_retries_from_the_last_good_checkpoint_then_gives_up(make_cfg, tmp_path, caplog):
    short_run(make_cfg, tmp_path, "trainer.steps=20", "loss=lsgan")
    train(
        make_cfg(
            *DIVERGING,
            "trainer.ckpt_every=50",
            "trainer.on_divergence=rollback",
            "trainer.max_rollbacks=2",
        ),
        tmp_path,
    )
    results = read_results(tmp_path)
    assert results["status"] == "diverged" and results["rollbacks"] == 2
    assert caplog.text.count("rolled back to step 20") == 2
    steps = scalar_steps(tmp_path, "loss/G")
    assert len(steps) == len(set(steps))  # rolled-back steps are not logged twice


def test_a_diverged_single_run_exits_non_zero(tmp_path):
    proc = train_cli(
        *tiny("mlp"),
        "data=mnist_sample",
        "loss=lsgan",
        "optimizer.lr=1e4",
        "trainer.steps=100",
        "trainer.log_every=2",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 3
    assert "diverged at step" in proc.stdout + proc.stderr
    assert read_results(tmp_path / "run")["status"] == "diverged"


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
