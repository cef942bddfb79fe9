"""What TensorBoard shows of runs: the HParams a run declares (columns, domains, status, data
source), then, as a user sees it, a tiny 2-run sweep through TensorBoard's own HTTP data
endpoints and screenshots of its HParams and Scalars pages in a headless Chromium.

The browser part needs Debian's chromium (``apt-get install -y chromium``; ``.ci/run``
installs it) and is skipped, saying so, where there is none. Screenshots go to tmp, or to
``$GANLAB_SCREENSHOTS`` when set (to look at them).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageStat
from tensorboard.plugins.hparams import api_pb2

from ganlab.hparams import sweep_columns
from ganlab.losses import LOSSES as ALL_LOSSES
from ganlab.tracking import HPARAMS_SUFFIX, STATUSES, Column
from ganlab.train import train
from tests.conftest import hparams_records, tiny, train_cli, value

# --- HParams --------------------------------------------------------------------------------


FIRST_COLUMNS = ["loss", "model", "seed", "status", "lr", "n_critic", "batch_size", "penalty"]


def test_a_run_declares_its_hparams_columns_domains_status_and_data_source(
    make_cfg, tmp_path, mnist_root
):
    # data=mnist with no MNIST under data.root: training falls back to the sample
    cfg = make_cfg(
        *tiny("mlp"),
        "trainer.steps=4",
        f"data.root={tmp_path / 'no-mnist'}",
        "data.download=false",
        "metrics.enabled=true",
        "metrics.n_samples=200",
        "metrics.floor=false",
    )
    assert cfg.data.name == "mnist"
    train(cfg, tmp_path / "run")
    records = hparams_records(tmp_path / "run" / "tb")
    experiment = records["experiment"]
    infos = {info.name: info for info in experiment.hparam_infos}
    names = [info.name for info in experiment.hparam_infos]
    assert names[:10] == [*FIRST_COLUMNS, "ema", "data"]
    # what identifies a run is ticked in the dashboard (it ticks the "differs" columns)
    assert [info.name for info in experiment.hparam_infos if info.differs] == FIRST_COLUMNS[:5]
    assert [v.string_value for v in infos["loss"].domain_discrete.values] == sorted(ALL_LOSSES)
    assert [v.string_value for v in infos["status"].domain_discrete.values] == sorted(STATUSES)
    # whole numbers as their digits (TensorBoard prints any number as 0.0000), one value here
    for name, shown in (("seed", "0"), ("n_critic", "1"), ("trainer.steps", "4")):
        assert infos[name].type == api_pb2.DATA_TYPE_STRING
        assert [v.string_value for v in infos[name].domain_discrete.values] == [shown]
    assert infos["ema"].domain_interval.max_value == 1
    # the metric columns: the primary metric first, then the others, then the losses
    tags = [m.name.tag for m in experiment.metric_infos]
    # metrics_final/ (the final evaluation) where the run logs one, else the metrics/ curve
    assert [t.split("/")[0] for t in tags[:3]] == [tags[0].split("/")[0]] * 3
    assert [t.partition("/")[2] for t in tags[:3]] == ["fid", "mnist_score", "classes_covered"]
    assert "loss/G" in tags and all(tag in records["scalars"] for tag in tags)
    # the session: the actual data source, the status; the dashboard's status too
    start = records["session_start_info"]
    assert value(start, "data") == "mnist_sample" and value(start, "status") == "completed"
    assert value(start, "loss") == "vanilla" and value(start, "model") == "mlp"
    assert value(start, "seed") == "0" and value(start, "lr") == 2e-4
    assert start.group_name == f"run ({tmp_path.name})"
    assert records["session_end_info"].status == api_pb2.STATUS_SUCCESS
    # nothing in the Scalars dashboard's way: no hparam/* one-point charts
    assert not [tag for tag in records["scalars"] if tag.startswith("hparam")]
    assert len(list((tmp_path / "run" / "tb").glob(f"*{HPARAMS_SUFFIX}"))) == 1


# --- a sweep in TensorBoard, as a user sees it ------------------------------------------------


CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,900", "--virtual-time-budget=15000",
]  # fmt: skip
LOSSES = ("hinge", "vanilla")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, mnist_root) -> tuple[Path, subprocess.CompletedProcess]:
    """loss=vanilla,hinge: 4 tiny MLP steps each, with a (small) final evaluation."""
    root = tmp_path_factory.mktemp("tb-sweep")
    proc = train_cli(
        "-m",
        f"loss={','.join(LOSSES)}",
        "model=mlp",
        "model.z_dim=8",
        "trainer.batch_size=16",
        "trainer.progress=false",
        "trainer.steps=4",
        "trainer.log_every=2",
        "trainer.sample_every=2",
        f"data.root={mnist_root}",
        "data.split=test",
        "metrics.n_samples=200",
        "metrics.floor=false",
        f"hydra.sweep.dir={root / 'sweep'}",
        cwd=root,
    )  # fmt: skip (a job's folder holds its overrides: keep them few, names have a limit)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "sweep", proc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, body: dict | None = None, timeout: float = 10) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def tensorboard(sweep) -> Iterator[str]:
    """TensorBoard on 127.0.0.1 at a free port, serving the sweep; up once it lists both runs."""
    port = _free_port()
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(sweep[0]),
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if len(_get(f"{url}/data/runs")) >= len(LOSSES):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"TensorBoard did not serve the sweep: {server.stderr.read()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def test_the_sweep_ends_with_a_summary_per_job(sweep):
    root, proc = sweep
    lines = proc.stderr.splitlines()
    (head,) = [i for i, line in enumerate(lines) if line.startswith(f"sweep {root}: 2 job(s)")]
    assert lines[head].endswith(": 2 completed")
    assert lines[head + 1].split() == ["job", "status", "fid", "time"]
    for line, loss in zip(lines[head + 2 : head + 4], LOSSES, strict=True):
        label, status, fid, *took = line.split()
        assert (label, status) == (f"loss={loss}", "completed") and float(fid) > 0 and took
    assert f"python -m ganlab.report {root}" in proc.stderr


def test_tensorboard_serves_the_runs_tags_and_hparams_columns(tensorboard, sweep):
    runs = _get(f"{tensorboard}/data/runs")
    assert sorted(runs) == sorted(p.relative_to(sweep[0]).as_posix() for p in sweep[0].glob("*/tb"))
    tags = _get(f"{tensorboard}/data/plugin/scalars/tags")
    for run in runs:
        assert {"loss/D", "loss/G", "D/real", "D/fake", "perf/it_per_s"} <= set(tags[run])
        assert {"metrics/fid", "metrics_final/fid"} & set(tags[run]), tags[run]
        assert not [tag for tag in tags[run] if tag.startswith("hparam")]  # out of the way
    experiment = _get(f"{tensorboard}/data/plugin/hparams/experiment", {"experimentName": ""})
    columns = [info["name"] for info in experiment["hparamInfos"]]
    ticked = [info["name"] for info in experiment["hparamInfos"] if info.get("differs")]
    # TensorBoard lists the ticked columns first (by name) and shows the first five
    assert ticked == ["loss", "lr", "model", "seed", "status"] == columns[:5]
    assert {"batch_size", "penalty", "ema", "data", "status", "trainer.steps"} <= set(columns)
    metrics = [m["name"]["tag"] for m in experiment["metricInfos"]]
    assert metrics[0] in ("metrics_final/fid", "metrics/fid") and "loss/G" in metrics
    groups = _get(
        f"{tensorboard}/data/plugin/hparams/session_groups",
        {"experimentName": "", "startIndex": 0, "sliceSize": 100, "colParams": [],
         "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                             "STATUS_RUNNING"]},
    )["sessionGroups"]  # fmt: skip
    by_loss = {group["hparams"]["loss"]: group for group in groups}
    assert sorted(by_loss) == sorted(LOSSES)
    for loss, group in by_loss.items():
        assert group["name"] == f"loss={loss} ({sweep[0].name})"  # a short Trial ID
        assert group["hparams"]["status"] == "completed" and group["hparams"]["data"] == "mnist"
        assert group["hparams"]["seed"] == "0"  # shown as 0, not 0.0000
        assert group["sessions"][0]["status"] == "STATUS_SUCCESS"
        fid = [m for m in group["metricValues"] if m["name"]["tag"] == metrics[0]]
        assert fid and fid[0]["value"] > 0


def _screenshot(url: str, page: str, out: Path) -> Image.Image:
    profile = out.parent / f"chromium-profile-{page}"
    cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={out}",
           f"{url}/#{page}"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and out.is_file(), done.stderr[-2000:]
    shutil.rmtree(profile, ignore_errors=True)
    return Image.open(out).convert("RGB")


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium here: apt-get install -y chromium (.ci/run installs it)",
)
@pytest.mark.parametrize("page", ["hparams", "scalars"])
def test_chromium_shows_the_hparams_and_scalars_pages(tensorboard, tmp_path, page):
    folder = Path(os.environ.get("GANLAB_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    image = _screenshot(tensorboard, page, folder / f"tensorboard_{page}.png")
    assert image.size == (1400, 900)
    assert ImageStat.Stat(image.convert("L")).stddev[0] > 20  # not a blank page
    # TensorBoard's orange bar across the top: the app loaded, not an error page
    r, g, b = image.getpixel((700, 10))
    assert r > 200 and 80 < g < 170 and b < 60, (r, g, b)
    body = image.crop((300, 120, 1400, 900)).convert("L")
    assert len(body.getcolors(maxcolors=256 * 256) or range(256)) > 30  # a table, or charts


def test_a_sweeps_whole_number_columns_list_their_values_in_numeric_order():
    """A sweep's seeds (and other counts) are text, so that TensorBoard prints them as
    integers; the dashboard's filter lists them as numbers are ordered: 2 before 10."""
    jobs = [
        [Column("seed", seed, None), Column("lr", lr, None)]
        for seed, lr in (("10", 1e-3), ("2", 2e-4), ("0", 1e-3))
    ]
    seed, lr = sweep_columns(jobs)
    assert seed.domain.values == ["0", "2", "10"] and seed.shown
    assert lr.domain.values == [0.0002, 0.001]
