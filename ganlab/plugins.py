"""Your own loss, penalty, model, auxiliary term or metric, without editing ganlab.

A plugin is a module that calls the ``register_*`` functions below when imported::

    # my_losses.py
    import torch.nn.functional as F
    import ganlab

    ganlab.register_loss(
        "softhinge",
        d=lambda r, f: F.softplus(1 - r).mean() + F.softplus(1 + f).mean(),
        g=lambda f, r: -f.mean(),
    )

``GANLAB_PLUGINS=my_losses python -m ganlab.train loss=softhinge`` then trains with it: the
entry points import, before composing the config, the modules named in ``GANLAB_PLUGINS``
(comma-separated, like ``PYTEST_PLUGINS``) and those installed under the entry-point group
``ganlab.plugins``. A registered name is a config option like a built-in one (``--help``
lists it, sweeps and the report show it) and goes into ganlab's registries (``LOSSES``,
``PENALTIES``, ``MODELS``, ``TERMS``, ``metrics.suite.FAMILIES``), which is all the trainer,
the config check and the evaluation read.

Only the user's environment chooses plugins: nothing read from a checkpoint or a run folder
imports one. A run records which plugin gave each of its names (results.json ``plugins``), so
resuming or sampling it without that plugin says which one to load.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from torch import Tensor

from ganlab.auxiliary import TERMS, AuxTerm
from ganlab.config import LossConfig, ModelConfig, PenaltyConfig
from ganlab.errors import GanlabError
from ganlab.losses import LOSSES, GANLoss
from ganlab.metrics import DIRECTIONS
from ganlab.metrics.suite import FAMILIES, Family, GeneratorSpec, Request
from ganlab.models import MODELS, Critic, GeneratorBase
from ganlab.penalties import PENALTIES, Penalty
from ganlab.rundir import lookup, read_results
from ganlab.sampling import sample_fn

log = logging.getLogger(__name__)

ENV = "GANLAB_PLUGINS"  # comma-separated module names
ENTRY_POINT_GROUP = "ganlab.plugins"


@dataclass
class _Loaded:
    modules: list[str] = field(default_factory=list)  # imported, in order
    origin: dict[str, str] = field(default_factory=dict)  # "loss/name" -> plugin module
    current: str = "__main__"  # the plugin being imported (what register_* records)


_loaded = _Loaded()


def load_plugins() -> list[str]:
    """Import the plugin modules of ``GANLAB_PLUGINS`` and of the ``ganlab.plugins`` entry
    points, once each; returns the modules loaded so far. A module that fails to import is
    one line naming it and the error."""
    names = [n.strip() for n in os.environ.get(ENV, "").split(",") if n.strip()]
    found = [(ep.value.split(":")[0], ep) for ep in entry_points(group=ENTRY_POINT_GROUP)]
    for name, ep in [*((n, None) for n in names), *found]:
        if name in _loaded.modules:
            continue
        _loaded.current = name
        try:
            ep.load() if ep is not None else importlib.import_module(name)
        except GanlabError as e:
            raise GanlabError(f"plugin {name}: {e}") from None
        except Exception as e:  # a plugin's own bug or a missing module: say which
            where = f"{ENV}={os.environ.get(ENV, '')}" if ep is None else f"entry point {ep.name}"
            reason = " ".join(str(e).split())[:200]
            raise GanlabError(
                f"cannot import plugin {name} ({where}): {type(e).__name__}: {reason}"
            ) from None
        finally:
            _loaded.current = "__main__"
        _loaded.modules.append(name)
        log.debug("plugin %s loaded", name)
    return list(_loaded.modules)


def origins() -> dict[str, str]:
    """Which plugin module registered each name: ``{"loss/softhinge": "my_losses"}``."""
    return dict(_loaded.origin)


def used_by(config: dict[str, Any]) -> dict[str, str]:
    """The plugin names a run's (plain) config uses, with the module of each: its loss,
    penalty, model and auxiliary terms, and every plugin metric (each applies to every run
    it can measure). Written into results.json and checkpoints as ``plugins``."""
    names = [
        f"loss/{(config.get('loss') or {}).get('name')}",
        f"penalty/{(config.get('penalty') or {}).get('name')}",
        f"model/{(config.get('model') or {}).get('name')}",
        *(f"aux/{term}" for term, weight in (config.get("aux") or {}).items() if weight),
        *(key for key in _loaded.origin if key.startswith("metric/")),
    ]
    return {name: _loaded.origin[name] for name in names if name in _loaded.origin}


def check_recorded(
    recorded: Any, what: str, kinds: tuple[str, ...] = ("loss", "penalty", "model", "aux")
) -> None:
    """Refuse, in one line naming the plugin, a run or checkpoint (``what``) whose
    ``plugins`` record names one of ``kinds`` that is not registered now (a missing metric
    only leaves its number out). Nothing is imported: the user's environment chooses
    plugins (``GANLAB_PLUGINS``), never a file."""
    if not isinstance(recorded, dict):
        return
    all_kinds = {"loss": LOSSES, "penalty": PENALTIES, "model": MODELS, "aux": TERMS}
    registries = {kind: all_kinds[kind] for kind in kinds}
    for key, module in recorded.items():
        kind, _, name = str(key).partition("/")
        if kind in registries and name not in registries[kind]:
            raise GanlabError(
                f"{what} used {kind} {name!r} from plugin {module}, which is not loaded: "
                f"set {ENV}={module} (with the folder holding it on PYTHONPATH)"
            )


def check_resumed(argv: list[str]) -> None:
    """Before Hydra composes a command that resumes (``trainer.resume=auto`` with
    ``hydra.run.dir=X``, or ``trainer.resume=<run dir or checkpoint>``): the resumed run's
    recorded plugins must be loaded (``check_recorded``), said before Hydra reports a config
    option it cannot find. Reads results.json, imports nothing."""
    args = dict(arg.split("=", 1) for arg in argv if "=" in arg and not arg.startswith("-"))
    resume = args.get("trainer.resume")
    if resume in (None, "", "null"):
        return
    folder = Path(args.get("hydra.run.dir", "")) if resume == "auto" else Path(resume)
    if resume == "auto" and "hydra.run.dir" not in args:
        return  # a fresh timestamped folder: nothing recorded there yet
    if folder.is_file():  # <run dir>/checkpoints/<name>.pt
        folder = folder.parent.parent
    try:
        recorded = lookup(read_results(folder), "plugins")
    except GanlabError:  # an unreadable record: the resume itself will say so
        return
    check_recorded(recorded, f"the run in {folder}")


def plugin_options(group: str) -> list[str]:
    """The options plugins added to a config group (``loss``, ``penalty``, ``model``)."""
    prefix = f"{group}/"
    return sorted(key.removeprefix(prefix) for key in _loaded.origin if key.startswith(prefix))


def _claim(kind: str, name: str, registry: dict[str, Any]) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise GanlabError(f"register_{kind}: name {name!r} must be a Python identifier")
    if name in registry:
        owner = _loaded.origin.get(f"{kind}/{name}", "ganlab")
        raise GanlabError(f"register_{kind}: {kind} {name!r} exists already (from {owner})")
    _loaded.origin[f"{kind}/{name}"] = _loaded.current


def register_loss(
    name: str,
    d: Callable[[Tensor, Tensor], Tensor],
    g: Callable[[Tensor, Tensor | None], Tensor],
    n_critic: int = 1,
    g_uses_real: bool = False,
    lipschitz: str | None = None,
) -> None:
    """A loss from raw scores, as in ``ganlab.losses``: D minimises ``d(r, f)``, G minimises
    ``g(f, r)`` (r = D(real), f = D(G(z)); ``r`` is None for G unless ``g_uses_real``).
    ``n_critic``: D updates per G update by default; ``lipschitz``: "clip" or "penalty"
    when the loss needs D 1-Lipschitz (as WGAN does)."""
    _claim("loss", name, LOSSES)
    LOSSES[name] = GANLoss(d, g, g_uses_real=g_uses_real, lipschitz=lipschitz)
    ConfigStore.instance().store(group="loss", name=name, node=LossConfig(name, n_critic))


def register_penalty(
    name: str,
    fn: Callable[[Callable[[Tensor], Tensor], Tensor, Tensor], Tensor],
    weight: float = 10.0,
    scale: float = 1.0,
    labels: str = "real",
) -> None:
    """A penalty on D, as in ``ganlab.penalties``: ``fn(D, real, fake)`` -> one value per
    sample [N]; D adds scale · weight · mean(fn). ``weight``: ``penalty.weight``'s default."""
    _claim("penalty", name, PENALTIES)
    PENALTIES[name] = Penalty(fn, scale, labels)
    ConfigStore.instance().store(
        group="penalty", name=name, node=PenaltyConfig(name=name, weight=weight)
    )


