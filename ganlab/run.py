"""One training run around its trainer: folder, logs, grids, evaluations, checkpoints, results.

``ganlab.train.train`` is the loop; each of its sections is one method here, so the loop
reads top to bottom and each piece of bookkeeping (rollback, divergence, interruption,
results) has one small home.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ganlab.build import build_session, build_trainer
from ganlab.checkpoint import CheckpointDir, find_resume, rng_state, set_rng_state
from ganlab.claim import check_identity
from ganlab.cli import record_failure
from ganlab.console import continue_command, results_table
from ganlab.divergence import divergence
from ganlab.errors import GanlabError
from ganlab.hparams import record_run
from ganlab.metrics.suite import GeneratorSpec, Request, evaluate
from ganlab.models.layers import N_CLASSES
from ganlab.rundir import CHECKPOINTS_DIR, SAMPLES_DIR, TB_DIR, read_results, update_results
from ganlab.runtime import resolve_device, seed_everything
from ganlab.sampling import (
    PROGRESS_GIF,
    class_rows,
    save_grid_png,
    write_progress_gif,
)
from ganlab.signals import RunInterrupted
from ganlab.tracking import RunLogger, in_sweep, run_overrides

log = logging.getLogger(__name__)

N_FIXED = 64  # images in each sample grid (8 x 8)
CPU_KEY = "cpu_s"  # a checkpoint's CPU seconds of training so far (trainer.cpu_minutes)
# What a checkpoint carries of the results so far, so that a resume with no step left to train
# (killed during the final evaluation; a finished last.pt into a new folder) still writes
# them: the last logged means and the throughput of the sitting that trained.
FINAL_KEY, THROUGHPUT_KEY = "final_means", "throughput"
GRID_COLUMNS = 8


def fixed_noise(z_dim: int, cond: str, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The grid's noise, from its own generator so grids stay comparable across runs and
    resumes: 64 z (8 x 8), or for a conditional run 10 rows of 8, row k asking for digit k."""
    rng = torch.Generator().manual_seed(seed)
    if cond == "none":
        return torch.randn(N_FIXED, z_dim, generator=rng), None
    z = torch.randn(N_CLASSES * GRID_COLUMNS, z_dim, generator=rng)
    return z, class_rows(N_CLASSES, GRID_COLUMNS)


class StopDuringEvaluation(Exception):
    """A stop signal arrived while an evaluation was drawing samples."""


