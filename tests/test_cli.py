"""The entry points as people use them: ``python -m ganlab.train`` in subprocesses (bad input,
sweeps, --info, --help, run folder names), every tool's bad input in one table, the messages at
the end of a run and of a sweep, and the Python API with its example notebook."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from ganlab import api, helptext
from ganlab.callbacks import shared_keys
from ganlab.console import Job, results_table, sweep_summary
from ganlab.errors import GanlabError
from ganlab.metrics.classifier import CACHE_FILE
from ganlab.report import ReportError, build_report
from ganlab.rundir import read_results, run_name
from ganlab.sampling import check_writable
from tests.conftest import GRID_RUN, NO_WORK, TINY, hparams_records, tiny, train_cli, value

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["loss=hinje"], "Could not find 'loss/hinje' (did you mean 'hinge'?)"),
        (["trainer.batch_size=0"], "error: invalid value for trainer.batch_size: 0"),
        (["optimizer.lr=-0.001"], "error: invalid value for optimizer.lr: -0.001"),
        (
            ["data.root={missing}", "data.download=false", "data.strict=true"],
            "error: MNIST split 'train' not found",
        ),
        (["trainer.batchsize=8"], "trainer.batchsize; did you mean trainer.batch_size?"),
        (["model.generator.chanels=8"], "did you mean model.generator.channels?"),
        (["trainer.steps=abc"], "trainer.steps=abc: Value 'abc' of type 'str' could not be"),
    ],
)
def test_bad_input_fails_early_with_one_readable_line(tmp_path, overrides, expected):
    missing = tmp_path / "no-mnist-here"
    overrides = [o.format(missing=missing) for o in overrides]
    proc = train_cli(*overrides, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    first_line = proc.stderr.strip().splitlines()[0]
    assert expected in first_line, proc.stderr
    # Nothing was trained: no checkpoint, no results.
    assert not (tmp_path / "run" / "results.json").exists()
    if "=" in overrides[0] and "data.root" not in overrides[0]:  # refused while composing
        assert not (tmp_path / "run").exists() and not (tmp_path / "outputs").exists()
    if "data.root" in overrides[0]:
        assert str(missing) in first_line


def test_multirun_gives_one_run_dir_per_job(tmp_path):
    sweep = tmp_path / "sweep"
    shared = [*TINY, "model.z_dim=8", "data=mnist_sample", f"hydra.sweep.dir={sweep}"]
    proc = train_cli(
        "-m", "loss=vanilla,hinge", "model=mlp,dcgan", "trainer.steps=3", *shared, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = sorted(p for p in sweep.iterdir() if p.is_dir())
    # Folders are named by the keys that differ between the jobs: the shared ones
    # (trainer.steps=3, model.z_dim=8, ...) would only repeat in every name
    jobs = [dict(kv.split("=", 1) for kv in run.name.split(",")) for run in runs]
    assert sorted((j["loss"], j["model"]) for j in jobs) == [
        ("hinge", "dcgan"),
        ("hinge", "mlp"),
        ("vanilla", "dcgan"),
        ("vanilla", "mlp"),
    ]
    assert all(set(job) == {"loss", "model"} for job in jobs), [run.name for run in runs]
    for run, job in zip(runs, jobs, strict=True):
        results = json.loads((run / "results.json").read_text())
        assert (results["loss"], results["model"], results["steps"]) == (
            job["loss"],
            job["model"],
            3,
        )
        assert list((run / "tb").glob("events.out.tfevents.*"))
        assert (run / "checkpoints" / "last.pt").is_file()
    # The same sweep with another shared value continues in the same folders
    more = ("-m", "loss=vanilla,hinge", "model=mlp,dcgan", "trainer.steps=5", "trainer.resume=auto")
    proc = train_cli(*more, *shared, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p for p in sweep.iterdir() if p.is_dir()) == runs
    for run in runs:
        assert json.loads((run / "results.json").read_text())["steps"] == 5, run.name
        assert "resumed from" in (run / "train.log").read_text(), run.name


def test_shared_keys_are_those_every_job_of_a_sweep_shares():
    task = ["+preset=fast", "loss=vanilla,hinge", "seed=0,1", "trainer.steps=1500"]
    assert shared_keys(task, []) == ["preset", "trainer.steps"]
    assert shared_keys(["loss=glob(*)", "seed=range(3)", "data.root=x"], []) == ["data.root"]
    # the sweeper's params are swept; a key given once on the command line is shared
    assert shared_keys(["+experiment=loss_study", "data.root=x"], ["loss", "seed"]) == [
        "data.root",
        "experiment",
    ]
    assert shared_keys(["model.z_dim=8", "loss=hinge", "model.z_dim=0,16"], []) == ["loss"]
    # nothing swept (one job): its name keeps every override
    assert shared_keys(["seed=3"], ["seed"]) == []
    assert shared_keys(["loss=hinge", "trainer.steps=3"], []) == []


def test_info_runs_from_any_directory(tmp_path):
    proc = train_cli("--info", "config", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "loss:" in proc.stdout and "n_critic" in proc.stdout


# --- any tool's bad input: one line naming the problem, never a traceback or a silent yes -----


# The table runs the real command lines in subprocesses, as a user does (``error: <one line>``
# on stderr, exit status 2); they run a few at a time, so the table costs about what its
# slowest cases do. In-process checks sit with their modules: read_idx in test_data.py,
# validate in test_config.py, the sample and eval arguments in test_cli_eval_sample.py.


TRAIN = "ganlab.train"


SAMPLE = "ganlab.sample"


EVAL = "ganlab.evaluate"


REPORT = "ganlab.report"


CLASSIFIER = "ganlab.metrics.classifier"


REBUILD = "python -m ganlab.metrics.classifier --force"


@dataclass(frozen=True)
class Case:
    """One command line: ``{name}`` in args are paths of the ``world`` fixture."""

    id: str
    module: str
    args: tuple[str, ...]
    says: tuple[str, ...]  # all of these in the error line
    absent: str | None = None  # a path that must not exist afterwards (no partial output)


def case(id: str, module: str, args: list[str], *says: str, absent: str | None = None) -> Case:
    return Case(id, module, tuple(args), says, absent)


CASES = [
    # --- training config: refused by validate() before any work -----------------------------
    case("seed_negative", TRAIN, [*NO_WORK, "seed=-1"], "invalid value for seed: -1"),
    case("device_meta", TRAIN, [*NO_WORK, "device=meta"], "invalid value for device: 'meta'"),
    case(
        "zero_wide_layer",
        TRAIN,
        [*NO_WORK, "model.generator.hidden=[0,64]"],
        "invalid value for model.generator.hidden: [0, 64]",
    ),
    # --- data files ---------------------------------------------------------------------------
    case(
        "labels_ge_10",
        TRAIN,
        [
            *tiny("mlp"),
            "data.root={bad_labels}",
            "data.split=test",
            "data.strict=true",
            "data.download=false",
        ],
        "t10k-labels-idx1-ubyte.gz",
        "labels are >= 10",
    ),
    # --- ganlab-sample: checked before the checkpoint is even loaded ------------------------
    case(
        "sample_out_under_a_file",
        SAMPLE,
        ["{run}", "out={file}/grid.png"],
        "out=",
        "is a file",
        absent="{file}/grid.png",
    ),
    case(
        "sample_huge_n",
        SAMPLE,
        ["{run}", "n=2000000", "out={tmp}/s.npz"],
        "n=2000000",
        "at most 1,000,000",
        absent="{tmp}/s.npz",
    ),
    case(
        "sample_huge_seed",
        SAMPLE,
        ["{run}", f"seed={2**32}", "out={tmp}/g.png"],
        f"seed={2**32}",
        absent="{tmp}/g.png",
    ),
    # --- ganlab-eval ----------------------------------------------------------------------------
    case("eval_tiny_n", EVAL, ["{run}", "--n", "5"], "--n must be >= 100", "got 5"),
    case(
        "eval_n_above_the_real_set",
        EVAL,
        # a 250-image test split: quick to embed
        ["{run}", "--n", str(10**9), "--data-root", "{shuffled}", "--device", "cpu", "--no-floor"],
        f"--n {10**9}: at most 250 samples can be compared",
        "mnist/test",
    ),
    case(
        "eval_json_under_a_file",
        EVAL,
        ["{run}", "--n", "100", "--json", "{file}/m.json"],
        "--json",
        "is a file",
    ),
    # --- ganlab-report --------------------------------------------------------------------------
    case("report_out_is_a_file", REPORT, ["{sweep}", "--out", "{file}"], "--out", "is a file"),
    case(
        "report_group_by_bogus",
        REPORT,
        ["{sweep}", "--out", "{tmp}/report", "--group-by", "bogus"],
        "--group-by 'bogus'",
        "valid keys:",
        "loss",
        "seed",
    ),
    # --- the metrics classifier's cache ---------------------------------------------------------
    case(
        "cache_folder_is_a_file",
        CLASSIFIER,
        # --force: building writes into it (without it the shipped network needs no cache)
        ["--cache-dir", "{file}", "--data-root", "{mnist}", "--no-download", "--force"],
        "is a file, not a folder",
        REBUILD,
    ),
    case(
        "cache_empty", CLASSIFIER, ["--cache-dir", "{empty_cache}"], "is empty (0 bytes)", REBUILD
    ),
    case(
        "cache_truncated",
        CLASSIFIER,
        ["--cache-dir", "{cut_cache}"],
        "damaged or truncated",
        REBUILD,
    ),
    case(
        "cache_info_a_list",
        CLASSIFIER,
        ["--cache-dir", "{list_cache}"],
        "its info is a list",
        REBUILD,
    ),
    case(
        "cache_info_lacks_keys",
        CLASSIFIER,
        ["--cache-dir", "{thin_cache}"],
        "its info lacks weights_sha256, train_source",
        REBUILD,
    ),
    case(
        "classifier_below_the_accuracy_floor",
        CLASSIFIER,
        [
            "--cache-dir",
            "{tmp}/lowacc",
            "--data-root",
            "{shuffled}",
            "--epochs",
            "1",
            "--no-download",
            "--force",  # else the shipped classifier is used
        ],
        "below the 50% sanity floor",
        "not cached",
        absent="{tmp}/lowacc/" + CACHE_FILE.as_posix(),
    ),
]


def _run(module: str, args: list[str], cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "GANLAB_CACHE": str(cache),
        "OMP_NUM_THREADS": "1",  # the cases run side by side
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def launched(request, world, tmp_path_factory, ganlab_cache) -> dict[str, tuple[Future, dict]]:
    """The selected cases, started together (a few at a time), each in its own folder."""
    selected = {
        item.callspec.params["case"].id
        for item in request.session.items
        if item.originalname == "test_bad_input_is_one_line" and hasattr(item, "callspec")
    }
    pool = ThreadPoolExecutor(max_workers=min(4, max(2, os.cpu_count() or 2)))
    request.addfinalizer(lambda: pool.shutdown(wait=True, cancel_futures=True))
    futures = {}
    for c in CASES:
        if c.id in selected:
            tmp = tmp_path_factory.mktemp(c.id)
            paths = {**world, "tmp": tmp}
            args = [a.format(**paths) for a in c.args]
            futures[c.id] = (pool.submit(_run, c.module, args, tmp, ganlab_cache), paths)
    return futures


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line(case, launched):
    future, paths = launched[case.id]
    done = future.result()
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 2, done.stderr[-3000:]
    assert lines and lines[-1].startswith("error: "), done.stderr[-3000:]
    for words in case.says:
        assert words in lines[-1], lines[-1]
    if case.absent is not None:
        assert not Path(case.absent.format(**paths)).exists()


def test_a_results_json_that_is_not_an_object_is_a_failed_run(world, tmp_path, ganlab_cache):
    done = _run(REPORT, [str(world["sweep"]), "--out", str(tmp_path)], tmp_path, ganlab_cache)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    text = (tmp_path / "report.md").read_text()
    for found in ("list", "NoneType"):
        assert f"unreadable results.json (expected a JSON object, found {found})" in text
    assert "over 1 of 1 runs" in done.stdout  # the good run still makes its group


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


# --- unwritable folders (simulated: root may write anywhere) ----------------------------------


def test_unwritable_output_folders_are_named(world, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    with pytest.raises(GanlabError, match=r"out=x.npz: cannot write .*permission denied"):
        check_writable(tmp_path / "x.npz", "out=x.npz")
    with pytest.raises(ReportError, match="cannot write in this folder"):
        build_report(world["sweep"], tmp_path / "report")


# --- --help -----------------------------------------------------------------------------------


CONF = REPO / "conf"


def conf_groups() -> dict[str, list[str]]:
    """ganlab's config groups (not Hydra's own, conf/hydra/: the --help text itself)."""
    return {
        folder.relative_to(CONF).as_posix(): sorted(p.stem for p in folder.glob("*.yaml"))
        for folder in sorted(p for p in CONF.rglob("*") if p.is_dir())
        if list(folder.glob("*.yaml")) and folder.relative_to(CONF).parts[0] != "hydra"
    }


def test_help_lists_every_group_with_its_options_and_the_keys(tmp_path):
    proc = train_cli("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    groups = conf_groups()
    assert {"model", "loss", "optimizer", "data", "penalty", "experiment"} <= set(groups)
    for group, options in groups.items():
        (line,) = [line for line in text.splitlines() if line.strip().startswith(f"{group}=")]
        listed = [o.strip().rstrip("*") for o in line.split("=", 1)[1].split(",")]
        assert listed == options, line
    assert "dcgan*" in text and "vanilla*" in text  # the defaults are marked
    for key in ("trainer.steps", "trainer.batch_size", "optimizer.lr", "metrics.n_samples"):
        (line,) = [line for line in text.splitlines() if line.strip().startswith(key + " ")]
        assert len(line.split()) >= 3, line  # key, default, a word of explanation
    assert "--info config" in text and "full dump" in text
    assert "$" not in text


def test_the_committed_help_is_the_generated_one():
    assert helptext.committed() == helptext.yaml_block(helptext.generate()), (
        "conf/hydra/help/ganlab.yaml (--help) is out of date: run python -m ganlab.helptext --write"
    )


# --- run folders, validation, messages --------------------------------------------------------


def test_a_single_run_is_named_by_every_choice_that_changes_training():
    """Loss, model, then each other override shortened (a key's last part, or its last two
    where they would clash), in Hydra's order; what only logs or measures is left out."""
    overrides = (
        "+preset=fast,cond=acgan,metrics.n_samples=500,model.discriminator.hidden=[64,32],"
        "model.generator.hidden=[32,64],model=mlp,trainer.ema=0.999,trainer.log_every=5"
    )
    assert run_name("vanilla", "mlp", overrides) == (
        "vanilla_mlp_preset=fast_cond=acgan_discriminator.hidden=[64,32]_"
        "generator.hidden=[32,64]_ema=0.999"
    )
    assert run_name("hinge", "dcgan", "") == "hinge_dcgan"
    long = ",".join(f"model.generator.k{i}={'9' * 40}" for i in range(10))
    assert len(run_name("hinge", "dcgan", long).encode()) <= 255


