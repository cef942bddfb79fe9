"""TensorBoard logging that keeps the training loop free of host syncs, and the HParams records.

Scalars are summed on the device between log intervals; ``write`` reads them back once
(one sync per interval) and writes their means.

HParams are written with the plugin's own protos (``tensorboard.plugins.hparams``): an
*experiment* declares the columns (order, domains, descriptions, the ones ticked by default)
and the metrics, and each run adds a *session* (its values) with its end status. The metric
columns name scalar tags the run logs anyway (``metrics/fid``, ``loss/G``: TensorBoard shows
their last value), so the Scalars dashboard gets no extra one-point charts. The records go
to their own event file (``*.hparams``), replaced whenever they are written again: TensorBoard
keeps the first record of a tag it sees, so a resumed run must not leave its old status.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.plugins.hparams import summary_v2 as hp
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid

from ganlab.errors import GanlabError
from ganlab.rundir import HYDRA_DIR, check_writable
from ganlab.rundir import STATUSES as STATUSES  # hparams reads it from here

SAMPLES_TAG = "samples"
HPARAMS_SUFFIX = ".hparams"  # the event file holding a run's (or a sweep's) HParams records

# A run's end (rundir.STATUSES) as the HParams plugin's session status.
_SESSION_STATUS = {
    "completed": api_pb2.STATUS_SUCCESS,
    "interrupted": api_pb2.STATUS_UNKNOWN,  # it can be continued
    "diverged": api_pb2.STATUS_FAILURE,
    "failed": api_pb2.STATUS_FAILURE,
}
Domain = hp.Discrete | hp.IntInterval | hp.RealInterval


class Counts(hp.Discrete):
    """A discrete domain of whole numbers written as text ("2", "10"), listed in numeric
    order (``hp.Discrete`` sorts text as text: "10" before "2")."""

    def __init__(self, values: Iterable[str]):
        super().__init__(values, dtype=str)
        self._values.sort(key=int)


@dataclass(frozen=True)
class Column:
    """One HParams column: this run's value, the domain of all values, what it means.

    ``shown``: ticked by default. TensorBoard lists the columns it is told ``differ`` first
    (by name) and ticks the first five of the list.
    """

    name: str
    value: str | float | int | bool
    domain: Domain | None = None
    description: str = ""
    shown: bool = False


@dataclass(frozen=True)
class MetricColumn:
    """A metric column: the last value of the run's scalar ``tag``."""

    tag: str
    description: str = ""


