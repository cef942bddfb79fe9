"""One G/D pair, its optimizers and its loss: ``d_step`` and ``g_step``.

The trainer only updates networks; the loop that decides when to log, sample and save lives
in ``ganlab.train`` so it reads top to bottom. Steps return device tensors, never floats,
so nothing here waits for the GPU.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ganlab import auxiliary
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
        aux: dict[str, float] | None = None,
        margin: float = 1.0,
        backbone: nn.Module | None = None,
    ):
        self.G, self.D, self.loss = G, D, loss
        self.opt_G, self.opt_D = opt_G, opt_D
        self.data, self.batch_size, self.z_dim = data, batch_size, z_dim
        self.gp_weight, self.clip = gp_weight, clip
        # Auxiliary terms with a non-zero weight (ganlab.auxiliary); the frozen backbone
        # serves the perceptual term.
        self.aux = {name: w for name, w in (aux or {}).items() if w}
        self.margin, self.backbone = margin, backbone
        self.step = 0  # generator updates done
        self.d_updates = 0

    def noise(self, n: int) -> Tensor:
        return torch.randn(n, self.z_dim, device=self.data.images.device)

    def d_step(self) -> dict[str, Tensor]:
        """D: push real scores up and generated scores down (by the loss's measure)."""
        real = self.data.sample(self.batch_size)  # [B, 1, 28, 28], fresh for every D step
        with torch.no_grad():
            fake = self.G(self.noise(self.batch_size))
        real_features, real_logits = self._scores(real)  # [B, F], [B]
        fake_features, fake_logits = self._scores(fake)
        loss = self.loss.d(real_logits, fake_logits)
        logs = {"D/real": real_logits.mean(), "D/fake": fake_logits.mean()}
        if "contrastive" in self.aux:
            terms = {
                "contrastive": auxiliary.contrastive(real_features, fake_features, self.margin)
            }
            loss = loss + self._add_aux(terms, logs, "aux/total_D")
        if self.loss.estimates_wasserstein:
            logs["wasserstein/estimate"] = real_logits.mean() - fake_logits.mean()
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
        """G: make D score generated images as real (and match features, if asked to)."""
        fake = self.G(self.noise(self.batch_size))
        fake_features, fake_logits = self._scores(fake)
        real = real_logits = None
        if self.loss.g_uses_real or self.aux.keys() & set(auxiliary.G_TERMS):
            real = self.data.sample(self.batch_size)
            with torch.no_grad():  # constants for G: no gradient reaches D through them
                real_features, real_logits = self._scores(real)
        loss = self.loss.g(fake_logits, real_logits)
        logs, terms = {}, {}
        if "feature_matching" in self.aux:
            terms["feature_matching"] = auxiliary.feature_matching(real_features, fake_features)
        if "perceptual" in self.aux:
            with torch.no_grad():
                real_embedding = self.backbone.features(real)
            terms["perceptual"] = auxiliary.perceptual(real_embedding, self.backbone.features(fake))
        if terms:
            loss = loss + self._add_aux(terms, logs, "aux/total_G")
        self.opt_G.zero_grad(set_to_none=True)
        # inputs=: gradients for G only, none for D or the frozen backbone.
        loss.backward(inputs=list(self.G.parameters()))
        self.opt_G.step()
        self.step += 1
        logs["loss/G"] = loss
        return logs

    def _add_aux(self, terms: dict[str, Tensor], logs: dict[str, Tensor], total_tag: str) -> Tensor:
        """Log each term as aux/<name> and their weighted sum as ``total_tag``; return the sum."""
        total = sum(self.aux[name] * term for name, term in terms.items())
        logs.update({f"aux/{name}": term for name, term in terms.items()})
        logs[total_tag] = total
        return total

    def _scores(self, x: Tensor) -> tuple[Tensor | None, Tensor]:
        """D's features (only when an auxiliary term reads them) and raw scores."""
        if not self.aux.keys() & set(auxiliary.D_FEATURE_TERMS):
            return None, self.D(x)
        features = self.D.features(x)
        return features, self.D.head(features).squeeze(1)

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