class TrainingRun:
    """Everything a run holds beside the trainer, and what it does at each loop section."""

    def __init__(self, cfg: DictConfig, out_dir: Path):
        self.cfg, self.out_dir, t = cfg, out_dir, cfg.trainer
        self.device = resolve_device(cfg.device)
        if self.device.type == "cuda":
            log.info("training on %s (%s)", self.device, torch.cuda.get_device_name(self.device))
        elif cfg.device == "auto":
            log.info("CUDA not available: training on CPU")
        seed_everything(cfg.seed)
        self.trainer = build_trainer(cfg, self.device)
        # Fixed noise from its own generator: the grids stay comparable across runs and resumes.
        self.fixed_z, self.fixed_y = fixed_noise(cfg.model.z_dim, cfg.cond.name, cfg.seed)
        self.fixed_z = self.fixed_z.to(self.device)
        self.fixed_y = None if self.fixed_y is None else self.fixed_y.to(self.device)
        self.ckpts = CheckpointDir(out_dir / CHECKPOINTS_DIR, keep=t.keep_checkpoints)
        self.session = build_session(cfg, self.device)
        self.plain_cfg = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
        # CPU seconds of the training loops of earlier sittings (trainer.cpu_minutes counts
        # them all, so an interrupted budgeted run gets only what is left of its budget)
        self.cpu_before = 0.0
        # the last logged means and the throughput of the sitting that trained (FINAL_KEY)
        self.carried: dict[str, dict[str, float]] = {FINAL_KEY: {}, THROUGHPUT_KEY: {}}
        found = find_resume(t.resume, out_dir, self.device)
        if found is not None:
            check_identity(found[1]["config"], self.plain_cfg, found[0])
            self.restore(found[1])
            self.cpu_before = float(found[1].get(CPU_KEY, 0.0))
            self.carried = _carried(found[1])
            log.info("resumed from %s at step %d", found[0], self.trainer.step)
        # A completed run resumed with the same trainer.steps (and trainer.cpu_minutes) has
        # nothing left to do: a sweep run again skips its finished jobs.
        previous = read_results(out_dir) if t.resume == "auto" else {}
        finished = self.trainer.step >= t.steps or self.budget_reached(self.cpu_before)
        self.done = finished and previous.get("status") == "completed"
        self.previous = previous
        self.logger = RunLogger(
            out_dir / TB_DIR, purge_step=self.trainer.step + 1 if found else None
        )
        self.start_step = self.step_log = self.trainer.step
        self.status, self.problem, self.rollbacks = "completed", None, 0
        self.budget_spent = False  # trainer.cpu_minutes used up: the loop's last step
        self.means: dict[str, float] = {}  # the current interval's, read by check()
        self.final: dict[str, float] = dict(self.carried[FINAL_KEY])  # the last means written
        self.metrics: dict[str, float] = {}  # of the final evaluation
        self.elapsed = self.cpu_s = float("nan")

    def restore(self, state: dict[str, Any]) -> None:
        try:
            self.trainer.load_state_dict(state)
            set_rng_state(state["rng"])
        except (RuntimeError, KeyError, TypeError, ValueError) as e:
            first = " ".join(str(e).split())[:200]
            raise GanlabError(f"cannot restore the checkpoint's state ({first})") from None

    def skip(self) -> float:
        """A completed run asked to resume with no steps left: say so, change nothing."""
        log.info(
            "%s already completed %d steps (trainer.steps=%d): nothing to do; raise "
            "trainer.steps to continue it",
            *(self.out_dir, self.trainer.step, self.cfg.trainer.steps),
        )
        self.logger.close()
        objective = _lookup(self.previous, "metrics.fid", _lookup(self.previous, "final.loss_g"))
        return float("nan") if objective is None else float(objective)

    @contextmanager
    def failures_recorded(self) -> Iterator[None]:
        """A GanlabError mid-run (a full disk, say) marks results.json failed, then goes on up."""
        try:
            yield
        except GanlabError as e:
            record_failure(self.out_dir, e)
            with suppress(Exception):
                self.logger.close()
            raise

    @contextmanager
    def progress(self) -> Iterator[None]:
        """The progress bar (on a terminal) and the loop's wall-clock time."""
        self.bar = tqdm(
            total=self.cfg.trainer.steps,
            initial=self.start_step,
            disable=None if self.cfg.trainer.progress else True,
            desc=f"{self.cfg.loss.name}/{self.cfg.model.name}",
            dynamic_ncols=True,
        )
        self.t0 = self.t_log = time.perf_counter()
        cpu0 = self.cpu0 = time.process_time()  # CPU seconds of this process (all threads)
        try:
            with logging_redirect_tqdm():
                yield
        finally:
            self.bar.close()
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.elapsed = time.perf_counter() - self.t0
            self.cpu_s = time.process_time() - cpu0

    # --- the loop's sections --------------------------------------------------------------

    def iterate(self) -> None:
        """n_critic D updates, each on a fresh real batch, then one G update."""
        for logs in self.trainer.iterate():
            self.logger.accumulate(logs)
        self.bar.update(1)

    def out_of_budget(self) -> bool:
        """True once the loop has used ``trainer.cpu_minutes`` of CPU time (when set): the
        budget counts the training loop's CPU time (all threads, periodic evaluations
        included) over every sitting of the run, carried by its checkpoints."""
        if self.budget_reached(self.cpu_spent()):
            if not self.budget_spent:
                budget = self.cfg.trainer.cpu_minutes
                log.info("trainer.cpu_minutes=%g spent at step %d", budget, self.trainer.step)
            self.budget_spent = True
        return self.budget_spent

    def budget_reached(self, cpu_s: float) -> bool:
        """Whether ``cpu_s`` CPU seconds use up ``trainer.cpu_minutes`` (never when it is 0)."""
        budget = self.cfg.trainer.cpu_minutes
        return budget > 0 and cpu_s >= 60 * budget

    def cpu_spent(self) -> float:
        """CPU seconds of the training loop so far, earlier sittings included."""
        return self.cpu_before + time.process_time() - self.cpu0

    def check(self) -> str | None:
        """Why the interval's means show divergence, or None; reads them back (one sync)."""
        self.means = self.logger.means()
        self.problem = divergence(self.means, self.cfg.trainer.max_abs_score)
        return self.problem

    def rollback(self) -> bool:
        """With ``on_divergence=rollback``: reload the last good checkpoint, draw other noise."""
        t = self.cfg.trainer
        if t.on_divergence.name != "rollback" or self.rollbacks >= t.max_rollbacks:
            return False
        good = self.ckpts.load_newest_valid(self.device)
        if good is None:
            return False
        step, problem = self.trainer.step, self.problem
        self.rollbacks += 1
        self.restore(good[1])
        torch.manual_seed(self.cfg.seed + 1_000_003 * self.rollbacks)  # other noise
        self.logger.restart(purge_step=self.trainer.step + 1)
        self.bar.n = self.step_log = self.trainer.step
        log.warning(
            "diverged at step %d (%s); rolled back to step %d (%d/%d)",
            *(step, problem, self.trainer.step, self.rollbacks, t.max_rollbacks),
        )
        self.problem = None
        return True

    def diverge(self) -> None:
        """Stop: log the bad interval, keep the last good checkpoint, mark the run."""
        self.final, self.status = self.logger.write(self.trainer.step, self.means), "diverged"
        kept = (
            f"the last good checkpoint is kept in {self.ckpts.last}"
            if self.ckpts.last.is_file()
            else "no checkpoint had been written yet"
        )
        log.error("diverged at step %d: %s; %s", self.trainer.step, self.problem, kept)

    def log(self, step: int) -> None:
        """The interval's means (read by check) and the throughput, to TensorBoard and the bar."""
        self.final = self.logger.write(step, self.means)
        now = time.perf_counter()
        self.logger.scalar("perf/it_per_s", (step - self.step_log) / (now - self.t_log), step)
        self.t_log, self.step_log = now, step
        loss_d, loss_g = self.final["loss/D"], self.final["loss/G"]
        self.bar.set_postfix(D=f"{loss_d:.3f}", G=f"{loss_g:.3f}", refresh=False)

    def save_grid(self, step: int) -> None:
        png = self.out_dir / SAMPLES_DIR / f"step_{step:06d}.png"
        with _writing(png):  # TensorBoard gets the grid as is; the PNG is enlarged 3x
            images = self.trainer.generate(self.fixed_z, self.fixed_y)
            # stacked MNIST in colour, a digit per channel, as the papers show it
            save_grid_png(self.logger.images(images, step), png, rgb=images.shape[1] != 1)

    def evaluate(
        self,
        step: int,
        stop: list[int],
        final: bool = False,
        generate: Callable[..., Tensor] | None = None,
    ) -> dict[str, float]:
        """Metrics of G at this step to TensorBoard and results.json (``ganlab.metrics.suite``:
        every metric family that applies to this G); raises StopDuringEvaluation when a stop
        signal arrives while samples are drawn. ``generate``: G's images (default: the
        trainer's, the EMA generator when there is one).

        TensorBoard ``metrics/*`` is one curve at one sample count, ``metrics.eval_samples``:
        the periodic evaluations and the final step (the first images of the final draw).
        ``metrics_final/*`` and results.json's ``metrics`` hold the final evaluation at
        ``metrics.n_samples``. Each set has the real-vs-real floor at its own n beside it
        (``fid_floor``, ``kid_floor``). A Stacked MNIST run's n counts digits (channels),
        and both sets get its mode metrics (``metrics.mode_samples`` images) and their real
        floor (``modes_covered_floor``, ``reverse_kl_floor``).
        """
        curve_n = min(self.cfg.metrics.eval_samples, self.session.n)
        n = self.session.n if final else curve_n
        spec = self.generator_spec(generate or self.trainer.generate)
        result = evaluate(self.session, spec, self.request((curve_n, n), stop))
        by_n = {size: result.with_floors(size) for size in (curve_n, n)}
        tags = {"metrics": curve_n, **({"metrics_final": n} if final else {})}
        for tag, size in tags.items():
            for key, value in by_n[size].items():
                self.logger.scalar(f"{tag}/{key}", value, step)
        backbone = self.session.backbone_check(self.trainer.objective.backbone)
        if backbone["metric_backbone_used"]:  # G trained on the network that measures it
            self.logger.scalar("flags/metric_backbone_used", 1.0, step)
            self.logger.writer.add_text("flags", backbone["warning"], step)
        evaluation = {
            **result.provenance[n],
            "curve_samples": curve_n,
            "step": step,
            "generator": self.trainer.generator_name,
            **backbone,
        }
        update_results(self.out_dir, {"metrics": by_n[n], "evaluation": evaluation})
        return by_n[n]

    def evaluate_raw(self, stop: list[int], generate: Callable[..., Tensor] | None = None) -> None:
        """With an EMA generator, the raw G's metrics too (results.json ``metrics_raw``), so the
        difference the average makes is in plain sight."""
        n = self.session.n
        spec = self.generator_spec(generate or self.trainer.generate_raw)
        metrics = evaluate(self.session, spec, self.request((n,), stop)).metrics[n]
        for key, value in metrics.items():
            self.logger.scalar(f"metrics_raw/{key}", value, self.trainer.step)
        update_results(self.out_dir, {"metrics_raw": metrics})

    def generator_spec(self, generate: Callable[..., Tensor]) -> GeneratorSpec:
        """What the metrics need to know of this run's G, drawing through ``generate``."""
        trainer, z_dim = self.trainer, self.cfg.model.z_dim
        return GeneratorSpec(generate, z_dim, self.device, trainer.n_classes, trainer.data.channels)

    def request(self, sizes: tuple[int, ...], stop: list[int]) -> Request:
        """An evaluation at ``sizes``, stopped (StopDuringEvaluation) once a signal arrives."""

        def check() -> None:
            if stop:
                raise StopDuringEvaluation

        return Request(sizes, self.cfg.seed, self.cfg.metrics.mode_samples, check)

    def checkpoint(self) -> None:
        with _writing(self.out_dir / TB_DIR):
            self.logger.flush()  # events up to this step reach the disk before the state
        state = {
            **self.trainer.state_dict(),
            "rng": rng_state(),
            "config": self.plain_cfg,
            CPU_KEY: self.cpu_spent(),
            FINAL_KEY: self.final,
            THROUGHPUT_KEY: self.throughput(
                time.perf_counter() - self.t0, self.cpu_spent() - self.cpu_before
            ),
        }
        self.ckpts.save(self.trainer.step, state)

    def interrupt(self) -> None:
        self.final = self.final or self.logger.write(self.trainer.step, self.means)
        self.status = "interrupted"

    def final_evaluation(self, stop: list[int]) -> None:
        """The full evaluation of a completed run (a stop signal during it interrupts it)."""
        if self.session is None or self.status != "completed":
            return
        n, ema = self.session.n, self.trainer.ema is not None
        log.info("evaluating %s samples%s…", f"{n:,}", " of the EMA G and of G" if ema else "")
        channels = self.trainer.data.channels  # stacked MNIST: n digits, then the mode draw
        drawn = n if channels == 1 else -(-n // channels) + self.cfg.metrics.mode_samples
        bar = tqdm(
            total=drawn * (2 if ema else 1),
            disable=None if self.cfg.trainer.progress else True,
            desc="evaluating",
            unit="img",
            dynamic_ncols=True,
        )

        def counted(method: Any) -> Any:  # the bar (on a terminal) counts the images drawn
            def draw(z: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
                bar.update(len(z))
                return method(z, *args, **kwargs)

            return draw

        try:
            with logging_redirect_tqdm():
                generate = counted(self.trainer.generate)
                self.metrics = self.evaluate(self.trainer.step, stop, True, generate)
                if self.trainer.ema is not None:
                    self.evaluate_raw(stop, counted(self.trainer.generate_raw))
        except StopDuringEvaluation:
            self.status = "interrupted"
        finally:
            bar.close()

    # --- the end ----------------------------------------------------------------------------

    def finish(self, stop: list[int]) -> float:
        """results.json, HParams, progress.gif, the summary line and (for a run alone) the
        results table; the sweep objective (lower is better)."""
        results = self.write_results()
        self.logger.close()
        overrides, tags = run_overrides(), self.logger.tags
        with _writing(self.out_dir / TB_DIR):  # after the run's own events: the newest file
            record_run(self.out_dir, self.cfg, overrides, results, self.trainer.step, tags)
        pngs = sorted((self.out_dir / SAMPLES_DIR).glob("step_*.png"))
        gif = self.out_dir / PROGRESS_GIF
        try:
            if pngs:
                write_progress_gif(pngs, gif)
        except (OSError, ValueError) as e:  # a picture: say so, the run is still done
            log.warning("could not write %s: %s", gif, e)
        if stop and self.status == "interrupted":
            raise RunInterrupted(
                stop[0],
                f"{signal.Signals(stop[0]).name} at step {self.trainer.step}: checkpoint saved in "
                f"{self.ckpts.path}; continue with: {continue_command(overrides, self.out_dir)}",
            )
        log.info("%s", self.summary())
        if self.metrics and not in_sweep():
            log.info("%s", results_table(self.metrics, results.get("evaluation")))
        if self.status != "completed":
            return float("nan")
        objective = self.metrics.get("fid", (results.get("final") or {}).get("loss_g"))
        return float("nan") if objective is None else float(objective)

    def throughput(self, elapsed: float, cpu_s: float) -> dict[str, float]:
        """G steps per second, images per second and CPU seconds per step of this sitting;
        those of the sitting that trained when this one trained no step (a resume that only
        finishes the evaluation), so a resume never records 0 it/s."""
        steps = self.trainer.step - self.start_step
        if steps == 0 and self.carried[THROUGHPUT_KEY]:
            return dict(self.carried[THROUGHPUT_KEY])
        it_per_s = steps / elapsed if elapsed > 0 else float("nan")
        batch = self.cfg.trainer.batch_size
        # the loop's CPU seconds per G step (periodic evaluations included)
        return {
            "it_per_s": it_per_s,
            "images_per_s": it_per_s * batch,
            "cpu_s_per_it": cpu_s / max(1, steps),
        }

    @property
    def it_per_s(self) -> float:
        return self.throughput(self.elapsed, self.cpu_s)["it_per_s"]

    def write_results(self) -> dict[str, Any]:
        cfg, t = self.cfg, self.cfg.trainer
        return update_results(
            self.out_dir,
            {
                "status": self.status,
                "loss": cfg.loss.name,
                "model": cfg.model.name,
                "seed": cfg.seed,
                "steps": self.trainer.step,
                "d_updates": self.trainer.d_updates,
                "n_critic": t.n_critic,
                "batch_size": t.batch_size,
                "device": str(self.device),
                "execution": self.trainer.execution,  # trainer.compile / amp as they ran
                "data": {"source": self.trainer.data.source, "num_images": len(self.trainer.data)},
                "throughput": self.throughput(self.elapsed, self.cpu_s),
                # Nothing logged (e.g. resumed at the last step): keep what results.json says.
                **(
                    {"final": {"loss_d": self.final["loss/D"], "loss_g": self.final["loss/G"]}}
                    if self.final
                    else {}
                ),
                **({"rollbacks": self.rollbacks} if self.rollbacks else {}),
                **(
                    {"budget": {"cpu_minutes": t.cpu_minutes, "spent_at_step": self.trainer.step}}
                    if self.budget_spent
                    else {}
                ),
                **(
                    {"divergence": {"step": self.trainer.step, "reason": self.problem}}
                    if self.problem
                    else {}
                ),
            },
        )

    def summary(self) -> str:
        """``completed: 3000 steps at 234.7 it/s; final loss D 0.37, G 3.09, fid 1295, ...``"""
        nan = float("nan")
        shown = "".join(
            f", {k} {self.metrics[k]:.4g}" for k in ("fid", "mnist_score") if k in self.metrics
        )
        return (
            f"{self.status}: {self.trainer.step} steps at {self.it_per_s:.1f} it/s; final loss "
            f"D {self.final.get('loss/D', nan):.4f}, G {self.final.get('loss/G', nan):.4f}"
            f"{shown}; run dir {self.out_dir}"
        )


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """A failed write (a full disk, an unwritable folder) as one line naming the file."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        reason = getattr(e, "strerror", None) or " ".join(str(e).split())[:200]
        raise GanlabError(f"cannot write {path}: {reason}") from None


def _lookup(tree: Any, dotted: str, default: Any = None) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return default
        tree = tree[part]
    return tree


def _carried(state: dict[str, Any]) -> dict[str, dict[str, float]]:
    """A checkpoint's FINAL_KEY and THROUGHPUT_KEY, kept only as names of plain numbers (an
    older checkpoint has neither: then nothing is carried)."""
    carried: dict[str, dict[str, float]] = {}
    for key in (FINAL_KEY, THROUGHPUT_KEY):
        value = state.get(key)
        ok = isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
            for k, v in value.items()
        )
        carried[key] = {k: float(v) for k, v in value.items()} if ok else {}
    return carried