def register_model(
    name: str,
    generator: type[GeneratorBase],
    discriminator: type[Critic],
    generator_args: dict[str, Any] | None = None,
    discriminator_args: dict[str, Any] | None = None,
) -> None:
    """A G/D pair built like ``ganlab.models``: G subclasses ``GeneratorBase`` (its
    ``__init__`` takes z_dim, n_classes, image_channels and your keyword arguments), D
    subclasses ``Critic`` (cond, pack, image_channels, ...). ``*_args``: the defaults of
    ``model.generator`` / ``model.discriminator`` (positive integers or lists of them)."""
    for cls, base in ((generator, GeneratorBase), (discriminator, Critic)):
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise GanlabError(f"register_model {name!r}: {cls!r} is not a {base.__name__}")
    _claim("model", name, MODELS)
    MODELS[name] = (generator, discriminator)
    node = ModelConfig(
        name=name,
        generator=dict(generator_args or {}),
        discriminator={"pack": 1, "spectral_norm": False, **(discriminator_args or {})},
    )
    ConfigStore.instance().store(group="model", name=name, node=node)


def register_aux(
    name: str,
    network: str,
    fn: Callable[..., Tensor],
    reads: str = "D",
    one_channel: bool = False,
    min_packs: int = 1,
) -> None:
    """An auxiliary term (``+aux.<name>=<weight>``), as in ``ganlab.auxiliary``:
    ``fn(real_features, fake_features)`` -> a scalar that ``network`` ("G" or "D")
    minimises; ``reads`` "D" (D's last hidden layer) or "backbone" (the frozen network of
    ``aux_params.perceptual_backbone``)."""
    if network not in ("G", "D") or reads not in ("D", "backbone"):
        raise GanlabError(f"register_aux {name!r}: network G or D, reads D or backbone")
    _claim("aux", name, TERMS)
    TERMS[name] = AuxTerm(network, reads, fn, one_channel=one_channel, min_packs=min_packs)