def test_run_folders_are_named_by_loss_and_model_and_a_bad_value_leaves_none(tmp_path):
    bad = train_cli(*GRID_RUN, "trainer.steps=2", "trainer.batch_size=0", cwd=tmp_path)
    assert bad.returncode == 2 and "invalid value for trainer.batch_size" in bad.stderr
    assert not (tmp_path / "outputs").exists()  # no empty run folder left behind
    good = train_cli(*GRID_RUN, "trainer.steps=2", "loss=hinge", cwd=tmp_path)
    assert good.returncode == 0, good.stderr[-2000:]
    (run,) = (tmp_path / "outputs").glob("*/*")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", run.parent.name), run.parent.name
    assert re.fullmatch(r"\d\d-\d\d-\d\d_hinge_mlp_.*", run.name), run.name
    assert "_data=mnist_sample_" in run.name and "_steps=2" in run.name  # what was trained
    assert "log_every" not in run.name and "progress" not in run.name  # what only logs
    cpu = "CUDA not available: training on CPU"
    assert ("training on cuda" if torch.cuda.is_available() else cpu) in good.stdout


def test_a_single_run_ends_with_a_results_table():
    metrics = {"fid": 123.456, "kid": 7.0, "mnist_score": 8.5, "fid_floor": 10.2, "kid_floor": 1.0}
    evaluation = {
        "n_samples": 10000,
        "reference": "mnist/test",
        "classifier_sha256": "12fd5e2f3af5" + "0" * 52,
        "feature_network_sha256": "bc656e2e3a49" + "1" * 52,
    }
    text = results_table(metrics, evaluation)
    lines = text.splitlines()
    assert lines[0] == (
        "results (10,000 samples vs mnist/test; label reader 12fd5e2f3af5, features bc656e2e3a49):"
    )
    assert lines[1].split() == ["metric", "value", "real", "floor", "better"]
    assert lines[2].split() == ["fid", "123.5", "10.2", "lower"]
    assert lines[4].split() == ["mnist_score", "8.5", "higher"]


