"""What a training run records of itself: its status, last logged means, throughput and the
fields of results.json, and the one-line summary that ends it.

A checkpoint carries the last logged means and the throughput of the sitting that trained
(``FINAL_KEY``, ``THROUGHPUT_KEY``), so that a resume with no step left to train (killed
during the final evaluation; a finished last.pt into a new folder) still writes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ganlab.rundir import update_results

FINAL_KEY, THROUGHPUT_KEY = "final_means", "throughput"


class RunRecord:
    """The run's results so far and how they reach results.json."""

    def __init__(self, out_dir: Path, start_step: int, carried: dict[str, dict[str, float]]):
        self.out_dir, self.start_step = out_dir, start_step
        self.carried_throughput = carried.get(THROUGHPUT_KEY, {})
        self.status = "completed"  # or diverged, interrupted
        self.problem: str | None = None  # why the run diverged
        self.rollbacks = 0
        self.final: dict[str, float] = dict(carried.get(FINAL_KEY, {}))  # the last means written
        self.metrics: dict[str, float] = {}  # of the final evaluation

    def checkpointed(self, step: int, elapsed: float, cpu_s: float, batch: int) -> dict[str, Any]:
        """What a checkpoint carries of the record: the last means, the sitting's throughput."""
        return {FINAL_KEY: self.final, THROUGHPUT_KEY: self.throughput(step, elapsed, cpu_s, batch)}

    def throughput(self, step: int, elapsed: float, cpu_s: float, batch: int) -> dict[str, float]:
        """G steps per second, images per second and CPU seconds per step of this sitting;
        those of the sitting that trained when this one trained no step (a resume that only
        finishes the evaluation), so a resume never records 0 it/s."""
        steps = step - self.start_step
        if steps == 0 and self.carried_throughput:
            return dict(self.carried_throughput)
        it_per_s = steps / elapsed if elapsed > 0 else float("nan")
        # the loop's CPU seconds per G step (periodic evaluations included)
        return {
            "it_per_s": it_per_s,
            "images_per_s": it_per_s * batch,
            "cpu_s_per_it": cpu_s / max(1, steps),
        }

    def write(self, fields: dict[str, Any], budget: dict[str, Any] | None) -> dict[str, Any]:
        """results.json: the run's ``fields`` (config, counters, throughput) and the record."""
        step = fields["steps"]
        return update_results(
            self.out_dir,
            {
                "status": self.status,
                **fields,
                # Nothing logged (e.g. resumed at the last step): keep what results.json says.
                **(
                    {"final": {"loss_d": self.final["loss/D"], "loss_g": self.final["loss/G"]}}
                    if self.final
                    else {}
                ),
                **({"rollbacks": self.rollbacks} if self.rollbacks else {}),
                **({"budget": budget} if budget else {}),
                **({"divergence": {"step": step, "reason": self.problem}} if self.problem else {}),
            },
        )

    def objective(self, results: dict[str, Any]) -> float:
        """The sweep objective (lower is better): the final FID, else the final G loss; NaN
        unless the run completed."""
        if self.status != "completed":
            return float("nan")
        objective = self.metrics.get("fid", (results.get("final") or {}).get("loss_g"))
        return float("nan") if objective is None else float(objective)

    def summary(self, step: int, it_per_s: float) -> str:
        """``completed: 3000 steps at 234.7 it/s; final loss D 0.37, G 3.09, fid 1295, ...``"""
        nan = float("nan")
        shown = "".join(
            f", {k} {self.metrics[k]:.4g}" for k in ("fid", "mnist_score") if k in self.metrics
        )
        return (
            f"{self.status}: {step} steps at {it_per_s:.1f} it/s; final loss "
            f"D {self.final.get('loss/D', nan):.4f}, G {self.final.get('loss/G', nan):.4f}"
            f"{shown}; run dir {self.out_dir}"
        )


def carried(state: dict[str, Any]) -> dict[str, dict[str, float]]:
    """A checkpoint's FINAL_KEY and THROUGHPUT_KEY, kept only as names of plain numbers (an
    older checkpoint has neither: then nothing is carried)."""
    kept: dict[str, dict[str, float]] = {}
    for key in (FINAL_KEY, THROUGHPUT_KEY):
        value = state.get(key)
        ok = isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
            for k, v in value.items()
        )
        kept[key] = {k: float(v) for k, v in value.items()} if ok else {}
    return kept
