"""The report's figures: training curves (against steps and CPU-minutes), the final primary
metric per group, samples.

Figures are made without pyplot (no global backend switch, no figure left open in the caller)
and matplotlib is imported inside the functions, so importing the report stays cheap. Each
``plot_*`` returns the PNG's path, or None when no run has data for it (nothing is written).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ganlab.report.runs import (
    last_sample,
    read_scalars,
    result_value,
    samples,
    step_of,
)
from ganlab.report.summary import GroupRow, better, values_of

DPI = 120
MARKED_POINTS = 3  # curves with this many points or fewer are drawn with markers
STRIP_COLUMNS = 6  # grids per group in the progress strip, evenly spaced over training
# The TensorBoard tags of the losses (see ARCHITECTURE.md), by their name in results.json.
LOSS_TAGS = {"final.loss_g": "loss/G", "final.loss_d": "loss/D"}
# The loop's CPU seconds per G step, periodic evaluations included (see run.py).
CPU_S_PER_IT = "throughput.cpu_s_per_it"


def metric_tag(name: str) -> str:
    """The TensorBoard tag of a metric: ``fid`` → ``metrics/fid``, ``final.loss_g`` → ``loss/G``."""
    return LOSS_TAGS.get(name, f"metrics/{name.replace('.', '/')}")


def curve_tags(primary: str) -> list[str]:
    """The curves drawn: the primary metric, then the G and D losses."""
    return list(dict.fromkeys([metric_tag(primary), *LOSS_TAGS.values()]))


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def group_colors(rows: Sequence[GroupRow]) -> dict[str, Any]:
    """One color per group, the same in every figure: tab10 up to 10 groups, tab20 up to 20."""
    from matplotlib import colormaps

    if len(rows) <= 10:
        return {row.group: colormaps["tab10"](i) for i, row in enumerate(rows)}
    # tab20 holds ten hue pairs (dark, light): the dark ones first, so that neighbours in
    # the ranking differ in hue; past 20 groups the colors repeat.
    order = [*range(0, 20, 2), *range(1, 20, 2)]
    return {row.group: colormaps["tab20"](order[i % 20]) for i, row in enumerate(rows)}


def _band(curves: Sequence[dict[int, float]]) -> tuple[np.ndarray, ...]:
    """Steps, mean, min and max over seeds at each logged step (non-finite values ignored)."""
    steps = np.array(sorted({s for curve in curves for s in curve}), dtype=np.int64)
    table = np.full((len(curves), len(steps)), np.nan)
    for i, curve in enumerate(curves):
        for j, step in enumerate(steps):
            table[i, j] = curve.get(int(step), np.nan)
    table[~np.isfinite(table)] = np.nan
    keep = np.isfinite(table).any(axis=0)
    table, steps = table[:, keep], steps[keep]
    return steps, np.nanmean(table, 0), np.nanmin(table, 0), np.nanmax(table, 0)


Scalars = dict[str, dict[str, dict[int, float]]]  # run name -> tag -> step -> value


def read_curves(rows: Sequence[GroupRow], primary: str) -> Scalars:
    """The curve tags' scalars of every successful run (read once for both curve plots)."""
    return {run.name: read_scalars(run.path, curve_tags(primary)) for row in rows for run in row.ok}


def _legend(fig: Any, group_by: str) -> None:
    # One legend for all panels (the groups are the same everywhere), outside the plots;
    # smaller past 8 groups so that 16 fit beside the panels (the figure grows with them).
    handles = {h.get_label(): h for ax in fig.axes for h in ax.get_lines()}
    small = "small" if len(handles) > 8 else None
    fig.legend(
        handles.values(), handles.keys(), title=group_by, loc="outside right upper", fontsize=small
    )


def _draw_curves(
    rows: Sequence[GroupRow],
    scalars: Scalars,
    tags: Sequence[str],
    x_scale: dict[str, float] | None,
    xlabel: str,
) -> Any:
    """One panel per tag: per group the mean over seeds, shaded min to max, its steps times
    ``x_scale[group]`` on x (the steps themselves without it)."""
    from matplotlib.ticker import MaxNLocator

    colors = group_colors(rows)
    fig = _figure(4.6 * len(tags) + 1.6, max(3.8, 1.6 + 0.19 * len(rows)))
    for ax, tag in zip(fig.subplots(1, len(tags), squeeze=False)[0], tags, strict=True):
        for row in rows:
            curves = [scalars[r.name][tag] for r in row.ok if tag in scalars[r.name]]
            if not curves or (x_scale is not None and row.group not in x_scale):
                continue
            steps, mean, low, high = _band(curves)
            x = steps if x_scale is None else steps * x_scale[row.group]
            label = f"{row.group} ({len(curves)} seed{'s' if len(curves) > 1 else ''})"
            # A series of a few points (one: the final evaluation) is drawn as dots: a line
            # through one point is invisible.
            marker = "o" if len(steps) <= MARKED_POINTS else None
            ax.plot(x, mean, color=colors[row.group], lw=1.8, label=label, marker=marker)
            if len(steps) > 1:
                ax.fill_between(x, low, high, color=colors[row.group], alpha=0.2, lw=0)
            else:  # the band of one point: its min-max as a bar
                ax.vlines(x, low, high, color=colors[row.group], alpha=0.35, lw=6)
        ax.set(title=tag, xlabel=xlabel, ylabel=tag)
        if x_scale is None:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
        ax.grid(alpha=0.3)
    return fig


