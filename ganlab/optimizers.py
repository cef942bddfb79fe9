"""The optimizers a config can name, built by ganlab (no ``_target_``: a config read from a
file cannot choose code to run).

``optimizer.name`` picks one for both networks; ``optimizer.lr`` / ``optimizer.betas`` set
both, and ``optimizer.generator.lr`` / ``optimizer.discriminator.lr`` (or ``.betas``) one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from ganlab.errors import GanlabError

# name -> (class, takes betas): Adam (Kingma & Ba 2015), RMSprop (the WGAN paper's).
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], bool]] = {
    "adam": (torch.optim.Adam, True),
    "rmsprop": (torch.optim.RMSprop, False),
}


def build_optimizer(
    name: str,
    params: Iterable[torch.nn.Parameter],
    lr: float,
    betas: Sequence[float] | None = None,
    capturable: bool = False,
) -> torch.optim.Optimizer:
    """``capturable``: the step count stays on the device, so a CUDA graph can replay the
    step (trainer.compile=reduce-overhead on CUDA)."""
    if name not in OPTIMIZERS:
        raise GanlabError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    cls, takes_betas = OPTIMIZERS[name]
    extra = {"capturable": True} if capturable else {}
    if takes_betas:
        if betas is not None:
            extra["betas"] = tuple(betas)
        return cls(params, lr=lr, **extra)
    if betas is not None:
        raise GanlabError(f"optimizer {name} takes no betas (set optimizer.betas=null)")
    return cls(params, lr=lr, **extra)
