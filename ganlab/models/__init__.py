"""Generator/discriminator pairs, registered by name.

Each D returns raw scores of shape [N] (no sigmoid) and takes ``spectral_norm``;
``D(x, return_features=True)`` also returns its last hidden layer, what feature matching and
the contrastive term compare. ``model.init=dcgan`` applies Radford et al.'s initialisation.

Models are built from ``MODELS`` by name with checked arguments, never from a ``_target_``
path: a config read from a checkpoint or a run folder cannot choose code to run.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ganlab.errors import GanlabError
from ganlab.models import dcgan, mlp
from ganlab.models.layers import CONDITIONINGS, INITS, Critic, GeneratorBase, dcgan_init_

# name -> (Generator, Discriminator) classes; model.generator / model.discriminator are
# their keyword arguments (G also gets model.z_dim).
MODELS: dict[str, tuple[type[GeneratorBase], type[Critic]]] = {
    "mlp": (mlp.Generator, mlp.Discriminator),
    "dcgan": (dcgan.Generator, dcgan.Discriminator),
}
IGNORED_KEYS = ("_target_",)  # written by ganlab < 0.2 into configs and checkpoints
# Set from model.z_dim, cond.name and the data's channels (data.name), not by hand.
INJECTED = ("z_dim", "n_classes", "cond", "image_channels")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _arguments(cls: type, key: str, given: Any) -> dict[str, Any]:
    """``given`` checked against cls's keyword arguments: known names, and values of the
    kind each argument's default declares: a switch (bool), a rate in [0, 1) (float, e.g.
    dropout), an integer >= 0 where the default 0 means off (e.g. minibatch_std), else
    positive integers (or non-empty lists of them, e.g. MLP widths)."""
    params = inspect.signature(cls.__init__).parameters
    allowed = [p for p in params if p not in ("self", *INJECTED)]
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise GanlabError(f"invalid value for {key}: {given!r} (a mapping of {', '.join(allowed)})")
    kwargs = {}
    for name, value in given.items():
        if name in IGNORED_KEYS:
            continue
        if name not in allowed:
            raise GanlabError(f"unknown key {key}.{name}; {key} takes {', '.join(allowed)}")
        default = params[name].default
        if isinstance(default, bool):  # a switch, e.g. spectral_norm
            if not isinstance(value, bool):
                raise GanlabError(f"invalid value for {key}.{name}: {value!r} (true or false)")
        elif isinstance(default, float):  # a rate, e.g. dropout
            if not (_number(value) and 0 <= value < 1):
                raise GanlabError(f"invalid value for {key}.{name}: {value!r} (a rate in [0, 1))")
        elif default == 0 and type(default) is int:  # 0: off
            if not (value == 0 and type(value) is int) and not _positive_int(value):
                raise GanlabError(f"invalid value for {key}.{name}: {value!r} (0 (off) or >= 1)")
        elif not (
            _positive_int(value)
            or (isinstance(value, list) and value and all(_positive_int(v) for v in value))
        ):
            raise GanlabError(f"invalid value for {key}.{name}: {value!r} (positive integers)")
        kwargs[name] = value
    return kwargs


def _plain(value: Any) -> Any:
    """Mappings as dicts and sequences as lists, all the way down (strings stay strings)."""
    if isinstance(value, Mapping):
        return {key: _plain(v) for key, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(v) for v in value]
    return value


def build_models(
    model_cfg: Mapping[str, Any], cond: str = "none", image_channels: int = 1
) -> tuple[GeneratorBase, Critic]:
    """(G, D) of the registered ``model.name`` with ``model.generator`` / ``discriminator``;
    ``cond`` (``CONDITIONINGS``) makes both class-conditional; ``image_channels`` (the
    data's, ``ganlab.data.image_channels``) is G's output and D's input per sample."""
    if cond not in CONDITIONINGS:
        raise GanlabError(f"unknown cond {cond!r}; choose one of {', '.join(CONDITIONINGS)}")
    model_cfg = _plain(model_cfg)  # a config node (a read-only mapping) as dicts and lists
    if not isinstance(model_cfg, Mapping):
        raise GanlabError(f"invalid model config: {model_cfg!r}")
    name = model_cfg.get("name")
    if name not in MODELS:
        raise GanlabError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    z_dim = model_cfg.get("z_dim")
    if not isinstance(z_dim, int) or isinstance(z_dim, bool) or z_dim < 1:
        raise GanlabError(f"invalid value for model.z_dim: {z_dim!r} (an integer >= 1)")
    G_cls, D_cls = MODELS[name]
    init = model_cfg.get("init", "default")
    if init not in INITS:
        raise GanlabError(f"invalid value for model.init: {init!r} (one of {', '.join(INITS)})")
    G_args = _arguments(G_cls, "model.generator", model_cfg.get("generator"))
    D_args = _arguments(D_cls, "model.discriminator", model_cfg.get("discriminator"))
    G = G_cls(
        z_dim=z_dim,
        n_classes=CONDITIONINGS[cond].n_classes,
        image_channels=image_channels,
        **G_args,
    )
    D = D_cls(cond=cond, image_channels=image_channels, **D_args)
    if init == "dcgan":
        dcgan_init_(G)
        dcgan_init_(D)
    return G, D


__all__ = ["MODELS", "Critic", "GeneratorBase", "build_models"]