def _tags_with_data(rows: Sequence[GroupRow], primary: str, scalars: Scalars) -> list[str]:
    return [
        tag
        for tag in curve_tags(primary)
        if any(tag in scalars[run.name] for row in rows for run in row.ok)
    ]


def _save_curves(
    rows: Sequence[GroupRow],
    primary: str,
    group_by: str,
    path: Path,
    scalars: Scalars | None,
    x_scale: dict[str, float] | None,
    xlabel: str,
    title: str,
    footer: str | None = None,
) -> Path | None:
    """The curve panels of ``rows`` (see _draw_curves), the legend, ``title`` and ``footer``
    under all panels, saved to ``path``; None where no run has a curve tag."""
    scalars = read_curves(rows, primary) if scalars is None else scalars
    tags = _tags_with_data(rows, primary, scalars)
    if not tags:
        return None
    fig = _draw_curves(rows, scalars, tags, x_scale, xlabel)
    if footer:
        fig.supxlabel(footer)
    _legend(fig, group_by)
    fig.suptitle(title)
    fig.savefig(path)
    return path


def plot_curves(
    rows: Sequence[GroupRow],
    primary: str,
    group_by: str,
    path: Path,
    scalars: Scalars | None = None,
) -> Path | None:
    """One panel per curve tag: per group the mean over successful seeds, shaded min to max."""
    title = "Training curves: mean over seeds, band = min–max (failed runs left out)"
    return _save_curves(rows, primary, group_by, path, scalars, None, "step (G updates)", title)


def cpu_minutes_per_step(rows: Sequence[GroupRow]) -> dict[str, float]:
    """Per group, the mean over its successful runs of results.json's
    ``throughput.cpu_s_per_it``, in minutes (groups without one are left out)."""
    scale = {}
    for row in rows:
        values = [v for r in row.ok if (v := result_value(r, CPU_S_PER_IT)) is not None]
        if values:
            scale[row.group] = float(np.mean(values)) / 60
    return scale


def plot_curves_cpu(
    rows: Sequence[GroupRow],
    primary: str,
    group_by: str,
    path: Path,
    scalars: Scalars | None = None,
) -> Path | None:
    """curves.png against CPU time: each group's x is its steps times the mean CPU seconds
    per step of its runs, a linear rescaling (each run's own rate would need interpolation
    onto a common grid, which a curve of one or two evaluations cannot bear)."""
    scale = cpu_minutes_per_step(rows)
    kept = [row for row in rows if row.group in scale]
    title = (
        f"Training curves against CPU time (results.json {CPU_S_PER_IT}, evaluations"
        " included)\nmean over seeds, band = min–max (failed runs left out)"
    )
    # The mapping once, under all panels: a panel is too narrow for it.
    footer = "CPU-minutes = step × the group's mean CPU-s per iteration / 60"
    return _save_curves(kept, primary, group_by, path, scalars, scale, "CPU-minutes", title, footer)


def _box_label(row: GroupRow, n_values: int) -> str:
    # The tick says how many runs the box stands for, and how many it leaves out.
    label = f"{row.group}\n{n_values} run{'s' if n_values != 1 else ''}"
    return label + (f"\n{len(row.failed)} failed" if row.failed else "")


def plot_final_box(
    rows: Sequence[GroupRow], primary: str, group_by: str, path: Path
) -> Path | None:
    """Box plot of the primary metric per group, every successful run drawn as a dot."""
    values = [values_of(row.ok, primary) for row in rows]
    if not any(values):
        return None
    colors = group_colors(rows)
    fig = _figure(max(4.0, 1.3 * len(rows) + 2.0), 4.0)
    ax = fig.subplots()
    positions = np.arange(1, len(rows) + 1)
    filled = [i for i, v in enumerate(values) if v]
    ax.boxplot(
        [values[i] for i in filled],
        positions=positions[filled],
        widths=0.5,
        showfliers=False,
        medianprops={"color": "black"},
    )
    rng = np.random.default_rng(0)  # fixed jitter: the same report twice gives the same PNG
    for i, row in enumerate(rows):
        x = positions[i] + rng.uniform(-0.12, 0.12, len(values[i]))
        ax.scatter(x, values[i], color=colors[row.group], zorder=3, s=28, edgecolor="black")
    ax.set_xticks(positions, [_box_label(row, len(v)) for row, v in zip(rows, values, strict=True)])
    ax.set_xlim(0.4, len(rows) + 0.6)  # room for groups without a box (all failed)
    ax.set(
        title=f"{primary} at the end of training ({better(primary)} is better)",
        xlabel=group_by,
        ylabel=primary,
    )
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path)
    return path


