"""The text of ``python -m ganlab.train --help``, generated from the schema and the conf tree.

The config groups and their options come from ``conf/`` (the default of each from the composed
config), every key with its default from the composed config and its line of explanation from
the comment beside (or above) its field in ``ganlab/config.py``. The text lives in its own
file, ``conf/hydra/help/ganlab.yaml`` (Hydra's ``hydra/help`` group, which ``conf/config.yaml``
selects), never edited by hand::

    python -m ganlab.helptext            # print it
    python -m ganlab.helptext --write    # rewrite conf/hydra/help/ganlab.yaml

tests/test_cli.py fails when the committed text is not what this module generates (a new
option, key or comment: run ``--write``).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import sys
import tokenize
import typing
from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ganlab.config import Config, config_dir, hydra_compose
from ganlab.plugins import plugin_options

HELP_FILE = Path("hydra") / "help" / "ganlab.yaml"  # under conf/: hydra/help=ganlab
GENERATED = (
    "# generated from ganlab/config.py and conf/ by python -m ganlab.helptext --write: do not edit"
)

# One line per group (a group that is not here is listed without one).
GROUPS = {
    "model": "G and D: an MLP or the DCGAN convnets",
    "loss": "the GAN objective (docs/losses.md)",
    "penalty": "a gradient penalty on D; loss=wgan_gp selects gp",
    "cond": "class conditioning of G and D",
    "aug": "what D sees: the images, or DiffAugment's transforms of them (docs/losses.md)",
    "optimizer": "the optimizer of both networks",
    "data": "the training images (mnist falls back to mnist_sample offline), or stacked_mnist",
    "recipe": "paper: each loss with its paper's optimizer and settings; card: the defaults",
    "recipe_loss/paper": "what recipe=paper applies, per loss",
    "experiment": "launchers and predefined sweeps: +experiment=NAME",
    "preset": "measured recipes, +preset=NAME: fast (DCGAN, a few CPU-minutes), fast10 (DCGAN, "
    "10 CPU-minutes), mlp (MLP, 20,000 steps)",
}
# Keys whose field has no comment in the schema.
FALLBACK = {
    "model.name": "the model group's option (model=)",
    "model.z_dim": "size of the noise z",
    "model.discriminator": "D's keyword arguments (channels, hidden, spectral_norm, pack), checked",
    "loss.name": "the loss group's option (loss=)",
    "loss.n_critic": "the loss's own D updates per G update (5 for wgan, wgan_gp)",
    "optimizer.name": "the optimizer group's option (optimizer=)",
    "optimizer.lr": "learning rate of both networks",
    "optimizer.generator.lr": "G's own learning rate (null: optimizer.lr)",
    "optimizer.generator.betas": "G's own betas (null: optimizer.betas)",
    "optimizer.discriminator.lr": "D's own learning rate, e.g. 4e-4 (two time-scale rule)",
    "optimizer.discriminator.betas": "D's own betas (null: optimizer.betas)",
    "data.name": "the data group's option (data=)",
    "data.root": "the MNIST IDX files (downloaded there when missing)",
    "data.split": "the split trained on",
    "data.download": "download missing MNIST files with torchvision",
    "trainer.batch_size": "images per batch, for D and G",
    "trainer.log_every": "TensorBoard scalars every N G steps",
    "trainer.sample_every": "an 8x8 grid of samples (samples/, TensorBoard) every N steps",
    "trainer.ckpt_every": "a checkpoint every N steps (and at the end)",
    "trainer.max_rollbacks": "rollbacks before giving up (on_divergence=rollback)",
    "seed": "seeds Python, NumPy, torch and the fixed noise of the grids",
    "device": "auto: CUDA when present, else CPU; or cpu, cuda, cuda:N",
}
HEADER = """\
ganlab-train: train a GAN on MNIST (the same as python -m ganlab.train)

  python -m ganlab.train [group=option ...] [key=value ...]    one run
  python -m ganlab.train -m loss=vanilla,hinge seed=0,1 ...    a sweep: a run per combination
  python -m ganlab.train --cfg job                             the composed config, as run
  python -m ganlab.train --info config                         the full dump: search path,
                                                               defaults tree, then the config
Runs go to outputs/<date>/<HH-MM-SS>_<loss>_<model>[_<override>...]/ (hydra.run.dir=...).
"""
FOOTER = """\
Add a key the schema lacks with +key=value (aux.<term> only); --hydra-help: Hydra's own flags.
README.md: quickstart; docs/: every loss and metric, sweeps, resume (mkdocs serve)."""


def _compose() -> tuple[Any, dict[str, Any]]:
    """The default config (interpolations kept) and Hydra's choice of each group."""
    cfg = hydra_compose(hydra_node=True)
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    values = OmegaConf.to_container(cfg, resolve=False)
    del values["hydra"]
    return values, choices