def test_the_sweep_summary_fits_one_screen_with_status_fid_time_and_the_report_hint(tmp_path):
    jobs = [
        Job(tmp_path / "a", {"loss": "hinge", "seed": "0"}, {"status": "completed",
            "metrics": {"fid": 512.3}}, 31.0),
        Job(tmp_path / "b", {"loss": "vanilla", "seed": "0"}, {"status": "diverged"}, 4.2),
        Job(tmp_path / "c", {"loss": "lsgan", "seed": "0"},
            {"status": "failed", "reason": "invalid value for model.z_dim: 0"}, 0.4),
    ]  # fmt: skip
    lines = sweep_summary(tmp_path, jobs, 125.0)
    assert lines[0] == f"sweep {tmp_path}: 3 job(s) in 2.1 min: 1 completed, 1 diverged, 1 failed"
    assert lines[1].split() == ["job", "status", "fid", "time"]
    assert lines[2].split() == ["loss=hinge", "completed", "512.3", "31.0", "s"]
    assert lines[3].split()[:3] == ["loss=vanilla", "diverged", "–"]
    assert any("loss=lsgan: invalid value for model.z_dim: 0" in line for line in lines)
    assert any(f"python -m ganlab.report {tmp_path}" in line for line in lines)
    assert (
        len(lines) < 24 and max(len(line.replace(str(tmp_path), "<root>")) for line in lines) < 100
    )


