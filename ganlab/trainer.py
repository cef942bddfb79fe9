"""One G/D pair, its optimizers and its objective: ``d_step`` and ``g_step``.

The trainer only updates networks; the loop that decides when to log, sample and save lives
in ``ganlab.train`` so it reads top to bottom. Steps return device tensors, never floats,
so nothing here waits for the GPU.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganlab import execution
from ganlab.auxiliary import TERMS
from ganlab.checkpoint import rng_state, set_rng_state
from ganlab.data import MNIST
from ganlab.ema import EMA
from ganlab.losses import GANLoss
from ganlab.models.layers import N_CLASSES
from ganlab.packing import pack
from ganlab.penalties import PENALTIES, clip_weights_

log = logging.getLogger(__name__)


@dataclass
class Objective:
    """What D and G minimise: the adversarial loss, its Lipschitz constraint, and the
    auxiliary terms (``ganlab.auxiliary.TERMS``) with a non-zero weight."""

    loss: GANLoss
    penalty: str = "none"  # a key of ganlab.penalties.PENALTIES
    penalty_weight: float = 0.0  # D adds penalty.scale · weight · mean(penalty)
    penalty_every: int = 1  # lazy regularisation: every k-th D step, with weight · k
    clip: float | None = None  # D weights clipped to [-clip, clip] after each D step
    aux: dict[str, float] = field(default_factory=dict)  # term name -> weight
    margin: float = 1.0  # the contrastive term's margin
    backbone: nn.Module | None = None  # frozen network with features(x), for "backbone" terms
    cond: str = "none"  # class conditioning: none, projection or acgan
    cond_weight: float = 1.0  # acgan: weight of the class cross-entropy

    def __post_init__(self) -> None:
        self.aux = {name: w for name, w in self.aux.items() if w}

    def terms(self, network: str) -> list[str]:
        """Active terms of ``network`` ("G" or "D"), in registry order."""
        return [n for n, t in TERMS.items() if n in self.aux and t.network == network]

    @property
    def penalized(self) -> bool:
        """Whether D's objective has a penalty term at all (a penalty and a weight > 0)."""
        return PENALTIES[self.penalty] is not None and self.penalty_weight > 0

    @property
    def reads_d_features(self) -> bool:
        return any(TERMS[name].reads == "D" for name in self.aux)


