"""Plugins (ganlab.plugins): a user's module adds a loss, a penalty, a model, an auxiliary
term and a metric without touching ganlab, and they work as options of the command line,
sweeps, the report, --help, sampling; a run that needs a plugin that is not loaded says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from ganlab.errors import GanlabError
from ganlab.losses import LOSSES
from ganlab.models import GeneratorBase
from ganlab.plugins import check_recorded, register_loss, register_model
from tests.conftest import tiny, train_cli

REPO = Path(__file__).resolve().parents[1]

# What a user would write: a loss and a metric, a penalty, an aux term and a model.
PLUGIN = """
import torch
import torch.nn.functional as F
from torch import nn

import ganlab
from ganlab.models import Critic, GeneratorBase

ganlab.register_loss(
    "softhinge",
    d=lambda r, f: F.softplus(1 - r).mean() + F.softplus(1 + f).mean(),
    g=lambda f, r: -f.mean(),
)
# the fraction of inked pixels; lower ranks better, to see the report follow the plugin
ganlab.register_metric("ink", lambda images: (images > 0).float().mean().item(), better="min")
ganlab.register_penalty("score_l2", lambda D, real, fake: D(real).pow(2), weight=0.5)
ganlab.register_aux("mean_match", "G", lambda r, f: (r.mean(0) - f.mean(0)).pow(2).sum())


class TinyG(GeneratorBase):
    def __init__(self, z_dim=16, n_classes=0, image_channels=1, width=8):
        super().__init__(z_dim, n_classes, image_channels)
        self.net = nn.Sequential(nn.Linear(z_dim, width), nn.ReLU(), nn.Linear(width, 784))

    def forward(self, z, y=None):
        return torch.tanh(self.net(z)).view(-1, self.image_channels, 28, 28)


class TinyD(Critic):
    def __init__(self, cond="none", pack=1, image_channels=1, width=8, spectral_norm=False):
        super().__init__(cond, pack, image_channels)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(pack * 784, width), nn.LeakyReLU(0.2))
        self.head = nn.Linear(width, 1)


ganlab.register_model("tiny", TinyG, TinyD, {"width": 8}, {"width": 8})
"""


@pytest.fixture
def plugin_env(tmp_path, monkeypatch) -> Path:
    """A plugin module in a temporary folder, named by GANLAB_PLUGINS for subprocesses."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "my_plugin.py").write_text(textwrap.dedent(PLUGIN))
    path = os.pathsep.join([str(folder), str(REPO), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setenv("GANLAB_PLUGINS", "my_plugin")
    return tmp_path


def _cli(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True
    )


@pytest.mark.slow
def test_plugin_loss_and_metric_through_a_sweep_and_its_report(plugin_env, monkeypatch):
    sweep = plugin_env / "sweep"
    metrics = ["metrics.enabled=true", "metrics.n_samples=100", "metrics.eval_samples=100"]
    args = [*tiny(), "data=mnist_sample", "trainer.steps=20", *metrics]
    done = train_cli(
        "-m", "loss=vanilla,softhinge", *args, f"hydra.sweep.dir={sweep}", cwd=plugin_env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (job,) = [p for p in sweep.iterdir() if "loss=softhinge" in p.name]
    results = json.loads((job / "results.json").read_text())
    assert results["status"] == "completed" and results["loss"] == "softhinge"
    assert results["plugins"] == {"loss/softhinge": "my_plugin", "metric/ink": "my_plugin"}
    assert 0.0 < results["metrics"]["ink"] < 1.0  # a fraction of pixels, measured
    assert "fid" in results["metrics"]  # the built-in families still ran beside it

    report = _cli("ganlab.report", str(sweep), cwd=plugin_env)
    assert report.returncode == 0, report.stderr[-2000:]
    table = (sweep / "report.md").read_text()
    assert "| softhinge |" in table and "| vanilla |" in table
    assert "ink ↓" in table  # the plugin's direction, not the report's default (higher)

    shown = train_cli("--help", cwd=plugin_env)
    (loss_line,) = [line for line in shown.stdout.splitlines() if line.lstrip().startswith("loss=")]
    assert "softhinge" in loss_line and "wgan_gp" in loss_line

    # the plugin not loaded: resuming the run says which plugin it needs, and changes nothing
    monkeypatch.delenv("GANLAB_PLUGINS")
    before = (job / "results.json").read_bytes()
    again = train_cli(
        "loss=softhinge", *args, f"hydra.run.dir={job}", "trainer.resume=auto", cwd=plugin_env
    )
    assert again.returncode == 2
    lines = again.stderr.strip().splitlines()
    assert lines == [
        f"error: the run in {job} used loss 'softhinge' from plugin my_plugin, which is not "
        "loaded: set GANLAB_PLUGINS=my_plugin (with the folder holding it on PYTHONPATH)"
    ]
    assert (job / "results.json").read_bytes() == before


@pytest.mark.slow
def test_plugin_model_penalty_and_aux_train_and_sample(plugin_env):
    run = plugin_env / "run"
    args = ["model=tiny", "penalty=score_l2", "+aux.mean_match=1.0", "trainer.batch_size=16"]
    args += ["trainer.steps=12", "trainer.progress=false", "model.z_dim=16"]
    done = train_cli(*args, "metrics.enabled=false", f"hydra.run.dir={run}", cwd=plugin_env)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((run / "results.json").read_text())
    assert results["model"] == "tiny" and results["steps"] == 12
    assert set(results["plugins"]) >= {"model/tiny", "penalty/score_l2", "aux/mean_match"}
    logged = (run / ".hydra" / "config.yaml").read_text()
    assert "width: 8" in logged and "name: score_l2" in logged

    out = plugin_env / "grid.npz"
    sampled = _cli("ganlab.sample", str(run), f"out={out}", "n=8", cwd=plugin_env)
    assert sampled.returncode == 0, sampled.stderr[-2000:]


def test_registering_a_taken_name_or_a_plain_module_is_one_clear_error():
    with pytest.raises(GanlabError, match="loss 'vanilla' exists already"):
        register_loss("vanilla", d=lambda r, f: r.mean(), g=lambda f, r: f.mean())
    with pytest.raises(GanlabError, match="must be a Python identifier"):
        register_loss("my loss", d=lambda r, f: r.mean(), g=lambda f, r: f.mean())
    with pytest.raises(GanlabError, match="is not a GeneratorBase"):
        register_model("plain", nn.Linear, nn.Linear)
    assert "my loss" not in LOSSES


def test_a_recorded_plugin_that_is_not_registered_is_named_and_metrics_are_not_required():
    with pytest.raises(GanlabError, match="model 'nine' from plugin their_models"):
        check_recorded({"model/nine": "their_models"}, "the checkpoint X")
    check_recorded({"metric/ink": "my_plugin", "loss/vanilla": "x"}, "the run")  # both fine
    check_recorded("not a dict", "the run")  # an old or edited record: nothing to check


def test_generator_base_declares_what_the_metrics_and_the_trainer_read():
    class G(GeneratorBase):
        def forward(self, z, y=None):
            return torch.zeros(len(z), self.image_channels, 28, 28)

    g = G(z_dim=5, n_classes=10, image_channels=3)
    assert (g.z_dim, g.n_classes, g.image_channels, g.conditional) == (5, 10, 3, True)
    assert not G(z_dim=5, n_classes=0, image_channels=1).conditional
