"""One G/D pair, its optimizers and its objective: ``d_step`` and ``g_step``.

The trainer only updates networks; the loop that decides when to log, sample and save lives
in ``ganlab.train`` so it reads top to bottom. Steps return device tensors, never floats,
so nothing here waits for the GPU.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ganlab import execution
from ganlab.checkpoint import rng_state, set_rng_state
from ganlab.data import MNIST
from ganlab.ema import EMA
from ganlab.models import Critic, GeneratorBase
from ganlab.objective import Objective
from ganlab.packing import pack
from ganlab.penalties import clip_weights_
from ganlab.schedules import ScheduledLr

log = logging.getLogger(__name__)


class Trainer:
    """Updates G and D. One training iteration (``iteration``: n_critic D updates, each on a
    fresh real batch, then one G update and the EMA's) is a function of tensors with static
    shapes and no host sync, so eager and ``torch.compile`` (of its two updates) run the same
    code (``ganlab.execution``); the Python-side counters move in ``iterate``, outside it."""

    def __init__(
        self,
        G: GeneratorBase,
        D: Critic,
        opt_G: torch.optim.Optimizer,
        opt_D: torch.optim.Optimizer,
        data: MNIST,
        objective: Objective,
        batch_size: int,
        z_dim: int,
        ema: EMA | None = None,
        n_critic: int = 1,
        lr: ScheduledLr | None = None,
    ):
        self.G, self.D, self.opt_G, self.opt_D = G, D, opt_G, opt_D
        self.lr = lr  # the optimizers' lr schedule, which the run follows (None: constant)
        self.data, self.objective, self.ema = data, objective, ema
        self.batch_size, self.z_dim, self.n_critic = batch_size, z_dim, n_critic
        self.step = 0  # generator updates done
        self.d_updates = 0
        # What runs ``iteration``: itself (eager), or its compiled form (ganlab.execution).
        self.run_iteration = self.iteration
        self.execution = {"compile": "off", "amp": "off"}  # what compile() set up

    def compile(self, mode: str, amp: str = "off", backend: str = "inductor") -> str:
        """Run ``iteration`` as ``trainer.compile=mode`` and ``trainer.amp=amp`` ask (either
        may be "auto": ganlab.execution); returns the mode in use, "off" (eager) on fallback."""
        device = self.data.images.device
        mode, why = execution.resolve_compile(mode, device)
        amp, amp_why = execution.resolve_amp(amp, device)
        iteration = execution.with_amp(self.iteration, amp, device)
        blockers = (self.objective.compile_blocker, self.lr and self.lr.compile_blocker)
        blocker = next(filter(None, blockers), None) if mode != "off" else None
        if blocker:
            log.info("trainer.compile=%s: running eager, because %s", mode, blocker)
            mode, why = "off", f"trainer.compile={mode} fell back to eager: {blocker}"
        kept = {k: v for k, v in self.execution.items() if k.startswith("memory_format")}
        self.execution = {  # the layout (set by build_trainer) stays as it is
            "compile": mode,
            "amp": amp,
            **({"backend": backend} if mode != "off" else {}),
            "why": why,
            **({"amp_why": amp_why} if amp_why else {}),
            **kept,
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
            self.execution |= {
                "compile": "off",
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
        seen = obj.seen(real), obj.seen(fake)  # what D (and the penalty) sees: T(x) or x
        real_features, real_logits = self._score(seen[0], y_real)  # [B/m, F] or None, [B/m]
        fake_features, fake_logits = self._score(seen[1], y_fake)
        loss = obj.loss.d(real_logits, fake_logits)
        logs = {"D/real": real_logits.mean(), "D/fake": fake_logits.mean()}
        if obj.loss.estimates_wasserstein:
            logs["wasserstein/estimate"] = real_logits.mean() - fake_logits.mean()
        extras = (
            obj.aux_terms("D", (real, real_features), (fake, fake_features), logs),
            obj.classes(self.D, [(real_features, y_real)], logs, "cond/acgan_D"),
            obj.penalty_term(self.D, *seen, (y_real, y_fake), logs) if penalty_due else None,
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
        fake_features, fake_logits = self._score(obj.seen(fake), y_fake)  # G learns through T
        real = real_features = real_logits = None
        if obj.loss.g_uses_real or obj.terms("G"):
            real, y_real = self._real()
            with torch.no_grad():  # constants for G: no gradient reaches D through them
                real_features, real_logits = self._score(obj.seen(real), y_real)
        loss = obj.loss.g(fake_logits, real_logits)
        logs: dict[str, Tensor] = {}
        extras = (
            obj.aux_terms("G", (real, real_features), (fake, fake_features), logs),
            obj.classes(self.D, [(fake_features, y_fake)], logs, "cond/acgan_G"),
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
        if not self.G.conditional:
            return self.data.sample(self.batch_size), None
        return self.data.sample_labeled(self.batch_size)

    def _fake(self) -> tuple[Tensor, Tensor | None]:
        """G(z), and when conditional G(z, y) with y drawn uniformly from G's classes."""
        z = torch.randn(self.batch_size, self.z_dim, device=self.data.images.device)
        if not self.G.conditional:
            return self.G(z), None
        y = torch.randint(self.G.n_classes, (self.batch_size,), device=z.device)
        return self.G(z, y), y

    def _score(self, x: Tensor, y: Tensor | None) -> tuple[Tensor | None, Tensor]:
        """D's features (only when something reads them) and raw scores, one per pack of
        ``D.pack`` samples (x [B, C, 28, 28] goes to D as [B/m, m·C, 28, 28])."""
        x = pack(x, self.D.pack)
        if self.objective.reads_d_features:
            return self.D(x, y, return_features=True)
        return None, self.D(x) if y is None else self.D(x, y)

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