class Trainer:
    """Updates G and D. One training iteration (``iteration``: n_critic D updates, each on a
    fresh real batch, then one G update and the EMA's) is a function of tensors with static
    shapes and no host sync, so eager and ``torch.compile`` (of its two updates) run the same
    code (``ganlab.execution``); the Python-side counters move in ``iterate``, outside it."""

    def __init__(
        self,
        G: nn.Module,
        D: nn.Module,
        opt_G: torch.optim.Optimizer,
        opt_D: torch.optim.Optimizer,
        data: MNIST,
        objective: Objective,
        batch_size: int,
        z_dim: int,
        ema: EMA | None = None,
        n_critic: int = 1,
    ):
        self.G, self.D, self.opt_G, self.opt_D = G, D, opt_G, opt_D
        self.data, self.objective, self.ema = data, objective, ema
        self.batch_size, self.z_dim, self.n_critic = batch_size, z_dim, n_critic
        # PacGAN: D scores packs of this many samples (its first layer is built for them)
        self.pack = getattr(D, "pack", 1)
        self.step = 0  # generator updates done
        self.d_updates = 0
        # What runs ``iteration``: itself (eager), or its compiled form (ganlab.execution).
        self.run_iteration = self.iteration
        self.execution = {"compile": "off", "amp": "off"}  # what compile() set up

    def compile(self, mode: str, amp: str = "off", backend: str = "inductor") -> str:
        """Run ``iteration`` as ``trainer.compile=mode`` and ``trainer.amp=amp`` ask
        (ganlab.execution); returns the mode in use: "off" (eager) where it falls back,
        with one log line saying why."""
        device = self.data.images.device
        mode, why = execution.resolve_compile(mode, device)
        iteration = execution.with_amp(self.iteration, amp, device)
        blocker = self.compile_blocker() if mode != "off" else None
        if blocker:
            log.info("trainer.compile=%s: running eager, because %s", mode, blocker)
            mode, why = "off", f"trainer.compile={mode} fell back to eager: {blocker}"
        self.execution = {
            "compile": mode,
            "amp": amp,
            **({"backend": backend} if mode != "off" else {}),
            "why": why,
        }
        if mode == "off":
            self.run_iteration = iteration
            return mode
        if mode in execution.CUDA_GRAPH_MODES:
            # Tensors the iteration reads or updates in place across iterations, outside any
            # module: at fixed addresses, CUDA graphs use them where they are instead of
            # copying them into the graph's own memory at every replay (the data set) or
            # refusing to capture (the EMA's update count, mutated in place).
            static = [self.data.images, self.data.labels]
            static += [self.ema._updates] if self.ema is not None else []
            for tensor in static:
                torch._dynamo.mark_static_address(tensor)

        def snapshot() -> tuple[dict[str, Any], dict[str, Any]]:
            return copy.deepcopy(self.state_dict()), rng_state()

        def restore(saved: tuple[dict[str, Any], dict[str, Any]], reason: str) -> None:
            self.load_state_dict(saved[0])
            set_rng_state(saved[1])
            self.execution = {
                "compile": "off",
                "amp": amp,
                "fallback": f"{mode} failed",
                "why": f"trainer.compile={mode} failed: running eager",
                "error": reason[:2000],
            }

        updates = execution.compiled((self.d_update, self.g_update), mode, backend)
        fast = execution.with_amp(
            lambda penalty_due: self.iteration(penalty_due, updates), amp, device
        )
        self.run_iteration = execution.guarded(fast, iteration, mode, snapshot, restore)
        return mode

    def compile_blocker(self) -> str | None:
        """Why this iteration cannot be compiled, or None when it can."""
        obj = self.objective
        if obj.penalized:
            return (
                f"penalty={obj.penalty} needs a double backward through D, which "
                "torch.compile does not support (pytorch/pytorch#91469)"
            )
        return None

    def noise(self, n: int) -> Tensor:
        return torch.randn(n, self.z_dim, device=self.data.images.device)

    # --- one iteration ----------------------------------------------------------------------

    def iterate(self) -> list[dict[str, Tensor]]:
        """One training iteration; returns each update's logs (device tensors)."""
        due = tuple(self.penalty_due(self.d_updates + i) for i in range(self.n_critic))
        logs = self.run_iteration(due)
        self._count(d_updates=self.n_critic, g_updates=1)
        return logs

    def iteration(
        self, penalty_due: tuple[bool, ...], updates: Sequence[Callable[..., Any]] = ()
    ) -> list[dict[str, Tensor]]:
        """n_critic D updates (``penalty_due[i]``: whether D update i adds the penalty),
        then one G update. ``updates``: the two update functions to call, as
        ``trainer.compile`` compiled them (by default ``d_update`` and ``g_update`` eager).
        Python branches only on the config and on these flags, never on a tensor's value."""
        d_update, g_update = updates or (self.d_update, self.g_update)
        logs = [d_update(due) for due in penalty_due]
        logs.append(g_update())
        return logs

    def d_step(self) -> dict[str, Tensor]:
        """One D update outside an iteration (tests, benchmarks), counted."""
        logs = self.d_update(self.penalty_due(self.d_updates))
        self._count(d_updates=1)
        return logs

    def g_step(self) -> dict[str, Tensor]:
        """One G update outside an iteration, counted."""
        logs = self.g_update()
        self._count(g_updates=1)
        return logs

    def _count(self, d_updates: int = 0, g_updates: int = 0) -> None:
        self.d_updates += d_updates
        self.step += g_updates
        if g_updates and self.ema is not None:
            self.ema.mark_stale()

    def penalty_due(self, d_update: int) -> bool:
        """Whether D update number ``d_update`` (0-based) adds the penalty: every
        ``penalty_every``-th one (lazy regularisation), when there is a penalty at all."""
        obj = self.objective
        return obj.penalized and d_update % obj.penalty_every == 0

    def d_update(self, penalty_due: bool) -> dict[str, Tensor]:
        """D: push real scores up and generated scores down (by the loss's measure)."""
        obj = self.objective
        real, y_real = self._real()  # [B, C, 28, 28] (and labels [B]), fresh every D step
        with torch.no_grad():
            fake, y_fake = self._fake()
        real_features, real_logits = self._score(real, y_real)  # [B/m, F] or None, [B/m]
        fake_features, fake_logits = self._score(fake, y_fake)
        loss = obj.loss.d(real_logits, fake_logits)
        logs = {"D/real": real_logits.mean(), "D/fake": fake_logits.mean()}
        if obj.loss.estimates_wasserstein:
            logs["wasserstein/estimate"] = real_logits.mean() - fake_logits.mean()
        extras = (
            self._aux("D", (real, real_features), (fake, fake_features), logs),
            self._acgan([(real_features, y_real)], logs, "cond/acgan_D"),
            self._penalty(real, fake, y_real, y_fake, logs) if penalty_due else None,
        )
        for extra in extras:
            loss = loss if extra is None else loss + extra
        _zero_grad(self.opt_D)
        loss.backward()
        self.opt_D.step()
        if obj.clip is not None:
            clip_weights_(self.D, obj.clip)
        logs["loss/D"] = loss
        return _detached(logs)

    def g_update(self) -> dict[str, Tensor]:
        """G: make D score generated images as real (and match features, if asked to)."""
        obj = self.objective
        fake, y_fake = self._fake()
        fake_features, fake_logits = self._score(fake, y_fake)
        real = real_features = real_logits = None
        if obj.loss.g_uses_real or obj.terms("G"):
            real, y_real = self._real()
            with torch.no_grad():  # constants for G: no gradient reaches D through them
                real_features, real_logits = self._score(real, y_real)
        loss = obj.loss.g(fake_logits, real_logits)
        logs: dict[str, Tensor] = {}
        extras = (
            self._aux("G", (real, real_features), (fake, fake_features), logs),
            self._acgan([(fake_features, y_fake)], logs, "cond/acgan_G"),
        )
        for extra in extras:
            loss = loss if extra is None else loss + extra
        _zero_grad(self.opt_G)
        # inputs=: gradients for G only, none for D or the frozen backbone.
        loss.backward(inputs=list(self.G.parameters()))
        self.opt_G.step()
        if self.ema is not None:
            self.ema.update(self.G)
        logs["loss/G"] = loss
        return _detached(logs)

    # --- the pieces of a step -------------------------------------------------------------

    def _real(self) -> tuple[Tensor, Tensor | None]:
        """A fresh real batch, with its labels when the run is class-conditional."""
        if self.objective.cond == "none":
            return self.data.sample(self.batch_size), None
        return self.data.sample_labeled(self.batch_size)

    def _fake(self) -> tuple[Tensor, Tensor | None]:
        """G(z), and when conditional G(z, y) with y drawn uniformly from the 10 classes."""
        z = self.noise(self.batch_size)
        if self.objective.cond == "none":
            return self.G(z), None
        y = torch.randint(N_CLASSES, (self.batch_size,), device=z.device)
        return self.G(z, y), y

    def _score(self, x: Tensor, y: Tensor | None) -> tuple[Tensor | None, Tensor]:
        """D's features (only when something reads them) and raw scores, one per pack of
        ``self.pack`` samples (x [B, C, 28, 28] goes to D as [B/m, m·C, 28, 28])."""
        x = pack(x, self.pack)
        if self.objective.reads_d_features or self.objective.cond == "acgan":
            return self.D(x, y, return_features=True)
        return None, self.D(x) if y is None else self.D(x, y)

    def _acgan(
        self, pairs: list[tuple[Tensor, Tensor]], logs: dict[str, Tensor], tag: str
    ) -> Tensor | None:
        """AC-GAN (Odena et al. 2017): weight · Σ CE(D's class logits, y) over (features,
        labels) pairs: real images for D, generated ones for G.

        D's class head learns from real images only. With generated images in D's term too
        (the paper's form), G and D agreed on class codes of their own within 1,000 DCGAN
        steps: each grid row one steady shape, not the asked-for digit (label accuracy 0.23).
        """
        if self.objective.cond != "acgan":
            return None
        ce = sum(F.cross_entropy(self.D.classify(features), y) for features, y in pairs)
        logs[tag] = ce
        return self.objective.cond_weight * ce

    def _penalty(
        self, real: Tensor, fake: Tensor, y_real: Tensor | None, y_fake: Tensor | None, logs
    ) -> Tensor | None:
        """scale · weight · mean(penalty), on the D updates ``penalty_due`` picks (every
        ``penalty_every``-th, with weight × penalty_every). The penalty's points are packs, as
        D sees them: one α and one gradient norm per pack (PacGAN)."""
        obj = self.objective
        penalty = PENALTIES[obj.penalty]
        y = y_real if penalty.labels == "real" else y_fake
        D = self.D if y is None else (lambda x: self.D(x, y))
        value = penalty.fn(D, pack(real, self.pack), pack(fake, self.pack)).mean()
        logs[f"penalty/{obj.penalty}"] = value
        return penalty.scale * obj.penalty_weight * obj.penalty_every * value

    def _aux(
        self,
        network: str,
        real: tuple[Tensor, Tensor | None],
        fake: tuple[Tensor, Tensor | None],
        logs: dict[str, Tensor],
    ) -> Tensor | None:
        """The weighted sum of ``network``'s auxiliary terms (None when it has none), each
        logged as aux/<name> and the sum as aux/total_<network>. real/fake: (images, D features)."""
        obj, terms = self.objective, {}
        for name in obj.terms(network):
            if TERMS[name].reads == "D":
                real_features, fake_features = real[1], fake[1]
            else:  # the frozen backbone; real features are constants
                with torch.no_grad():
                    real_features = obj.backbone.features(real[0])
                fake_features = obj.backbone.features(fake[0])
            terms[name] = TERMS[name].fn(real_features, fake_features, obj.margin)
        if not terms:
            return None
        total = sum(obj.aux[name] * term for name, term in terms.items())
        logs.update({f"aux/{name}": term for name, term in terms.items()})
        logs[f"aux/total_{network}"] = total
        return total

    @property
    def n_classes(self) -> int:
        """10 for a class-conditional run, 0 otherwise."""
        return 0 if self.objective.cond == "none" else N_CLASSES

    @property
    def generator_name(self) -> str:
        """Which generator ``generate`` uses: "ema" (when on) or "raw"."""
        return "raw" if self.ema is None else "ema"

    @torch.no_grad()
    def generate(self, z: Tensor, y: Tensor | None = None, raw: bool = False) -> Tensor:
        """Images for z (and labels y, when conditional) from the EMA generator when there is
        one (unless ``raw``), else from G in eval mode (BatchNorm running statistics)."""
        G = self.ema.generator() if self.ema is not None and not raw else self.G
        G.eval()
        try:
            return G(z) if y is None else G(z, y)
        finally:
            if G is self.G:
                self.G.train()

    def generate_raw(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        return self.generate(z, y, raw=True)

    def state_dict(self) -> dict[str, Any]:
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "opt_G": self.opt_G.state_dict(),
            "opt_D": self.opt_D.state_dict(),
            "step": self.step,
            "d_updates": self.d_updates,
            **({"G_ema": self.ema.state_dict()} if self.ema is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        _load_optimizer(self.opt_G, state["opt_G"])
        _load_optimizer(self.opt_D, state["opt_D"])
        self.step, self.d_updates = state["step"], state["d_updates"]
        if self.ema is not None:
            if "G_ema" in state:
                self.ema.load_state_dict(state["G_ema"])
            else:  # a checkpoint of a run without EMA: the average starts from its G
                self.ema.G.load_state_dict(state["G"])


def _detached(logs: dict[str, Tensor]) -> dict[str, Tensor]:
    """Logged values without their graphs (kept, they would hold each step's activations)."""
    return {tag: value.detach() for tag, value in logs.items()}


def _zero_grad(opt: torch.optim.Optimizer) -> None:
    """``opt.zero_grad(set_to_none=True)``, written out: torch.compile does not trace into
    ``Optimizer.zero_grad`` (a graph break), but traces these assignments."""
    for group in opt.param_groups:
        for p in group["params"]:
            p.grad = None


def _load_optimizer(opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load moments and step counts, but keep the hyperparameters (lr, betas, ...) that the
    optimizer was built with: a resumed run follows its config, so it can change the lr."""
    hyper = [{k: v for k, v in group.items() if k != "params"} for group in opt.param_groups]
    opt.load_state_dict(state)
    for group, h in zip(opt.param_groups, hyper, strict=True):
        group.update(h)
