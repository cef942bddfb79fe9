"""One training run around its trainer: folder, logs, grids, checkpoints, and the parts
that keep its progress (``ganlab.progress``), evaluations (``ganlab.run_metrics``) and
results (``ganlab.run_record``).

``ganlab.train.train`` is the loop; each of its sections is one method here, so the loop
reads top to bottom and each piece of bookkeeping (rollback, divergence, interruption,
results) has one small home.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ganlab.build import build_session, build_trainer
from ganlab.checkpoint import CheckpointDir, find_resume, rng_state, set_rng_state
from ganlab.claim import check_identity
from ganlab.cli import record_failure
from ganlab.console import continue_command, results_table
from ganlab.divergence import divergence
from ganlab.errors import GanlabError
from ganlab.hparams import record_run
from ganlab.models.layers import CONDITIONINGS
from ganlab.plugins import check_recorded, used_by
from ganlab.progress import Progress, budget_reached
from ganlab.run_metrics import RunMetrics, StopDuringEvaluation
from ganlab.run_record import RunRecord, carried
from ganlab.rundir import CHECKPOINTS_DIR, SAMPLES_DIR, TB_DIR, lookup, read_results
from ganlab.runtime import resolve_device, seed_everything
from ganlab.sampling import PROGRESS_GIF, class_rows, save_grid_png, write_progress_gif
from ganlab.schedules import run_progress
from ganlab.signals import RunInterrupted, StopRequest
from ganlab.tracking import RunLogger, in_sweep, run_overrides

log = logging.getLogger(__name__)

N_FIXED = 64  # images in each sample grid (8 x 8)
CPU_KEY = "cpu_s"  # a checkpoint's CPU seconds of training so far (trainer.cpu_minutes)
GRID_COLUMNS = 8


def fixed_noise(z_dim: int, cond: str, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The grid's noise, from its own generator so grids stay comparable across runs and
    resumes: 64 z (8 x 8), or for a conditional run a row of 8 per class, row k asking for
    digit k."""
    rng = torch.Generator().manual_seed(seed)
    n_classes = CONDITIONINGS[cond].n_classes
    if not n_classes:
        return torch.randn(N_FIXED, z_dim, generator=rng), None
    z = torch.randn(n_classes * GRID_COLUMNS, z_dim, generator=rng)
    return z, class_rows(n_classes, GRID_COLUMNS)


@dataclass(frozen=True)
class Start:
    """Where a run starts (``starting_point``): its device, its config as plain data, the
    checkpoint it continues (identity checked) and what that checkpoint says of it."""

    device: torch.device
    plain_cfg: dict[str, Any]
    found: tuple[Path, dict[str, Any]] | None  # (checkpoint file, its state)
    step: int = 0  # G steps done
    cpu_before: float = 0.0  # CPU seconds of the loops of earlier sittings
    previous: dict[str, Any] = field(default_factory=dict)  # results.json, when resuming

    def finished(self, cfg: DictConfig) -> bool:
        """A completed run resumed with the same trainer.steps (and trainer.cpu_minutes) has
        nothing left to do: a sweep run again skips its finished jobs."""
        t = cfg.trainer
        done = self.step >= t.steps or budget_reached(self.cpu_before, t.cpu_minutes)
        return done and self.previous.get("status") == "completed"


def starting_point(cfg: DictConfig, out_dir: Path) -> Start:
    """The checkpoint ``trainer.resume`` names (refused when it was made by another kind of
    run or needs a plugin that is not loaded), read before anything is built or logged, so
    that a run with nothing left to do changes nothing: not even its log or event files."""
    t = cfg.trainer
    device = resolve_device(cfg.device)
    plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    found = find_resume(t.resume, out_dir, device)
    if found is None:
        return Start(device, plain, None)
    check_recorded(found[1].get("plugins"), f"the checkpoint {found[0]}")
    check_identity(found[1]["config"], plain, found[0])
    previous = read_results(out_dir) if t.resume == "auto" else {}
    cpu_before = float(found[1].get(CPU_KEY, 0.0))
    return Start(device, plain, found, int(found[1]["step"]), cpu_before, previous)


def skip(cfg: DictConfig, out_dir: Path, start: Start) -> float:
    """A completed run asked to resume with nothing left: say so on the console only (its
    train.log is its record), change nothing; return its recorded objective."""
    t = cfg.trainer
    more = (
        f"raise trainer.cpu_minutes={t.cpu_minutes:g}"
        if start.step < t.steps
        else f"raise trainer.steps={t.steps}"
    )
    print(
        f"{out_dir} already completed {start.step} steps: nothing to do ({more} to continue it)",
        file=sys.stderr,
    )
    previous = start.previous
    objective = lookup(previous, "metrics.fid", lookup(previous, "final.loss_g"))
    return float("nan") if objective is None else float(objective)


