"""Issue 26's "should fix" inputs, one row each: refused with one line and no traceback, exit
status 2, nothing already written lost; or accepted, doing what it says.

Command lines that need a process run as users run them (``python -m ganlab.train`` in
subprocesses, started together when the first needs them); the run-start checks of the
command line (Hydra's callback), the Python API, checkpoints, the report and the sampler are
called in-process.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from ganlab import api
from ganlab.callbacks import CheckOutputDir
from ganlab.checkpoint import RUN_KEYS, load_checkpoint, save_checkpoint
from ganlab.errors import GanlabError
from ganlab.report.render import build_report
from ganlab.rundir import NAME_MAX, RESULTS_FILE, job_dirname, read_results
from ganlab.runtime import resolve_device
from ganlab.sample import main as sample_main
from ganlab.train import main as train_main
from ganlab.train import train
from tests.conftest import mount_tmpfs, tiny

RUN = [*tiny("mlp"), "data=mnist_sample", "trainer.steps=2", "trainer.sample_every=0"]
LONG = "[" + ",".join(["32"] * 70) + "]"  # a value that makes a job's folder name > 255 bytes


def snapshot(folder: Path) -> dict[str, str]:
    """Every record under ``folder`` by its sha256: what "nothing written is lost" compares
    (train.log is a log: a refused command may say so there)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "train.log"
    }


# --- the command-line rows ------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    id: str
    args: tuple[str, ...]  # after `python -m ganlab.train`; {tmp} is the row's own folder
    says: tuple[str, ...] = ()  # all in the one error line; none: the row is accepted


# The rows that need the process: Hydra's own error path, the whole CLI on a refused value,
# a sweep. The other refusals of the command line (the run-start checks) are called below as
# Hydra calls them, in-process: each subprocess costs seconds of imports.
ROWS = [
    Row(
        "huge_stacked_dataset",
        (*RUN, "data=stacked_mnist", "data.num_images=100000000"),
        ("data.num_images=100000000", "needs at least"),
    ),
    Row(
        "unknown_key_of_a_group",
        (*RUN, "loss=wgan", "loss.gp_weight=10"),
        ("unknown config key loss.gp_weight",),
    ),
    # accepted: a sweep whose job folder names would pass 255 bytes
    Row(
        "long_job_names",
        ("-m", *RUN, f"model.generator.hidden={LONG}", "seed=0,1", "hydra.sweep.dir={tmp}/sweep"),
    ),
]