class RunLogger:
    def __init__(self, log_dir: Path, purge_step: int | None = None):
        self.log_dir = log_dir
        self.writer: SummaryWriter | None = None
        self.tags: set[str] = set()  # every scalar tag written (the HParams metric columns)
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, int] = {}
        self.restart(purge_step)

    def restart(self, purge_step: int | None) -> None:
        """(Re)open the event file. ``purge_step``: after a resume or a rollback, TensorBoard
        drops the events at and past this step that an earlier writer left, so the curves
        have no duplicated steps."""
        with self._writing():
            if self.writer is not None:
                self.writer.close()
            # TensorBoard's writer thread would print a full disk's traceback: probe first
            check_writable(self.log_dir)
            self.writer = SummaryWriter(str(self.log_dir), purge_step=purge_step)
        self.discard()

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A full disk or a removed folder as one line naming the folder: TensorBoard's
        writer thread raises the OSError of a failed write at the next call."""
        try:
            yield
        except OSError as e:
            raise GanlabError(
                f"cannot write TensorBoard events in {self.log_dir}: {e.strerror or e}"
            ) from e

    def accumulate(self, values: dict[str, Tensor]) -> None:
        for tag, value in values.items():
            value = value.detach().float()
            self._sums[tag] = self._sums[tag] + value if tag in self._sums else value
            self._counts[tag] = self._counts.get(tag, 0) + 1

    def means(self) -> dict[str, float]:
        """Means since the last write, read back to the host (one sync)."""
        if not self._sums:
            return {}
        stacked = torch.stack([self._sums[t] / self._counts[t] for t in self._sums])
        return dict(zip(self._sums, stacked.tolist(), strict=True))

    def write(self, step: int, means: dict[str, float] | None = None) -> dict[str, float]:
        """Write the means since the last write at ``step``, return them and start afresh.

        ``means``: what ``means()`` returned since the last accumulate, to skip a second sync.
        """
        means = self.means() if means is None else means
        with self._writing():
            for tag, value in means.items():
                self.writer.add_scalar(tag, value, step)
        self.tags.update(means)
        self.discard()
        return means

    def discard(self) -> None:
        self._sums.clear()
        self._counts.clear()

    def flush(self) -> None:
        with self._writing():
            self.writer.flush()

    def scalar(self, tag: str, value: float, step: int) -> None:
        with self._writing():
            self.writer.add_scalar(tag, value, step)
        self.tags.add(tag)

    def images(self, images: Tensor, step: int) -> Tensor:
        """Log a batch in [-1, 1] as one 8-wide grid; return the grid ([3, H, W] in [0, 1])."""
        grid = make_grid(images.detach().float().cpu(), nrow=8, normalize=True, value_range=(-1, 1))
        with self._writing():
            self.writer.add_image(SAMPLES_TAG, grid, step)
        return grid

    def close(self) -> None:
        with self._writing():
            self.writer.flush()
            self.writer.close()


def run_overrides() -> list[str]:
    """This job's command-line overrides (empty outside a Hydra run, e.g. under compose)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def save_hydra_record(out_dir: Path, cfg: DictConfig) -> None:
    """``.hydra/``: the run's config, Hydra's own node and the command line's overrides, as
    Hydra saves them at a job's start (``hydra.output_subdir`` is null, so Hydra does not):
    written by the run that owns the folder, once it starts or continues training."""
    folder = out_dir / HYDRA_DIR
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    if HydraConfig.initialized():
        hydra = HydraConfig.get()
        (folder / "hydra.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra})))
    overrides = OmegaConf.create(run_overrides())
    (folder / "overrides.yaml").write_text(OmegaConf.to_yaml(overrides))


def in_sweep() -> bool:
    """True in a job of a Hydra multirun (``-m``)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


# --- HParams records ------------------------------------------------------------------------


def _summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
    summary = Summary()
    summary.value.add(
        tag=tag, metadata=metadata.create_summary_metadata(data), tensor=metadata.NULL_TENSOR
    )
    return summary


def _data_type(value: Any) -> int:
    if isinstance(value, bool):
        return api_pb2.DATA_TYPE_BOOL
    if isinstance(value, int | float):
        return api_pb2.DATA_TYPE_FLOAT64
    return api_pb2.DATA_TYPE_STRING


def experiment_summary(columns: Sequence[Column], metrics: Sequence[MetricColumn]) -> Summary:
    """The experiment: every column in order, with its domain and description, and the metrics."""
    infos = []
    for column in columns:
        info = api_pb2.HParamInfo(
            name=column.name,
            description=column.description,
            type=_data_type(column.value),
            differs=column.shown,
        )
        if column.domain is not None:
            column.domain.update_hparam_info(info)
        infos.append(info)
    experiment = api_pb2.Experiment(
        hparam_infos=infos,
        metric_infos=[
            api_pb2.MetricInfo(
                name=api_pb2.MetricName(tag=m.tag), display_name=m.tag, description=m.description
            )
            for m in metrics
        ],
        time_created_secs=time.time(),
    )
    return _summary(
        metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment)
    )


def session_summaries(
    columns: Sequence[Column],
    status: str,
    group_name: str = "",
    times: tuple[float, float] | None = None,
) -> list[Summary]:
    """A run's session: its value of each column, then its end status. ``group_name`` is
    the dashboard's Trial ID (TensorBoard shows the run's path when it is empty; sessions
    sharing one are shown as one row). ``times``: start and end, seconds since the epoch."""
    start_time, end_time = times or (time.time(), time.time())
    start = plugin_data_pb2.SessionStartInfo(group_name=group_name, start_time_secs=start_time)
    for column in columns:
        value = start.hparams[column.name]
        if isinstance(column.value, bool):
            value.bool_value = column.value
        elif isinstance(column.value, int | float):
            value.number_value = column.value
        else:
            value.string_value = str(column.value)
    end = plugin_data_pb2.SessionEndInfo(status=_SESSION_STATUS[status], end_time_secs=end_time)
    return [
        _summary(
            metadata.SESSION_START_INFO_TAG,
            plugin_data_pb2.HParamsPluginData(session_start_info=start),
        ),
        _summary(
            metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end)
        ),
    ]


def write_hparams(log_dir: Path, summaries: Sequence[Summary], step: int = 0) -> None:
    """Replace ``log_dir``'s HParams event file with one holding ``summaries`` at ``step``
    (write it after the run's own writer is closed: it is then the newest file)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    for old in log_dir.glob(f"events.out.tfevents.*{HPARAMS_SUFFIX}"):
        old.unlink()
    writer = SummaryWriter(str(log_dir), filename_suffix=HPARAMS_SUFFIX)
    try:
        for summary in summaries:
            writer.file_writer.add_summary(summary, step)
    finally:
        writer.close()


def read_experiment(log_dir: Path) -> api_pb2.Experiment | None:
    """The experiment in ``log_dir``'s HParams event file, if it holds one."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    for path in sorted(log_dir.glob(f"events.out.tfevents.*{HPARAMS_SUFFIX}")):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == metadata.EXPERIMENT_TAG:
                    content = value.metadata.plugin_data.content
                    return plugin_data_pb2.HParamsPluginData.FromString(content).experiment
    return None