# --- the Python API and its example ---------------------------------------------------------


def test_the_python_api_trains_like_the_cli_and_returns_the_results(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("INFO", logger="ganlab"):
        results = api.train([*GRID_RUN, "trainer.steps=4", "loss=lsgan"])
    run = Path(results["run_dir"])
    assert run.parent.parent == tmp_path / "outputs"
    assert re.fullmatch(r"\d\d-\d\d-\d\d_lsgan_mlp_.*_steps=4.*", run.name), run.name
    assert results["status"] == "completed" and results["steps"] == 4
    assert results == {**json.loads((run / "results.json").read_text()), "run_dir": str(run)}
    assert any(r.getMessage().startswith("completed: 4 steps") for r in caplog.records)
    assert "completed: 4 steps" in (run / "train.log").read_text()
    assert (run / ".hydra" / "overrides.yaml").is_file() and (run / "progress.gif").is_file()
    records = hparams_records(run / "tb")
    assert value(records["session_start_info"], "loss") == "lsgan"
    # its overrides too; a count is written as text so TensorBoard shows "4", not 4.0000
    assert value(records["session_start_info"], "trainer.steps") == "4"
    # a bad value: one GanlabError, and no folder
    with pytest.raises(GanlabError, match="trainer.batch_size"):
        api.train([*GRID_RUN, "trainer.batch_size=0"], out_dir=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    # a composed config, edited, then trained
    cfg = api.compose_config([*GRID_RUN, "trainer.steps=2"])
    cfg.seed = 7
    assert api.train(cfg=cfg, out_dir=tmp_path / "seven")["seed"] == 7


def test_the_python_api_logs_to_the_console_of_a_plain_script(tmp_path):
    script = textwrap.dedent(f"""
        from ganlab.api import train
        results = train({[*GRID_RUN, "trainer.steps=2"]!r}, out_dir={str(tmp_path / "run")!r})
        print("status", results["status"])
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[ganlab.run][INFO] - completed: 2 steps" in proc.stdout
    assert proc.stdout.strip().endswith("status completed")


def test_the_example_notebook_runs_end_to_end(tmp_path, mnist_root):
    nbformat = pytest.importorskip("nbformat", reason="pip install -e '.[dev]' (nbformat)")
    nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[dev]' (nbclient)")
    pytest.importorskip("ipykernel", reason="pip install -e '.[dev]' (ipykernel)")
    notebook = nbformat.read(REPO / "docs" / "quickstart.ipynb", as_version=4)
    (params,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    overrides = [
        *tiny("mlp"), "trainer.steps=6", "trainer.sample_every=2", f"data.root={mnist_root}",
        "data.split=test", "data.download=false", "metrics.enabled=true",
        "metrics.n_samples=200", "metrics.floor=false",
    ]  # fmt: skip
    params.source = f"OVERRIDES = {overrides!r}\nOUT_DIR = {str(tmp_path / 'run')!r}"
    resources = {"metadata": {"path": str(tmp_path)}}
    client = nbclient.NotebookClient(notebook, timeout=300, resources=resources)
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(o.get("text", "") for o in outputs) + "".join(
        str(o.get("data", {}).get("text/plain", "")) for o in outputs
    )
    assert "completed: 6 steps" in text  # the log lines reach the notebook
    assert "Warning" not in text, text[-2000:]  # e.g. tqdm's "IProgress not found"
    assert re.search(r"FID \d", text), text[-2000:]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the grid is shown
    assert read_results(tmp_path / "run")["status"] == "completed"