class Opens:
    """Unpickling this opens (creates) a file: what a crafted pickle can do."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # several run side by side
    env.pop("HYDRA_FULL_ERROR", None)  # Hydra's errors as users see them
    return subprocess.run(
        [sys.executable, "-m", "ganlab.train", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_start(make_cfg, capsys, *overrides: str) -> tuple[int, list[str]]:
    """Hydra's run-start callback (ganlab.callbacks.CheckOutputDir) on the composed config, as
    ``python -m ganlab.train <overrides>`` calls it before the run folder is made: its exit
    status and stderr lines (0 and none when it lets the run start)."""
    cfg = make_cfg(*overrides, return_hydra_config=True)
    try:
        CheckOutputDir().on_run_start(cfg)
        code = 0
    except SystemExit as e:
        code = e.code
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (["trainer.batch_size=100000000"], "trainer.batch_size=100000000 (one batch"),
        (["device=cpu:5"], "device='cpu:5': there is one cpu device"),
        (["device=mps"], "device='mps'"),
        (["hydra.run.dir="], "hydra.run.dir is empty"),
    ],
    ids=["huge_batch", "cpu_index", "mps", "empty_run_dir"],
)
def test_the_command_line_refuses_at_run_start(
    make_cfg, capsys, tmp_path, monkeypatch, overrides, says
):
    if "device=mps" in overrides and torch.backends.mps.is_available():
        pytest.skip("this machine has an mps device")
    monkeypatch.chdir(tmp_path)  # hydra.run.dir= would strew the run here
    code, lines = run_start(make_cfg, capsys, *RUN, f"hydra.run.dir={tmp_path}/run", *overrides)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert says in lines[0]
    assert list(tmp_path.iterdir()) == []  # no run folder, nothing in the working directory


def test_experimental_rerun_is_refused_before_hydra_unpickles(tmp_path, monkeypatch, capsys):
    (tmp_path / "config.pickle").write_bytes(pickle.dumps(Opens(tmp_path / "opened")))
    argv = ["ganlab-train", "--experimental-rerun", str(tmp_path / "config.pickle")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_:
        train_main()
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: --experimental-rerun is refused") and "unpickles" in lines[0]
    assert not (tmp_path / "opened").exists()


@pytest.fixture(scope="module", autouse=True)  # started first: they run beside the rest
def launched(tmp_path_factory, ganlab_cache) -> Iterator[dict[str, tuple[Future, Path]]]:
    """Every row started at once (a few at a time), each in its own empty folder."""
    pool = ThreadPoolExecutor(max_workers=3)
    futures = {}
    for row in ROWS:
        tmp = tmp_path_factory.mktemp(row.id)
        args = [a.format(tmp=tmp) for a in row.args]
        if not any(a.startswith(("hydra.run.dir", "hydra.sweep.dir")) for a in args):
            args.append(f"hydra.run.dir={tmp}/run")
        futures[row.id] = (pool.submit(_cli, args, tmp), tmp)
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.slow
@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_the_command_line(row, launched):
    future, tmp = launched[row.id]
    done = future.result()
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    if not row.says:  # accepted: every job of the sweep trained, into a folder a disk takes
        assert done.returncode == 0, done.stderr[-3000:]
        jobs = [p for p in (tmp / "sweep").iterdir() if p.is_dir()]
        assert len(jobs) == 2 and all(len(p.name.encode()) <= NAME_MAX for p in jobs)
        assert all(read_results(p)["status"] == "completed" for p in jobs)
        assert "2 completed" in done.stderr
        return
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-3000:]
    for words in row.says:
        assert words in lines[0], lines[0]
    assert list(tmp.iterdir()) == []  # refused before any work: no run folder


# --- the Python API --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory, ganlab_cache) -> Path:
    """A finished tiny run (checkpoints, results.json) to copy from."""
    run = tmp_path_factory.mktemp("finished") / "run"
    train(api.compose_config(RUN), run)
    return run


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (lambda tmp: api.train("model=mlp"), "overrides must be a list of strings"),
        (
            lambda tmp: api.train(["trainer.steps=3"], cfg=api.compose_config(RUN)),
            "give overrides or cfg, not both",
        ),
        (lambda tmp: api.train(RUN, out_dir=tmp / "a-file"), "is a file, not a folder"),
        (lambda tmp: api.train(RUN, out_dir=""), "out_dir is empty"),
        (lambda tmp: api.train([*RUN, "device=cpu:5"], out_dir=tmp / "run"), "device='cpu:5'"),
    ],
    ids=["a_string", "overrides_and_cfg", "out_dir_a_file", "out_dir_empty", "cpu_index"],
)
def test_the_python_api_refuses(tmp_path, monkeypatch, call, says):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("keep me")
    with pytest.raises(GanlabError, match=says):
        call(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # no folder made
    assert (tmp_path / "a-file").read_text() == "keep me"


@pytest.mark.parametrize("name", ["mps", "mps:1", "cpu:5", "cuda:7", "cuda:99"])
def test_a_device_this_machine_lacks_is_refused(name):
    kind = torch.device(name).type
    if kind == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has an mps device")
    if kind == "cuda" and torch.cuda.device_count() > torch.device(name).index:
        pytest.skip(f"this machine has {name}")
    with pytest.raises(GanlabError, match=f"device='{name}'"):
        resolve_device(name)


# --- checkpoints ----------------------------------------------------------------------------


BAD_COUNTERS = [
    (key, value)
    for key in ("step", "d_updates", "cpu_s")
    for value in ("2", -5, float("nan"), 1e12, 10**12)
] + [("step", 2.0), ("d_updates", True)]


@pytest.mark.parametrize(
    ("key", "value"), BAD_COUNTERS, ids=[f"{k}={v!r}" for k, v in BAD_COUNTERS]
)
def test_a_checkpoint_with_a_bad_counter_is_damaged(finished, tmp_path, key, value):
    state = load_checkpoint(finished / "checkpoints" / "last.pt", required=RUN_KEYS)
    save_checkpoint(tmp_path / "bad.pt", {**state, key: value})
    with pytest.raises(GanlabError, match=f"is damaged: its {key} is "):
        load_checkpoint(tmp_path / "bad.pt", required=RUN_KEYS)


def test_resume_auto_skips_a_damaged_last_pt_for_the_numbered_copy(finished, tmp_path, caplog):
    run = tmp_path / "run"
    _copy(finished, run)
    last = run / "checkpoints" / "last.pt"
    save_checkpoint(last, {**load_checkpoint(last), "step": -5})
    results = api.train([*RUN, "trainer.steps=3", "trainer.resume=auto"], out_dir=run)
    assert results["status"] == "completed" and results["steps"] == 3
    assert "its step is -5" in caplog.text  # the damaged file was named, then skipped


def test_a_zero_byte_checkpoint_says_so(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"")
    with pytest.raises(GanlabError, match=r"last\.pt: empty file \(0 bytes\)"):
        load_checkpoint(tmp_path / "last.pt")


# --- records: results.json, the report ------------------------------------------------------


def _copy(src: Path, dst: Path) -> None:
    for path in src.rglob("*"):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())


def test_resume_auto_past_a_truncated_results_json_keeps_it_and_continues(finished, tmp_path):
    run = tmp_path / "run"
    _copy(finished, run)
    cut = (run / RESULTS_FILE).read_bytes()[:50]
    (run / RESULTS_FILE).write_bytes(cut)
    results = api.train([*RUN, "trainer.steps=3", "trainer.resume=auto"], out_dir=run)
    assert results["status"] == "completed" and results["steps"] == 3
    assert (run / f"{RESULTS_FILE}.unreadable").read_bytes() == cut  # kept, byte for byte


def test_a_refused_resume_puts_the_unreadable_results_json_back(finished, tmp_path):
    run = tmp_path / "run"
    _copy(finished, run)
    (run / RESULTS_FILE).write_bytes(b'{"status": "compl')
    before = snapshot(run)
    other_model = [*RUN, "trainer.resume=auto", "model.z_dim=8"]
    with pytest.raises(GanlabError, match="model.z_dim"):
        api.train(other_model, out_dir=run)
    assert snapshot(run) == before


@pytest.fixture
def sweep_of(tmp_path) -> Callable[[dict[str, object]], Path]:
    """A sweep folder with one good run (a) and run b holding the given results.json."""

    def make(results: dict[str, object]) -> Path:
        sweep = tmp_path / "sweep"
        (sweep / "a").mkdir(parents=True)
        (sweep / "a" / RESULTS_FILE).write_text(
            json.dumps(
                {"status": "completed", "loss": "vanilla", "final": {"loss_d": 1.3, "loss_g": 0.7}}
            )
        )
        (sweep / "b").mkdir()
        (sweep / "b" / RESULTS_FILE).write_text(json.dumps(results))
        return sweep

    return make


@pytest.mark.parametrize(
    ("results", "says"),
    [
        ({"status": 5}, "unreadable results.json (status is 5, not one of completed"),
        ({"status": "completed", "metrics": "x"}, "unreadable results.json (metrics is 'x'"),
        (
            {"status": "failed", "reason": "cannot write checkpoint X: disk full", "final": {}},
            "failed: cannot write checkpoint X: disk full",
        ),
    ],
    ids=["status_a_number", "metrics_a_string", "failed_with_its_reason"],
)
def test_the_report_names_what_is_wrong_with_a_run(sweep_of, tmp_path, results, says):
    report = build_report(sweep_of(results), tmp_path / "out")
    text = report.markdown.read_text()
    assert says in text
    assert "null (NaN/Inf)" not in text  # the failed run's own reason, not its null losses


# --- the sampler ----------------------------------------------------------------------------


def test_sampling_nan_weights_is_refused(finished, tmp_path, capsys):
    state = load_checkpoint(finished / "checkpoints" / "last.pt")
    name = next(k for k, v in state["G"].items() if v.is_floating_point())
    state["G"][name] = torch.full_like(state["G"][name], float("nan"))
    save_checkpoint(tmp_path / "nan.pt", state)
    with pytest.raises(SystemExit) as exit_:
        sample_main([str(tmp_path / "nan.pt"), "--out", str(tmp_path / "grid.png")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1
    assert lines[0].startswith("error: ") and f"{name} holds NaN/Inf" in lines[0]
    assert not (tmp_path / "grid.png").exists()


# --- folder names -----------------------------------------------------------------------------


def test_long_job_names_are_shortened_readably_and_uniquely():
    short = "loss=hinge,seed=1"
    assert job_dirname(short) == short  # existing sweeps keep their folders
    names = [f"model.generator.hidden={LONG},seed={s}" for s in (0, 1)]
    folders = [job_dirname(n) for n in names]
    assert all(len(f.encode()) <= NAME_MAX for f in folders)
    assert folders[0] != folders[1] and folders[1].endswith(",seed=1")  # every key still there
    assert job_dirname(names[0]) == folders[0]  # the same each time: resume finds it
    many = ",".join(f"key{i}=é{i}" for i in range(200))  # too many keys to shorten values
    assert len(job_dirname(many).encode()) <= NAME_MAX


# --- a disk with 0 bytes free ---------------------------------------------------------------


@pytest.fixture
def full_disk(tmp_path, finished) -> Iterator[Path]:
    """A tmpfs (needs root) holding a finished run, then filled to its last byte."""
    disk = mount_tmpfs(tmp_path / "disk", "8m")
    try:
        _copy(finished, disk / "run")
        with open(disk / "fill", "wb") as fh:
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_refuses_a_fresh_run_or_a_resume_and_changes_nothing(
    full_disk, make_cfg, capsys
):
    before = snapshot(full_disk / "run")
    with pytest.raises(GanlabError, match="No space left on device"):
        api.train([*RUN, "trainer.resume=auto", "trainer.steps=4"], out_dir=full_disk / "run")
    assert snapshot(full_disk / "run") == before
    for folder, resume in ((full_disk / "fresh", "null"), (full_disk / "run", "auto")):
        code, lines = run_start(
            make_cfg, capsys, *RUN, f"hydra.run.dir={folder}", f"trainer.resume={resume}"
        )
        assert code == 2 and len(lines) == 1, lines
        assert "cannot write the output folder" in lines[0] and "No space left" in lines[0]
    assert not (full_disk / "fresh").exists()
    assert snapshot(full_disk / "run") == before
