"""Interrupted runs: SIGKILL, then trainer.resume=auto, ends bit-identical to a run never
interrupted; SIGINT saves a checkpoint, exits 130 with the status "interrupted" (during the final
evaluation too) and prints the command that continues the run in place."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.plugins.hparams import api_pb2

from ganlab.checkpoint import load_checkpoint
from ganlab.run import TrainingRun
from ganlab.rundir import read_results
from ganlab.signals import RunInterrupted
from ganlab.tracking import HPARAMS_SUFFIX
from ganlab.train import train
from tests.conftest import (
    GRID_RUN,
    TINY_RUN,
    hparams_records,
    scalar_steps,
    tiny,
    train_cli,
    value,
)

# --- SIGKILL, then resume ---------------------------------------------------------------------


# Fast, deterministic CPU runs; long enough that a kill lands mid-training.
RUN = [
    *tiny("mlp"),
    "data=mnist_sample",
    "trainer.log_every=50",
    "trainer.ckpt_every=100",
    "trainer.sample_every=0",
]


STEPS = 1500


def start(run_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ganlab.train",
            *RUN,
            f"trainer.steps={STEPS}",
            f"hydra.run.dir={run_dir}",
            *extra,
        ],
        cwd=run_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    flat = {f"G.{k}": v for k, v in state["G"].items()}
    flat.update({f"D.{k}": v for k, v in state["D"].items()})
    for net in ("opt_G", "opt_D"):
        for i, s in state[net]["state"].items():
            flat.update({f"{net}.{i}.{k}": v for k, v in s.items()})
    return flat


def test_sigkill_then_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    reference, crashed = tmp_path / "reference", tmp_path / "crashed"
    proc = start(crashed)
    wait_for(crashed / "checkpoints" / "step_000200.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (crashed / "results.json").exists()  # it really died mid-training
    killed_at = load_checkpoint(crashed / "checkpoints" / "last.pt")["step"]
    assert killed_at < STEPS

    resumed = start(crashed, "trainer.resume=auto")
    ref = start(reference)
    logs = {}
    for name, p in (("resumed", resumed), ("reference", ref)):
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
        logs[name] = out + err
    assert (
        f"resumed from {crashed / 'checkpoints' / 'last.pt'} at step {killed_at}" in logs["resumed"]
    )

    a, b = weights(reference), weights(crashed)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different
    assert read_results(crashed)["steps"] == STEPS
    # TensorBoard: every logged step exactly once, across the crash.
    assert scalar_steps(crashed, "loss/G") == list(range(50, STEPS + 1, 50))


# --- SIGINT -----------------------------------------------------------------------------------


def test_sigint_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    wait_for(run_dir / "checkpoints" / "last.pt", proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    assert "interrupted: SIGINT at step" in err
    results = read_results(run_dir)
    assert results["status"] == "interrupted"
    saved = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert saved["step"] == results["steps"] < STEPS
    # ... and the run picks up where it stopped.
    done = train_cli(
        *RUN,
        f"trainer.steps={saved['step'] + 20}",
        f"hydra.run.dir={run_dir}",
        "trainer.resume=auto",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_results(run_dir)["status"] == "completed"
    assert read_results(run_dir)["steps"] == saved["step"] + 20


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


# --- the continue command -------------------------------------------------------------------


INTERRUPTED = """
import os, signal, sys
from ganlab.run import TrainingRun
iterate = TrainingRun.iterate
def iterate_then_signal(self):
    iterate(self)
    if self.trainer.step == 3:
        os.kill(os.getpid(), signal.SIGINT)
TrainingRun.iterate = iterate_then_signal
from ganlab.train import main
sys.argv = ["ganlab-train", *sys.argv[1:]]
main()
"""


def test_an_interrupted_run_prints_the_command_that_continues_it_in_place(tmp_path):
    run_dir = tmp_path / "loss=vanilla,seed=0"  # a sweep job's name: '=' and ',' get quoted
    args = [*GRID_RUN, "trainer.steps=8", f"hydra.run.dir='{run_dir}'"]
    proc = subprocess.run(
        [sys.executable, "-c", INTERRUPTED, *args],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 130, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("interrupted: SIGINT at step 3: checkpoint saved in "), line
    command = line.partition("continue with: ")[2]
    assert command.startswith("python -m ganlab.train model=mlp ")
    assert command.endswith(f"trainer.resume=auto \"hydra.run.dir='{run_dir}'\"")
    records = hparams_records(run_dir / "tb")
    assert value(records["session_start_info"], "status") == "interrupted"
    assert records["session_end_info"].status == api_pb2.STATUS_UNKNOWN

    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "ganlab.train"]
    again = train_cli(*argv[3:], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    results = read_results(run_dir)
    assert results["status"] == "completed" and results["steps"] == 8
    # the session is the resumed run's: one HParams file, status completed
    assert value(hparams_records(run_dir / "tb")["session_start_info"], "status") == "completed"
    assert len(list((run_dir / "tb").glob(f"*{HPARAMS_SUFFIX}"))) == 1
