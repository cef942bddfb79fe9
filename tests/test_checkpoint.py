"""Checkpoints and resuming: damaged, hostile and half-written files, a full disk, the RNG
states, a resume that checks the run's identity, and one with nothing left to do."""

from __future__ import annotations

import errno
import logging
import os
import pickle
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import ganlab.checkpoint as checkpoint_mod
from ganlab.build import load_generator
from ganlab.checkpoint import (
    CheckpointDir,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from ganlab.errors import GanlabError
from ganlab.models import build_models
from ganlab.rundir import read_results
from ganlab.train import train
from tests.conftest import TINY_RUN, mount_tmpfs, short_run, snapshot, train_cli

# --- damaged checkpoints ----------------------------------------------------------------------


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


# --- hostile checkpoints: nothing in one chooses code to run ----------------------------------


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


def test_a_checkpoint_config_cannot_choose_code_to_run(tmp_path):
    # A crafted checkpoint whose model config targets builtins.open on a victim file (mode
    # "w" would empty it): models are built from the registry by name, the target ignored.
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    G, D = build_models({"name": "mlp", "z_dim": 4, "generator": {"hidden": [8]}})
    evil = {"_target_": "builtins.open", "file": str(victim), "mode": "w"}
    config = {"model": {"name": "mlp", "z_dim": 4, "generator": evil, "discriminator": evil}}
    path = tmp_path / "evil.pt"
    save_checkpoint(path, {"G": G.state_dict(), "config": config, "step": 1})
    with pytest.raises(GanlabError, match="model.generator.file"):
        load_generator(path, torch.device("cpu"))
    assert victim.read_text() == "precious"
    # an unknown model name is refused too, never imported
    config["model"] = {"name": "os.system", "z_dim": 4}
    save_checkpoint(path, {"G": G.state_dict(), "config": config, "step": 1})
    with pytest.raises(GanlabError, match="unknown model 'os.system'"):
        load_generator(path, torch.device("cpu"))
    assert victim.read_text() == "precious"


# --- a full disk, half-written files ----------------------------------------------------------


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


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (needs root: mount -t tmpfs), unmounted afterwards."""
    mount = mount_tmpfs(tmp_path / "disk", "2m")
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


# --- what a checkpoint restores ---------------------------------------------------------------


def test_rng_states_round_trip_through_a_checkpoint(tmp_path):
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    save_checkpoint(tmp_path / "rng.pt", {"rng": rng_state()})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(2), np.random.seed(2), random.seed(2)
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0])
    assert np.array_equal(got[1], expected[1]) and got[2] == expected[2]


def test_resume_with_another_model_says_what_differs(make_cfg, tmp_path):
    train(make_cfg(*TINY_RUN, "trainer.steps=4"), tmp_path)
    other = make_cfg(
        *TINY_RUN, "trainer.steps=8", "trainer.resume=auto", "model.generator.hidden=[32,32]"
    )
    with pytest.raises(GanlabError, match=r"model\.generator=\{'hidden': \[32, 64\]\}"):
        train(other, tmp_path)


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
