"""The house rules: one home per fact, registries that match the config tree, short functions,
and nothing read from a checkpoint that chooses code to run."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import torch
from omegaconf import MISSING, OmegaConf

from ganlab import config as schema
from ganlab.auxiliary import TERMS
from ganlab.build import load_generator
from ganlab.checkpoint import save_checkpoint
from ganlab.config import config_dir
from ganlab.errors import GanlabError
from ganlab.losses import LOSSES
from ganlab.models import MODELS, build_models

PACKAGE = Path(__file__).resolve().parents[1] / "ganlab"
GROUP_SCHEMAS = {
    "loss": schema.LossConfig,
    "model": schema.ModelConfig,
    "data": schema.DataConfig,
    "optimizer": schema.OptimizerConfig,
}
MAX_FUNCTION_LINES = 60


def test_each_loss_file_is_a_registered_loss_and_every_loss_has_a_file():
    files = {p.stem: OmegaConf.load(p) for p in (config_dir() / "loss").glob("*.yaml")}
    assert set(files) == set(LOSSES)
    assert all(node.name == stem for stem, node in files.items())


def test_each_model_file_names_a_registered_model():
    files = {p.stem: OmegaConf.load(p) for p in (config_dir() / "model").glob("*.yaml")}
    assert set(files) == set(MODELS)
    assert all(node.name == stem and "_target_" not in str(node) for stem, node in files.items())


def test_the_loss_sweep_sweeps_every_loss_file_by_glob():
    sweep = OmegaConf.load(config_dir() / "experiment" / "loss_sweep.yaml")
    assert sweep.hydra.sweeper.params.loss == "glob(*)"


def _defaults(cls: type) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING and f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


@pytest.mark.parametrize("group", sorted(GROUP_SCHEMAS))
def test_no_group_file_restates_a_schema_default(group):
    defaults = _defaults(GROUP_SCHEMAS[group])
    for path in (config_dir() / group).glob("*.yaml"):
        node = OmegaConf.to_container(OmegaConf.load(path))
        for key, value in node.items():
            default = defaults.get(key, object())
            default = getattr(default, "value", default)  # enums
            assert value != default, f"{path.name}: {key}={value!r} is the schema's default"


def test_the_root_config_restates_no_schema_default():
    node = OmegaConf.to_container(OmegaConf.load(config_dir() / "config.yaml"))
    defaults = _defaults(schema.Config)
    assert not [k for k, v in node.items() if k in defaults and defaults[k] == v]


def test_auxiliary_terms_name_their_network_and_features():
    assert {t.network for t in TERMS.values()} <= {"G", "D"}
    assert {t.reads for t in TERMS.values()} <= {"D", "backbone"}


def _long_functions() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(PACKAGE)}:{node.name} ({length} lines)")
    return found


def test_no_function_in_the_package_is_longer_than_sixty_lines():
    assert _long_functions() == []


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
