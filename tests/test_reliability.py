"""Never lose a run: exact resume after SIGKILL, damaged checkpoints, divergence, signals,
hostile checkpoints, a full disk, bad data and output folders."""

from __future__ import annotations

import errno
import logging
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import ganlab.checkpoint as checkpoint_mod
from ganlab.checkpoint import (
    CheckpointDir,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from ganlab.errors import GanlabError
from ganlab.rundir import read_results
from ganlab.train import train
from tests.conftest import tiny, train_cli

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


def scalar_steps(run_dir: Path, tag: str) -> list[int]:
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


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


def short_run(make_cfg, run_dir: Path, *extra: str) -> dict:
    train(
        make_cfg(
            *tiny("mlp"),
            "data=mnist_sample",
            "trainer.ckpt_every=10",
            "trainer.log_every=5",
            "trainer.sample_every=0",
            *extra,
        ),
        run_dir,
    )
    return read_results(run_dir)


def test_a_damaged_checkpoint_is_reported_and_the_previous_good_one_used(
    make_cfg, tmp_path, caplog
):
    caplog.set_level(logging.INFO)
    short_run(make_cfg, tmp_path, "trainer.steps=40", "trainer.keep_checkpoints=2")
    ckpt = tmp_path / "checkpoints"
    assert sorted(p.name for p in ckpt.iterdir()) == ["last.pt", "step_000030.pt", "step_000040.pt"]
    for name in ("last.pt", "step_000040.pt"):  # truncated: a crash of the disk, not of ganlab
        data = (ckpt / name).read_bytes()
        (ckpt / name).write_bytes(data[: len(data) // 2])
    results = short_run(make_cfg, tmp_path, "trainer.steps=50", "trainer.resume=auto")
    assert "skipping a damaged checkpoint" in caplog.text and "last.pt" in caplog.text
    assert f"resumed from {ckpt / 'step_000030.pt'} at step 30" in caplog.text
    assert results["steps"] == 50 and results["status"] == "completed"


def test_every_checkpoint_damaged_is_an_error(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(GanlabError, match="every file is damaged"):
        CheckpointDir(tmp_path / "checkpoints").load_newest_valid()


class Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_a_malicious_checkpoint_is_refused_without_running_it(tmp_path, writer):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    payload = {"G": Exploit(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    assert not marker.exists()
    with pytest.raises(GanlabError, match=f"cannot load checkpoint {path}"):
        load_checkpoint(path)
    assert not marker.exists()


def test_resume_from_a_malicious_file_on_the_command_line(tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"G": Exploit(marker)}, path)
    proc = train_cli(
        "model=mlp",
        "data=mnist_sample",
        f"trainer.resume={path}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: cannot load checkpoint {path}")
    assert not marker.exists()


def test_disk_full_during_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1, "w": torch.ones(3)})
    before = path.read_bytes()

    def full_disk(obj, f):
        f.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_mod.torch, "save", full_disk)
    with pytest.raises(GanlabError, match=r"No space left on device; the previous checkpoint"):
        save_checkpoint(path, {"step": 2, "w": torch.zeros(3)})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


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


def write_bad_idx(root: Path) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"\x00\x00\x08\x99" + bytes(64))
    return raw / "train-images-idx3-ubyte"


@pytest.mark.parametrize("case", ["bad_idx", "empty_dir_strict", "unwritable_output"])
def test_hostile_input_gives_one_clear_line(tmp_path, case):
    run_dir = tmp_path / "run"
    args = ["model=mlp", f"hydra.run.dir={run_dir}"]
    if case == "bad_idx":
        bad = write_bad_idx(tmp_path / "data")
        args += [f"data.root={tmp_path / 'data'}", "data.download=false"]
        expected = f"error: {bad}: not an MNIST IDX file"
    elif case == "empty_dir_strict":
        (tmp_path / "empty").mkdir()
        args += [f"data.root={tmp_path / 'empty'}", "data.download=false", "data.strict=true"]
        expected = "error: MNIST split 'train' not found"
    else:
        (tmp_path / "a-file").write_text("not a folder")
        args[1] = f"hydra.run.dir={tmp_path / 'a-file' / 'run'}"
        expected = "error: cannot write the output folder hydra.run.dir="
    proc = train_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), proc.stderr


def test_rng_states_round_trip_through_a_checkpoint(tmp_path):
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    save_checkpoint(tmp_path / "rng.pt", {"rng": rng_state()})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(2), np.random.seed(2), random.seed(2)
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0])
    assert np.array_equal(got[1], expected[1]) and got[2] == expected[2]
