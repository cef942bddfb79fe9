r"""An exponential moving average of G's weights (Yazıcı et al. 2019; Karras et al. 2018).

After every G update, with decay d and t the number of updates so far:

    θ_ema ← r_t · θ_ema + (1 − r_t) · θ,      r_t = min(d, (1 + t) / (10 + t))

The warm-up r_t (TensorFlow's ExponentialMovingAverage with ``num_updates``) keeps the first
averages close to G instead of to its random initialisation. d = 0 makes θ_ema = θ.

BatchNorm: the averaged weights never ran through their own running statistics, and G's
buffers belong to other weights, so the EMA generator's statistics are recomputed before
each use (``recalibrate_batchnorm``): the average of the batch means and (unbiased) batch
variances of the EMA generator's own activations over ``BN_BATCHES`` batches of
``BN_BATCH_SIZE`` fixed noise vectors (seed ``BN_SEED``, drawn on the CPU).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

BN_BATCHES, BN_BATCH_SIZE, BN_SEED = 8, 256, 12345


@torch.no_grad()
def recalibrate_batchnorm(G: nn.Module, z_dim: int, device: torch.device) -> None:
    """Reset G's BatchNorm running statistics to those of its own activations (see above);
    G is left in eval mode. The training RNG is not touched."""
    norms = [m for m in G.modules() if isinstance(m, _BatchNorm)]
    if norms:
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average: each batch counts the same
        G.train()
        rng = torch.Generator().manual_seed(BN_SEED)
        for _ in range(BN_BATCHES):
            z = torch.randn(BN_BATCH_SIZE, z_dim, generator=rng).to(device)
            if G.conditional:  # uniform labels
                G(z, torch.randint(G.n_classes, (BN_BATCH_SIZE,), generator=rng).to(device))
            else:
                G(z)
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
    G.eval()


class EMA:
    """The averaged generator (``self.G``, frozen) and its update rule.

    The update count lives on the device as a tensor, so ``update`` reads nothing back to the
    host and traces into a compiled training iteration (trainer.compile) without a recompile
    per step; ``updates`` and ``rate`` read it back for the checkpoint and the tests.
    """

    def __init__(self, G: nn.Module, decay: float, z_dim: int):
        self.decay, self.z_dim = decay, z_dim
        self.G = copy.deepcopy(G).requires_grad_(False).eval()
        device = next(self.G.parameters()).device
        # float64 counts exactly and gives r_t to double precision (MPS has no float64)
        dtype = torch.float32 if device.type == "mps" else torch.float64
        self._updates = torch.zeros((), dtype=dtype, device=device)
        self._stale = True  # BatchNorm statistics to recompute before the next use

    @property
    def updates(self) -> int:
        return int(self._updates.item())

    def _rate(self) -> torch.Tensor:
        t = self._updates
        return torch.clamp((1 + t) / (10 + t), max=self.decay)

    def rate(self) -> float:
        """r_t for the next update."""
        return float(self._rate().item())

    @torch.no_grad()
    def update(self, G: nn.Module) -> None:
        r = self._rate()
        averaged = list(self.G.parameters())
        current = [p.detach() for p in G.parameters()]
        torch._foreach_mul_(averaged, r.to(averaged[0].dtype))
        torch._foreach_add_(averaged, torch._foreach_mul(current, (1 - r).to(current[0].dtype)))
        self._updates.add_(1)

    def mark_stale(self) -> None:
        """G's weights moved: recompute the BatchNorm statistics before the next use (kept
        out of ``update`` so a compiled iteration never writes a Python attribute)."""
        self._stale = True

    def generator(self) -> nn.Module:
        """The EMA generator in eval mode, its BatchNorm statistics up to date."""
        if self._stale:
            device = next(self.G.parameters()).device
            recalibrate_batchnorm(self.G, self.z_dim, device)
            self._stale = False
        return self.G

    def state_dict(self) -> dict[str, Any]:
        return {"G": self.G.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self._updates.fill_(int(state["updates"]))
        self._stale = True