def register_metric(
    name: str,
    fn: Callable[[Tensor], float],
    better: str = "min",
    applies: Callable[[GeneratorSpec], bool] = lambda spec: spec.image_channels == 1,
) -> None:
    """A metric of generated images: ``fn(images)`` -> a number, for images [n, C, 28, 28]
    in [-1, 1] (n: the evaluation's sample count, drawn with its seed). ``better``: "min" or
    "max" (the report ranks by it); ``applies``: which generators it measures."""
    if better not in ("min", "max"):
        raise GanlabError(f"register_metric {name!r}: better must be 'min' or 'max'")
    _claim("metric", name, {**FAMILIES, **DIRECTIONS})

    def measure(session: Any, spec: GeneratorSpec, req: Request) -> dict[int, Any]:
        draw = sample_fn(spec.generate, spec.z_dim, spec.device, req.seed, spec.n_classes)
        measured = {}
        for n in req.sizes:
            req.check()
            measured[n] = ({name: float(fn(draw(n)))}, {})
        return measured

    FAMILIES[name] = Family(applies, measure)
    DIRECTIONS[name] = better


__all__ = [
    "check_recorded",
    "check_resumed",
    "load_plugins",
    "origins",
    "plugin_options",
    "register_aux",
    "register_loss",
    "register_metric",
    "register_model",
    "register_penalty",
    "used_by",
]
