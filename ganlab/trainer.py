"""One G/D pair, its optimizers and its loss: ``d_step`` and ``g_step``.

The trainer only updates networks; the loop that decides when to log, sample and save lives
in ``ganlab.train`` so it reads top to bottom. Steps return device tensors, never floats,
so nothing here waits for the GPU.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ganlab.data import MNIST
from ganlab.losses import GANLoss
from ganlab.penalties import clip_weights_, gradient_penalty


class Trainer:
    def __init__(
        self,
        G: nn.Module,
        D: nn.Module,
        loss: GANLoss,
        opt_G: torch.optim.Optimizer,
        opt_D: torch.optim.Optimizer,
        data: MNIST,
        batch_size: int,
        z_dim: int,
        gp_weight: float = 0.0,
        clip: float | None = None,
    ):
        self.G, self.D, self.loss = G, D, loss
        self.opt_G, self.opt_D = opt_G, opt_D
        self.data, self.batch_size, self.z_dim = data, batch_size, z_dim
        self.gp_weight, self.clip = gp_weight, clip
        self.step = 0  # generator updates done
        self.d_updates = 0

    def noise(self, n: int) -> Tensor:
        return torch.randn(n, self.z_dim, device=self.data.images.device)

    def d_step(self) -> dict[str, Tensor]:
        """D: push real scores up and generated scores down (by the loss's measure)."""
        real = self.data.sample(self.batch_size)  # [B, 1, 28, 28], fresh for every D step
        with torch.no_grad():
            fake = self.G(self.noise(self.batch_size))
        real_logits, fake_logits = self.D(real), self.D(fake)  # [B], [B]
        loss = self.loss.d(real_logits, fake_logits)
        logs = {"D/real": real_logits.mean(), "D/fake": fake_logits.mean()}
        if self.loss.estimates_wasserstein:
            logs["wasserstein/estimate"] = -loss
        if self.gp_weight > 0:
            gp = gradient_penalty(self.D, real, fake).mean()
            loss = loss + self.gp_weight * gp
            logs["penalty/gp"] = gp
        self.opt_D.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_D.step()
        if self.clip is not None:
            clip_weights_(self.D, self.clip)
        self.d_updates += 1
        logs["loss/D"] = loss
        return logs

    def g_step(self) -> dict[str, Tensor]:
        """G: make D score generated images as real."""
        fake_logits = self.D(self.G(self.noise(self.batch_size)))
        real_logits = None
        if self.loss.g_uses_real:  # relativistic losses compare with D(real), a constant for G
            with torch.no_grad():
                real_logits = self.D(self.data.sample(self.batch_size))
        loss = self.loss.g(fake_logits, real_logits)
        self.opt_G.zero_grad(set_to_none=True)
        loss.backward(inputs=list(self.G.parameters()))  # no gradients for D in the G step
        self.opt_G.step()
        self.step += 1
        return {"loss/G": loss}

    @torch.no_grad()
    def generate(self, z: Tensor) -> Tensor:
        """Images for z with G in eval mode (BatchNorm running statistics)."""
        self.G.eval()
        try:
            return self.G(z)
        finally:
            self.G.train()

    def state_dict(self) -> dict[str, Any]:
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "step": self.step,
            "d_updates": self.d_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        _load_optimizer(self.opt_G, state["opt_G"])
        _load_optimizer(self.opt_D, state["opt_D"])
        self.step, self.d_updates = state["step"], state["d_updates"]


def _load_optimizer(opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load moments and step counts, but keep the hyperparameters (lr, betas, ...) that the
    optimizer was built with: a resumed run follows its config, so it can change the lr."""
    hyper = [{k: v for k, v in group.items() if k != "params"} for group in opt.param_groups]
    opt.load_state_dict(state)
    for group, h in zip(opt.param_groups, hyper, strict=True):
        group.update(h)