def _groups(root: Path) -> dict[str, list[str]]:
    """Every config group under ``root`` (``recipe_loss/paper`` too) and its options."""
    groups = {}
    for folder in sorted(p for p in root.rglob("*") if p.is_dir()):
        group = folder.relative_to(root).as_posix()
        options = sorted({p.stem for p in folder.glob("*.yaml")} | {*plugin_options(group)})
        if options and group.split("/")[0] != "hydra":
            groups[group] = options
    return groups


def _comments(cls: type) -> dict[str, str]:
    """Each field's comment in the class source: beside it, else on the line above."""
    source = inspect.getsource(cls)
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            text = token.string.lstrip("#").strip()
            if text.startswith("type:"):  # a checker's note, then maybe the real comment
                text = text.partition("#")[2].strip()
            comments[token.start[0]] = text
    lines = source.splitlines()
    found = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            line = node.lineno
            above = comments.get(line - 1) if lines[line - 2].lstrip().startswith("#") else None
            found[node.target.id] = comments.get(line) or above or ""
    return found


def _shown(value: Any) -> str:
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        return f"= {value[2:-1]}"  # an interpolation: the key it follows
    if value is None:
        return "null"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return ", ".join(f"{k}={_shown(v)}" for k, v in value.items()) or "(none)"
    return str(value)


def _keys(cls: type, values: Any, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, description) of every field of ``cls``, nested dataclasses expanded."""
    rows = []
    hints, comments = typing.get_type_hints(cls), _comments(cls)
    for f in dataclasses.fields(cls):
        key, hint = f"{prefix}{f.name}", hints[f.name]
        value = values.get(f.name) if isinstance(values, dict) else None
        if dataclasses.is_dataclass(hint):
            rows += _keys(hint, value, f"{key}.")
            continue
        note = comments.get(f.name) or FALLBACK.get(key, "")
        if isinstance(hint, type) and issubclass(hint, Enum):
            note = f"{' | '.join(m.value for m in hint)}{': ' if note else ''}{note}"
        if f.name in ("generator", "discriminator") and prefix == "model.":
            key = f"{key}.*"
        if key == "aux":
            key = "+aux.<term>"
        rows.append((key, _shown(value), note))
    return rows


def _table(rows: list[tuple[str, str, str]], widest: int = 16) -> list[str]:
    """Aligned rows; a value wider than ``widest`` pushes its own row's last column right."""
    key_width = max(len(row[0]) for row in rows)
    width = max(len(row[1]) for row in rows if len(row[1]) <= widest)
    return [f"  {k:<{key_width}}  {v:<{width}}  {n}".rstrip() for k, v, n in rows]


def _group_lines(choices: dict[str, Any]) -> list[str]:
    """Two lines a group: its options (the default starred), then what it is for."""
    lines = []
    groups = _groups(config_dir())
    width = max(len(group) for group in groups) + 1
    for group, options in groups.items():
        chosen = choices.get(group)
        shown = ", ".join(f"{o}*" if o == chosen else o for o in options)
        lines.append(f"  {group + '=':<{width}}  {shown}")
        if GROUPS.get(group):
            lines.append(f"  {'':<{width}}    {GROUPS[group]}")
    return lines


def generate() -> str:
    """The --help text."""
    values, choices = _compose()
    lines = [HEADER, "== Config groups: group=option (* the default) ==", *_group_lines(choices)]
    lines += ["", "== Keys: key=value (default, then what it does) =="]
    lines += _table(_keys(Config, values))
    text = "\n".join([*lines, "", FOOTER])
    if "${" in text:
        raise ValueError("the help text may not hold '${' (OmegaConf would interpolate it)")
    return text.replace("$", "$$")  # string.Template, which Hydra fills the help with


def yaml_block(text: str) -> str:
    """``text`` as the file ``HELP_FILE``: Hydra's help node (``hydra.help``)."""
    body = "\n".join(f"  {line}".rstrip() for line in text.splitlines())
    fields = 'app_name: ganlab-train\nheader: ""\nfooter: ""\ntemplate: |-\n'
    return f"{GENERATED}\n# @package hydra.help\n{fields}{body}\n"


def committed(path: Path | None = None) -> str | None:
    """The help file as committed, or None when there is none."""
    path = path or config_dir() / HELP_FILE
    return path.read_text(encoding="utf-8") if path.is_file() else None


def write(path: Path | None = None) -> Path:
    """Write the generated help file."""
    path = path or config_dir() / HELP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file():  # the config selects it: composing (to generate) needs one there
        path.write_text(yaml_block(""), encoding="utf-8")
    path.write_text(yaml_block(generate()), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--write"]:
        print(f"wrote the --help text into {write()}")
    elif not argv:
        print(generate().replace("$$", "$"))
    else:
        raise SystemExit("usage: python -m ganlab.helptext [--write]")


if __name__ == "__main__":
    main()
