"""A run's folder belongs to its run: a finished run's record is never rewritten by a command
that does not own it, a folder holding another run is refused, and a live process's lock keeps
another out.

Real sweeps, as a user runs them: the same sweep twice into one folder (the second is refused
job by job, and every finished job's results.json stays byte-identical and counted by the
report), then the same sweep with ``trainer.resume=auto`` (the same folder names, each
finished job skipped).
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ganlab.checkpoint import load_checkpoint
from ganlab.errors import GanlabError
from ganlab.rundir import REFUSALS_FILE, read_refusals, read_results
from ganlab.train import train
from tests.conftest import TINY, TINY_MODEL, TINY_RUN, snapshot, train_cli

SWEEP = ["model=mlp", *TINY, *TINY_MODEL["mlp"], "data=mnist_sample", "trainer.steps=20"]


def job_records(sweep: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in sorted(sweep.glob("*/results.json"))}


def test_the_same_sweep_twice_refuses_and_leaves_finished_jobs_as_they_were(tmp_path):
    sweep = tmp_path / "sweep"
    first = train_cli("-m", *SWEEP, "seed=0,1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    before = job_records(sweep)
    assert len(before) == 2 and all(b'"status": "completed"' in r for r in before.values())

    again = train_cli("-m", *SWEEP, "seed=0,1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert again.returncode == 1
    assert job_records(sweep) == before  # byte-identical: nothing marked failed
    assert "2 job(s) of the sweep were refused" in again.stderr
    assert "trainer.resume=auto" in again.stderr and "failed" not in again.stderr.split("\n")[-2]
    refused = read_refusals(sweep)
    assert sorted(Path(job).name for job in refused) == sorted(before)
    report = subprocess.run(
        [sys.executable, "-m", "ganlab.report", str(sweep)], capture_output=True, text=True
    )
    assert report.returncode == 0 and "over 2 of 2 runs" in report.stdout, report.stderr

    # As the refusal advises: the same folders (trainer.resume is not in their names), every
    # finished job skipped, the refusals of the earlier invocation gone.
    resumed = train_cli(
        "-m", *SWEEP, "seed=0,1", "trainer.resume=auto", f"hydra.sweep.dir={sweep}", cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == sorted(before)
    assert job_records(sweep) == before
    assert "already completed" in resumed.stdout + resumed.stderr
    assert not (sweep / REFUSALS_FILE).exists()


def hydra_record(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run / ".hydra").glob("*.yaml"))}


def test_a_refused_or_no_op_command_leaves_the_runs_config_as_it_was(tmp_path):
    """.hydra/ is the record of what a run trained with: a resume refused for another model,
    and a resume with nothing left to do, leave it byte-identical; a resume that trains
    writes it (with its own overrides)."""
    run = tmp_path / "run"
    first = train_cli(*SWEEP, f"hydra.run.dir={run}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    before = hydra_record(run)
    assert set(before) == {"config.yaml", "hydra.yaml", "overrides.yaml"}
    assert b"spectral_norm: false" in before["config.yaml"]
    results = (run / "results.json").read_bytes()

    for extra in (["model.discriminator.spectral_norm=true"], []):  # refused, then a no-op
        again = train_cli(
            *SWEEP, *extra, "trainer.resume=auto", f"hydra.run.dir={run}", cwd=tmp_path
        )
        assert (again.returncode != 0) == bool(extra), again.stderr[-2000:]
        said = "spectral_norm" if extra else "already completed"
        assert said in again.stdout + again.stderr
        assert hydra_record(run) == before
        assert (run / "results.json").read_bytes() == results

    more = train_cli(
        *SWEEP, "trainer.steps=30", "trainer.resume=auto", f"hydra.run.dir={run}", cwd=tmp_path
    )
    assert more.returncode == 0, more.stderr[-3000:]
    after = hydra_record(run)
    assert (
        b"steps: 30" in after["config.yaml"] and b"trainer.resume=auto" in after["overrides.yaml"]
    )


def test_a_run_killed_in_its_final_evaluation_is_finished_by_its_resume(tmp_path, mnist_root):
    """SIGKILL once "evaluating" is logged, then trainer.resume=auto: the resume trains no
    step, evaluates, and writes the whole record: completed, the final losses of the last
    logged interval, the metrics, and the throughput of the sitting that trained (not 0)."""
    run = tmp_path / "run"
    args = [*SWEEP, "trainer.steps=60", f"data.root={mnist_root}", "metrics.enabled=true"]
    args += ["metrics.n_samples=1000", "metrics.eval_samples=200", "metrics.floor=false"]
    args += [f"hydra.run.dir={run}"]
    command = [sys.executable, "-m", "ganlab.train", *args]
    killed = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    for line in killed.stdout:
        if "evaluating" in line:
            killed.send_signal(signal.SIGKILL)
            break
    killed.wait(timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assert (read_results(run).get("status")) != "completed"

    resumed = train_cli(*args, "trainer.resume=auto", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = read_results(run)
    assert results["status"] == "completed" and results["steps"] == 60
    assert set(results["final"]) == {"loss_d", "loss_g"}
    assert all(math.isfinite(v) for v in results["final"].values())
    assert math.isfinite(results["metrics"]["fid"])
    assert results["throughput"]["it_per_s"] > 0
    said = [
        line for line in (resumed.stdout + resumed.stderr).splitlines() if "completed: 60" in line
    ]
    assert said and "nan" not in said[0] and " 0.0 it/s" not in said[0], said

    # A finished last.pt resumed into a new folder with no step left: the same whole record.
    other = tmp_path / "other"
    last = run / "checkpoints" / "last.pt"
    moved = [a for a in args if not a.startswith("hydra.run.dir=")]
    again = train_cli(*moved, f"trainer.resume={last}", f"hydra.run.dir={other}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    copied = read_results(other)
    assert copied["status"] == "completed" and copied["final"] == results["final"]
    assert copied["throughput"] == results["throughput"]


def test_a_second_process_refused_by_the_lock_leaves_the_live_runs_config(tmp_path):
    """While a process holds a run's folder, another command for it is refused and writes
    nothing there, not even Hydra's record of its own command line."""
    run = tmp_path / "run"
    first = train_cli(*SWEEP, f"hydra.run.dir={run}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    before, results = hydra_record(run), (run / "results.json").read_bytes()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
            "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(120)",
            str(run / ".ganlab.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = train_cli(
            *SWEEP, "trainer.steps=30", "optimizer.lr=1e-3", "trainer.resume=auto",
            f"hydra.run.dir={run}", cwd=tmp_path,
        )  # fmt: skip
        assert second.returncode != 0 and "another ganlab process" in second.stderr
        assert hydra_record(run) == before
        assert (run / "results.json").read_bytes() == results
    finally:
        holder.kill()
        holder.wait()


# --- a folder holding another run, and a live process's lock ----------------------------------


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