def _sample_for(row: GroupRow) -> tuple[Path | None, str]:
    # The best run's grid; without one (all failed) a failed run's, which shows how it failed.
    if row.best is not None:
        return last_sample(row.best.path), f"best: {row.best.label}"
    for run in row.runs:
        if (png := last_sample(run.path)) is not None:
            return png, f"failed run: {run.label}"
    return None, "no samples"


def plot_samples(rows: Sequence[GroupRow], path: Path) -> Path | None:
    """One tile per group: the last samples grid of the group's best run."""
    from matplotlib.image import imread

    tiles = [(row, *_sample_for(row)) for row in rows]
    if all(png is None for _, png, _ in tiles):
        return None
    cols = min(4, len(tiles))
    nrows = math.ceil(len(tiles) / cols)
    fig = _figure(3.2 * cols, 3.6 * nrows)
    axes = fig.subplots(nrows, cols, squeeze=False).ravel()
    for ax, (row, png, note) in zip(axes, tiles, strict=False):
        if png is not None:
            ax.imshow(imread(png), cmap="gray", interpolation="nearest")
            step = step_of(png)
            note += f"\nstep {step}" if step >= 0 else f"\n{png.stem}"
        ax.set_title(f"{row.group}\n{note}", fontsize="small")
        ax.set_axis_off()
    for ax in axes[len(tiles) :]:
        ax.set_axis_off()
    fig.suptitle("Last samples of each group's best run")
    fig.savefig(path)
    return path


def _spaced(grids: Sequence[Path], n: int) -> list[Path]:
    """``n`` of the grids, evenly spaced, the first and the last included."""
    if len(grids) <= n:
        return list(grids)
    picks = np.linspace(0, len(grids) - 1, n).round().astype(int)
    return [grids[i] for i in dict.fromkeys(picks.tolist())]


def plot_progress(rows: Sequence[GroupRow], path: Path) -> Path | None:
    """A strip per group: the saved grids of its best run (else of a failed one) over
    training, up to ``STRIP_COLUMNS`` of them from the first to the last."""
    from matplotlib.image import imread

    strips = []
    for row in rows:
        run = row.best or next((r for r in row.runs if samples(r.path)), None)
        grids = _spaced(samples(run.path), STRIP_COLUMNS) if run is not None else []
        strips.append((row, run, grids))
    if not any(grids for _, _, grids in strips):
        return None
    cols = max(len(grids) for _, _, grids in strips)
    # At least ~3 grids wide: the group labels and the title need the room.
    fig = _figure(2.1 * max(cols, 3) + 1.2, 2.4 * len(strips))
    axes = fig.subplots(len(strips), cols, squeeze=False)
    for (row, run, grids), line in zip(strips, axes, strict=True):
        for i, ax in enumerate(line):
            ax.set_axis_off()
            if i < len(grids):
                ax.imshow(imread(grids[i]), cmap="gray", interpolation="nearest")
                ax.set_title(f"step {step_of(grids[i]):,}", fontsize="small")
        who = "" if run is None else f"\n{'best: ' if run is row.best else 'failed: '}{run.label}"
        line[0].text(-0.08, 0.5, f"{row.group}{who}", transform=line[0].transAxes,
                     ha="right", va="center", fontsize="small")  # fmt: skip
    fig.suptitle("Samples over training (one fixed noise batch per run)")
    fig.savefig(path)
    return path


def draw_plots(
    rows: Sequence[GroupRow], primary: str, group_by: str, out_dir: Path
) -> dict[str, Path | None]:
    """All the figures into ``out_dir``, by name: ``curves``, ``curves_cpu``, ``final_box``,
    ``samples``, ``progress``."""
    scalars = read_curves(rows, primary)  # TensorBoard's files are read once for both
    return {
        "curves": plot_curves(rows, primary, group_by, out_dir / "curves.png", scalars),
        "curves_cpu": plot_curves_cpu(rows, primary, group_by, out_dir / "curves_cpu.png", scalars),
        "final_box": plot_final_box(rows, primary, group_by, out_dir / "final_box.png"),
        "samples": plot_samples(rows, out_dir / "samples.png"),
        "progress": plot_progress(rows, out_dir / "progress.png"),
    }
