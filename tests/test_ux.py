"""As people use it: the HParams a run declares, the --help, the Python API and its example,
the pictures, the messages at the end of a run and of a sweep, the continue command."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageSequence
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

from ganlab import api, helptext
from ganlab.console import Job, results_table, sweep_summary
from ganlab.errors import GanlabError
from ganlab.evaluate import _pairs_as_flags
from ganlab.losses import LOSSES
from ganlab.rundir import read_results
from ganlab.sample import parse_args
from ganlab.tracking import HPARAMS_SUFFIX, STATUSES
from ganlab.train import train
from tests.conftest import tiny, train_cli

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
TINY_RUN = [*tiny("mlp"), "data=mnist_sample", "trainer.log_every=2", "trainer.sample_every=2"]
FIRST_COLUMNS = ["loss", "model", "seed", "lr", "n_critic", "batch_size", "penalty", "ema"]


def hparams_records(tb: Path) -> dict[str, object]:
    """The HParams plugin's records in a run's tb/, as TensorBoard reads them."""
    acc = EventAccumulator(str(tb))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    records = {}
    for tag, field in [
        ("_hparams_/experiment", "experiment"),
        ("_hparams_/session_start_info", "session_start_info"),
        ("_hparams_/session_end_info", "session_end_info"),
    ]:
        if tag in content:
            data = plugin_data_pb2.HParamsPluginData.FromString(content[tag])
            records[field] = getattr(data, field)
    records["scalars"] = acc.Tags()["scalars"]
    return records


def value(start: plugin_data_pb2.SessionStartInfo, name: str) -> object:
    v = start.hparams[name]
    return v.string_value if v.HasField("string_value") else v.number_value


# --- HParams --------------------------------------------------------------------------------


def test_a_run_declares_its_hparams_columns_domains_status_and_data_source(
    make_cfg, tmp_path, mnist_root
):
    # data=mnist with no MNIST under data.root: training falls back to the sample
    cfg = make_cfg(
        *tiny("mlp"),
        "trainer.steps=4",
        f"data.root={tmp_path / 'no-mnist'}",
        "data.download=false",
        "metrics.enabled=true",
        "metrics.n_samples=200",
        "metrics.floor=false",
    )
    assert cfg.data.name == "mnist"
    train(cfg, tmp_path / "run")
    records = hparams_records(tmp_path / "run" / "tb")
    experiment = records["experiment"]
    infos = {info.name: info for info in experiment.hparam_infos}
    names = [info.name for info in experiment.hparam_infos]
    assert names[:10] == [*FIRST_COLUMNS, "data", "status"]
    # what identifies a run is ticked in the dashboard (it ticks the "differs" columns)
    assert [info.name for info in experiment.hparam_infos if info.differs] == FIRST_COLUMNS[:5]
    assert [v.string_value for v in infos["loss"].domain_discrete.values] == sorted(LOSSES)
    assert [v.string_value for v in infos["status"].domain_discrete.values] == sorted(STATUSES)
    assert infos["seed"].domain_interval.min_value == 0
    assert infos["ema"].domain_interval.max_value == 1
    # the metric columns: the primary metric first, then the others, then the losses
    tags = [m.name.tag for m in experiment.metric_infos]
    # metrics_final/ (the final evaluation) where the run logs one, else the metrics/ curve
    assert [t.split("/")[0] for t in tags[:3]] == [tags[0].split("/")[0]] * 3
    assert [t.partition("/")[2] for t in tags[:3]] == ["fid", "mnist_score", "classes_covered"]
    assert "loss/G" in tags and all(tag in records["scalars"] for tag in tags)
    # the session: the actual data source, the status; the dashboard's status too
    start = records["session_start_info"]
    assert value(start, "data") == "mnist_sample" and value(start, "status") == "completed"
    assert value(start, "loss") == "vanilla" and value(start, "model") == "mlp"
    assert start.group_name == f"run ({tmp_path.name})"
    assert records["session_end_info"].status == api_pb2.STATUS_SUCCESS
    # nothing in the Scalars dashboard's way: no hparam/* one-point charts
    assert not [tag for tag in records["scalars"] if tag.startswith("hparam")]
    assert len(list((tmp_path / "run" / "tb").glob(f"*{HPARAMS_SUFFIX}"))) == 1


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
    args = [*TINY_RUN, "trainer.steps=8", f"hydra.run.dir='{run_dir}'"]
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


# --- --help -----------------------------------------------------------------------------------


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


def test_run_folders_are_named_by_loss_and_model_and_a_bad_value_leaves_none(tmp_path):
    bad = train_cli(*TINY_RUN, "trainer.steps=2", "trainer.batch_size=0", cwd=tmp_path)
    assert bad.returncode == 2 and "invalid value for trainer.batch_size" in bad.stderr
    assert not (tmp_path / "outputs").exists()  # no empty run folder left behind
    good = train_cli(*TINY_RUN, "trainer.steps=2", "loss=hinge", cwd=tmp_path)
    assert good.returncode == 0, good.stderr[-2000:]
    (run,) = (tmp_path / "outputs").glob("*/*")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", run.parent.name), run.parent.name
    assert re.fullmatch(r"\d\d-\d\d-\d\d_hinge_mlp", run.name), run.name
    cpu = "CUDA not available: training on CPU"
    assert ("training on cuda" if torch.cuda.is_available() else cpu) in good.stdout


def test_a_single_run_ends_with_a_results_table():
    metrics = {"fid": 123.456, "kid": 7.0, "mnist_score": 8.5, "fid_floor": 10.2, "kid_floor": 1.0}
    text = results_table(metrics, {"n_samples": 10000, "reference": "mnist/test",
                                   "classifier_sha256": "12fd5e2f3af5" + "0" * 52})  # fmt: skip
    lines = text.splitlines()
    assert lines[0] == "results (10,000 samples vs mnist/test; classifier 12fd5e2f3af5):"
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


# --- one argument style ---------------------------------------------------------------------


def test_the_tools_take_flags_and_keep_key_value_as_an_alias(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    out = str(tmp_path / "g.png")
    flags = parse_args([str(run), "--n", "4", f"--out={out}", "--seed", "3"])
    pairs = parse_args([str(run), "n=4", f"out={out}", "seed=3"])
    assert flags == pairs and flags[1]["n"] == 4 and flags[1]["seed"] == 3
    assert parse_args(["--n", "4", str(run)]) == parse_args([str(run), "n=4"])
    with pytest.raises(GanlabError, match="unknown argument '--size'; allowed: --n, --out"):
        parse_args([str(run), "--size", "3"])
    # ganlab-eval: flags, and key=value for the same options
    assert _pairs_as_flags([str(run), "n=2000", "data_root=/d", "floor=false"]) == [
        str(run), "--n", "2000", "--data-root", "/d", "--no-floor",
    ]  # fmt: skip
    sweep_job = tmp_path / "loss=hinge,seed=0"
    sweep_job.mkdir()
    assert _pairs_as_flags([str(sweep_job), "--n", "200"]) == [str(sweep_job), "--n", "200"]


# --- pictures -------------------------------------------------------------------------------


def test_grids_are_saved_enlarged_and_progress_gif_has_a_frame_per_grid(make_cfg, tmp_path):
    train(make_cfg(*TINY_RUN, "trainer.steps=6"), tmp_path)
    grids = sorted((tmp_path / "samples").glob("*.png"))
    assert [p.name for p in grids] == ["step_000002.png", "step_000004.png", "step_000006.png"]
    with Image.open(grids[0]) as png:
        assert png.size == (3 * 242, 3 * 242)  # 8 x 8 digits of 28 px, 2 px apart, x3
    with Image.open(tmp_path / "progress.gif") as gif:
        frames = list(ImageSequence.Iterator(gif))
        assert len(frames) == len(grids) == gif.n_frames
        assert gif.size[0] == 3 * 242 and gif.info.get("loop") == 0
    # TensorBoard keeps the grid at its own size
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    acc.Reload()
    image = acc.Images("samples")[-1]
    assert (image.width, image.height) == (242, 242)


# --- the Python API and its example ---------------------------------------------------------


def test_the_python_api_trains_like_the_cli_and_returns_the_results(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("INFO", logger="ganlab"):
        results = api.train([*TINY_RUN, "trainer.steps=4", "loss=lsgan"])
    run = Path(results["run_dir"])
    assert run.parent.parent == tmp_path / "outputs"
    assert re.fullmatch(r"\d\d-\d\d-\d\d_lsgan_mlp", run.name)
    assert results["status"] == "completed" and results["steps"] == 4
    assert results == {**json.loads((run / "results.json").read_text()), "run_dir": str(run)}
    assert any(r.getMessage().startswith("completed: 4 steps") for r in caplog.records)
    assert "completed: 4 steps" in (run / "train.log").read_text()
    assert (run / ".hydra" / "overrides.yaml").is_file() and (run / "progress.gif").is_file()
    records = hparams_records(run / "tb")
    assert value(records["session_start_info"], "loss") == "lsgan"
    assert value(records["session_start_info"], "trainer.steps") == 4  # its overrides too
    # a bad value: one GanlabError, and no folder
    with pytest.raises(GanlabError, match="trainer.batch_size"):
        api.train([*TINY_RUN, "trainer.batch_size=0"], out_dir=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    # a composed config, edited, then trained
    cfg = api.compose_config([*TINY_RUN, "trainer.steps=2"])
    cfg.seed = 7
    assert api.train(cfg=cfg, out_dir=tmp_path / "seven")["seed"] == 7


def test_the_python_api_logs_to_the_console_of_a_plain_script(tmp_path):
    script = textwrap.dedent(f"""
        from ganlab.api import train
        results = train({[*TINY_RUN, "trainer.steps=2"]!r}, out_dir={str(tmp_path / "run")!r})
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
    assert re.search(r"FID \d", text), text[-2000:]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the grid is shown
    assert read_results(tmp_path / "run")["status"] == "completed"
