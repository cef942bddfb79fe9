"""The house rules: one home per fact, registries that match the config tree, short functions.
(Nothing read from a checkpoint chooses code to run: test_checkpoint.py.)"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest
from omegaconf import MISSING, OmegaConf

from ganlab import config as schema
from ganlab.auxiliary import TERMS
from ganlab.config import config_dir
from ganlab.losses import LOSSES
from ganlab.models import MODELS

REPO = Path(__file__).resolve().parents[1]

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


# --- classes: small, their attributes declared where they are born ---------------------------

MAX_CLASS_LINES = 250


def _classes() -> list[tuple[Path, ast.ClassDef]]:
    found = []
    for path in sorted((REPO / "ganlab").rglob("*.py")):
        tree = ast.parse(path.read_text())
        found += [(path, n) for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    return found


def test_no_class_in_ganlab_is_over_250_lines():
    sizes = {f"{p.name}:{c.name}": c.end_lineno - c.lineno + 1 for p, c in _classes()}
    assert sizes and all(n > 0 for n in sizes.values())
    too_big = {name: n for name, n in sizes.items() if n > MAX_CLASS_LINES}
    assert not too_big, f"split these classes (over {MAX_CLASS_LINES} lines): {too_big}"


def test_no_attribute_is_born_outside_init():
    """Every ``self.x = ...`` outside ``__init__`` sets an attribute that ``__init__`` (or the
    class body, for declared ones) already has: a reader sees all of an object's state in one
    place, and nothing is probed with getattr(self, "x", None)."""
    born = {}
    for path, cls in _classes():
        declared = {
            t.target.id
            for t in cls.body
            if isinstance(t, ast.AnnAssign) and isinstance(t.target, ast.Name)
        }
        declared |= {
            t.id
            for a in cls.body
            if isinstance(a, ast.Assign)
            for t in a.targets
            if isinstance(t, ast.Name)
        }
        in_init, elsewhere = set(), {}
        for fn in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            for node in ast.walk(fn):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.ctx, ast.Store)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "self"
                ):
                    if fn.name in ("__init__", "__post_init__"):
                        in_init.add(node.attr)
                    else:
                        elsewhere.setdefault(node.attr, fn.name)
        for attr, method in elsewhere.items():
            if attr not in in_init and attr not in declared:
                born[f"{path.name}:{cls.name}.{attr}"] = method
    assert not born, f"set in __init__ (or declare in the class body) first: {born}"


def test_models_declare_their_capabilities_instead_of_being_probed():
    """G and D say what they are (GeneratorBase, Critic); nothing guesses with getattr."""
    probes = re.compile(r"getattr\((G|D|self\.G|self\.D|generator|model), ")
    hits = [
        f"{path.relative_to(REPO)}:{i}"
        for path in sorted((REPO / "ganlab").rglob("*.py"))
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if probes.search(line)
    ]
    assert not hits, hits