class TrainingRun:
    """A run's trainer and the parts that keep its records: the checkpoints, the progress
    and CPU budget (``ganlab.progress``), the evaluations (``ganlab.run_metrics``), the
    results (``ganlab.run_record``); and what the loop does at each of its sections."""

    def __init__(self, cfg: DictConfig, out_dir: Path, start: Start):
        self.cfg, self.out_dir, t = cfg, out_dir, cfg.trainer
        self.device, self.plain_cfg = start.device, start.plain_cfg
        if self.device.type == "cuda":
            log.info("training on %s (%s)", self.device, torch.cuda.get_device_name(self.device))
        elif cfg.device == "auto":
            log.info("CUDA not available: training on CPU")
        seed_everything(cfg.seed)
        self.trainer = build_trainer(cfg, self.device)
        # Fixed noise from its own generator: the grids stay comparable across runs and resumes.
        fixed_z, fixed_y = fixed_noise(cfg.model.z_dim, cfg.cond.name, cfg.seed)
        self.fixed_z = fixed_z.to(self.device)
        self.fixed_y = None if fixed_y is None else fixed_y.to(self.device)
        self.ckpts = CheckpointDir(out_dir / CHECKPOINTS_DIR, keep=t.keep_checkpoints)
        self.plugins = used_by(self.plain_cfg)  # which plugin gave each name this run uses
        found, kept = start.found, carried(start.found[1] if start.found else {})
        if found is not None:
            self.restore(found[1])
            log.info("resumed from %s at step %d", found[0], self.trainer.step)
        self.progress = Progress(
            t.steps,
            self.trainer.step,
            t.cpu_minutes,
            start.cpu_before,
            show=t.progress,
            desc=f"{cfg.loss.name}/{cfg.model.name}",
        )
        self.logger = RunLogger(
            out_dir / TB_DIR, purge_step=self.trainer.step + 1 if found else None
        )
        self.record = RunRecord(out_dir, self.trainer.step, kept)
        session = build_session(cfg, self.device)
        self.metrics = (
            None
            if session is None
            else RunMetrics(
                session,
                self.trainer,
                self.logger,
                out_dir,
                cfg.seed,
                cfg.metrics.eval_samples,
                cfg.metrics.mode_samples,
                show_progress=t.progress,
            )
        )
        self.means: dict[str, float] = {}  # the current interval's, read by check()

    def restore(self, state: dict[str, Any]) -> None:
        try:
            self.trainer.load_state_dict(state)
            set_rng_state(state["rng"])
        except (RuntimeError, KeyError, TypeError, ValueError) as e:
            first = " ".join(str(e).split())[:200]
            raise GanlabError(f"cannot restore the checkpoint's state ({first})") from None

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

    # --- the loop's sections --------------------------------------------------------------

    def iterate(self) -> None:
        """n_critic D updates, each on a fresh real batch, then one G update, at the lr the
        schedule gives for the run's progress (ganlab.schedules)."""
        if self.trainer.lr is not None:
            t = self.cfg.trainer
            cpu_s = self.progress.cpu_spent()
            self.trainer.lr.follow(
                run_progress(self.trainer.step + 1, t.steps, cpu_s, t.cpu_minutes)
            )
        for logs in self.trainer.iterate():
            self.logger.accumulate(logs)
        self.progress.advance()

    def out_of_budget(self) -> bool:
        """True once ``trainer.cpu_minutes`` of CPU time are spent (ganlab.progress)."""
        return self.progress.out_of_budget(self.trainer.step)

    def check(self) -> str | None:
        """Why the interval's means show divergence, or None; reads them back (one sync)."""
        self.means = self.logger.means()
        self.record.problem = divergence(self.means, self.cfg.trainer.max_abs_score)
        return self.record.problem

    def rollback(self) -> bool:
        """With ``on_divergence=rollback``: reload the last good checkpoint, draw other noise."""
        t, record = self.cfg.trainer, self.record
        if t.on_divergence.name != "rollback" or record.rollbacks >= t.max_rollbacks:
            return False
        good = self.ckpts.load_newest_valid(self.device)
        if good is None:
            return False
        step, problem = self.trainer.step, record.problem
        record.rollbacks += 1
        self.restore(good[1])
        torch.manual_seed(self.cfg.seed + 1_000_003 * record.rollbacks)  # other noise
        self.logger.restart(purge_step=self.trainer.step + 1)
        self.progress.rewind(self.trainer.step)
        log.warning(
            "diverged at step %d (%s); rolled back to step %d (%d/%d)",
            *(step, problem, self.trainer.step, record.rollbacks, t.max_rollbacks),
        )
        record.problem = None
        return True

    def diverge(self) -> None:
        """Stop: log the bad interval, keep the last good checkpoint, mark the run."""
        record = self.record
        record.final, record.status = self.logger.write(self.trainer.step, self.means), "diverged"
        kept = (
            f"the last good checkpoint is kept in {self.ckpts.last}"
            if self.ckpts.last.is_file()
            else "no checkpoint had been written yet"
        )
        log.error("diverged at step %d: %s; %s", self.trainer.step, record.problem, kept)

    def log(self, step: int) -> None:
        """The interval's means (read by check) and the throughput, to TensorBoard and the bar."""
        self.record.final = final = self.logger.write(step, self.means)
        self.logger.scalar("perf/it_per_s", self.progress.interval(step), step)
        if self.trainer.lr is not None:  # the schedule's lr, G's (D's follows the same factor)
            self.logger.scalar("perf/lr_G", self.trainer.opt_G.param_groups[0]["lr"], step)
        self.progress.show_losses(final["loss/D"], final["loss/G"])

    def save_grid(self, step: int) -> None:
        png = self.out_dir / SAMPLES_DIR / f"step_{step:06d}.png"
        with _writing(png):  # TensorBoard gets the grid as is; the PNG is enlarged 3x
            images = self.trainer.generate(self.fixed_z, self.fixed_y)
            # stacked MNIST in colour, a digit per channel, as the papers show it
            save_grid_png(self.logger.images(images, step), png, rgb=images.shape[1] != 1)

    def evaluate(self, step: int, stop: StopRequest) -> None:
        """A periodic evaluation (``trainer.eval_every``; ganlab.run_metrics)."""
        if self.metrics is not None:
            self.metrics.evaluate(step, stop)

    def checkpoint(self) -> None:
        with _writing(self.out_dir / TB_DIR):
            self.logger.flush()  # events up to this step reach the disk before the state
        elapsed, cpu_s = self.progress.sitting()
        batch = self.cfg.trainer.batch_size
        state = {
            **self.trainer.state_dict(),
            "rng": rng_state(),
            "config": self.plain_cfg,
            **({"plugins": self.plugins} if self.plugins else {}),
            CPU_KEY: self.progress.cpu_spent(),
            **self.record.checkpointed(self.trainer.step, elapsed, cpu_s, batch),
        }
        self.ckpts.save(self.trainer.step, state)

    def interrupt(self) -> None:
        record = self.record
        record.final = record.final or self.logger.write(self.trainer.step, self.means)
        record.status = "interrupted"

    def final_evaluation(self, stop: StopRequest) -> None:
        """The full evaluation of a completed run (a stop signal during it interrupts it)."""
        if self.metrics is None or self.record.status != "completed":
            return
        try:
            self.record.metrics = self.metrics.final(stop)
        except StopDuringEvaluation:
            self.record.status = "interrupted"

    # --- the end ----------------------------------------------------------------------------

    def finish(self, stop: StopRequest) -> float:
        """results.json, HParams, progress.gif, the summary line and (for a run alone) the
        results table; the sweep objective (lower is better)."""
        results = self.write_results()
        self.logger.close()
        overrides, tags, record = run_overrides(), self.logger.tags, self.record
        with _writing(self.out_dir / TB_DIR):  # after the run's own events: the newest file
            record_run(self.out_dir, self.cfg, overrides, results, self.trainer.step, tags)
        pngs = sorted((self.out_dir / SAMPLES_DIR).glob("step_*.png"))
        gif = self.out_dir / PROGRESS_GIF
        try:
            if pngs:
                write_progress_gif(pngs, gif)
        except (OSError, ValueError) as e:  # a picture: say so, the run is still done
            log.warning("could not write %s: %s", gif, e)
        if stop and record.status == "interrupted":
            raise RunInterrupted(
                stop.signum,
                f"{stop.name} at step {self.trainer.step}: checkpoint saved in "
                f"{self.ckpts.path}; continue with: {continue_command(overrides, self.out_dir)}",
            )
        log.info("%s", record.summary(self.trainer.step, self.throughput()["it_per_s"]))
        if record.metrics and not in_sweep():
            log.info("%s", results_table(record.metrics, results.get("evaluation")))
        return record.objective(results)

    def throughput(self) -> dict[str, float]:
        """The sitting's throughput, once the loop has ended."""
        p, batch = self.progress, self.cfg.trainer.batch_size
        return self.record.throughput(self.trainer.step, p.elapsed, p.cpu_s, batch)

    def write_results(self) -> dict[str, Any]:
        cfg, t, step = self.cfg, self.cfg.trainer, self.trainer.step
        fields = {
            "loss": cfg.loss.name,
            "model": cfg.model.name,
            "seed": cfg.seed,
            "steps": step,
            "d_updates": self.trainer.d_updates,
            "n_critic": t.n_critic,
            "batch_size": t.batch_size,
            "device": str(self.device),
            "execution": self.trainer.execution,  # trainer.compile / amp as they ran
            "data": {"source": self.trainer.data.source, "num_images": len(self.trainer.data)},
            "throughput": self.throughput(),
            **({"plugins": self.plugins} if self.plugins else {}),
        }
        budget = (
            {"cpu_minutes": t.cpu_minutes, "spent_at_step": step} if self.progress.spent else None
        )
        return self.record.write(fields, budget)


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """A failed write (a full disk, an unwritable folder) as one line naming the file."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        reason = getattr(e, "strerror", None) or " ".join(str(e).split())[:200]
        raise GanlabError(f"cannot write {path}: {reason}") from None
