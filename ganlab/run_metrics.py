"""A training run's evaluations: periodic, final and of the raw G, to TensorBoard and
results.json, each one call of ``ganlab.metrics.suite`` (the one evaluation home).

TensorBoard ``metrics/*`` is one curve at one sample count, ``metrics.eval_samples``: the
periodic evaluations and the final step (the first images of the final draw).
``metrics_final/*`` and results.json's ``metrics`` hold the final evaluation at
``metrics.n_samples``. Each set has the real-vs-real floor at its own n beside it
(``fid_floor``, ``kid_floor``). A Stacked MNIST run's n counts digits (channels), and both
sets get its mode metrics (``metrics.mode_samples`` images) and their real floor
(``modes_covered_floor``, ``reverse_kl_floor``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from ganlab.metrics.session import EvaluationSession
from ganlab.metrics.suite import GeneratorSpec, Request, evaluate
from ganlab.progress import logging_redirect_tqdm, tqdm  # the bar that suits where it runs
from ganlab.rundir import update_results
from ganlab.signals import StopRequest
from ganlab.tracking import RunLogger
from ganlab.trainer import Trainer

log = logging.getLogger(__name__)

Generate = Callable[..., Tensor]


class StopDuringEvaluation(Exception):
    """A stop signal arrived while an evaluation was drawing samples."""


class RunMetrics:
    """Evaluates the trainer's G with ``session`` and records what it measured."""

    def __init__(
        self,
        session: EvaluationSession,
        trainer: Trainer,
        logger: RunLogger,
        out_dir: Path,
        seed: int,
        eval_samples: int,
        mode_samples: int,
        show_progress: bool = True,
    ):
        self.session, self.trainer, self.logger, self.out_dir = session, trainer, logger, out_dir
        self.seed, self.mode_samples, self.show_progress = seed, mode_samples, show_progress
        self.curve_n = min(eval_samples, session.n)  # the periodic curve's sample count

    def evaluate(
        self, step: int, stop: StopRequest, final: bool = False, generate: Generate | None = None
    ) -> dict[str, float]:
        """Metrics of G at this step (every metric family that applies to this G) to
        TensorBoard and results.json; raises StopDuringEvaluation when a stop signal arrives
        while samples are drawn. ``generate``: G's images (default: the trainer's, the EMA
        generator when there is one)."""
        curve_n, trainer = self.curve_n, self.trainer
        n = self.session.n if final else curve_n
        spec = self.spec(generate or trainer.generate)
        result = evaluate(self.session, spec, self.request((curve_n, n), stop))
        by_n = {size: result.with_floors(size) for size in (curve_n, n)}
        tags = {"metrics": curve_n, **({"metrics_final": n} if final else {})}
        for tag, size in tags.items():
            for key, value in by_n[size].items():
                self.logger.scalar(f"{tag}/{key}", value, step)
        backbone = self.session.backbone_check(trainer.objective.backbone)
        if backbone["metric_backbone_used"]:  # G trained on the network that measures it
            self.logger.scalar("flags/metric_backbone_used", 1.0, step)
            self.logger.writer.add_text("flags", backbone["warning"], step)
        evaluation = {
            **result.provenance[n],
            "curve_samples": curve_n,
            "step": step,
            "generator": trainer.generator_name,
            **backbone,
        }
        update_results(self.out_dir, {"metrics": by_n[n], "evaluation": evaluation})
        return by_n[n]

    def evaluate_raw(self, stop: StopRequest, generate: Generate | None = None) -> None:
        """With an EMA generator, the raw G's metrics too (results.json ``metrics_raw``), so the
        difference the average makes is in plain sight."""
        n = self.session.n
        spec = self.spec(generate or self.trainer.generate_raw)
        metrics = evaluate(self.session, spec, self.request((n,), stop)).metrics[n]
        for key, value in metrics.items():
            self.logger.scalar(f"metrics_raw/{key}", value, self.trainer.step)
        update_results(self.out_dir, {"metrics_raw": metrics})

    def final(self, stop: StopRequest) -> dict[str, float]:
        """The full evaluation of a completed run, of the EMA G and of G when there is an EMA,
        with a bar (on a terminal) counting the images drawn; raises StopDuringEvaluation."""
        trainer, n = self.trainer, self.session.n
        ema = trainer.ema is not None
        log.info("evaluating %s samples%s…", f"{n:,}", " of the EMA G and of G" if ema else "")
        channels = trainer.G.image_channels  # stacked MNIST: n digits, then the mode draw
        drawn = n if channels == 1 else -(-n // channels) + self.mode_samples
        bar = tqdm(
            total=drawn * (2 if ema else 1),
            disable=None if self.show_progress else True,
            desc="evaluating",
            unit="img",
            dynamic_ncols=True,
        )

        def counted(generate: Generate) -> Generate:
            def draw(z: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
                bar.update(len(z))
                return generate(z, *args, **kwargs)

            return draw

        try:
            with logging_redirect_tqdm():
                metrics = self.evaluate(trainer.step, stop, True, counted(trainer.generate))
                if ema:
                    self.evaluate_raw(stop, counted(trainer.generate_raw))
        finally:
            bar.close()
        return metrics

    def spec(self, generate: Generate) -> GeneratorSpec:
        """What the metrics need to know of this run's G, drawing through ``generate``."""
        G = self.trainer.G
        device = self.trainer.data.images.device
        return GeneratorSpec(generate, G.z_dim, device, G.n_classes, G.image_channels)

    def request(self, sizes: tuple[int, ...], stop: StopRequest) -> Request:
        """An evaluation at ``sizes``, stopped (StopDuringEvaluation) once a signal arrives."""

        def check() -> None:
            if stop:
                raise StopDuringEvaluation

        return Request(sizes, self.seed, self.mode_samples, check)
