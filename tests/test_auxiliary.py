"""Auxiliary terms: float64 references, zeros where the formulas say, gradients only where
they belong, a real run that logs each term and their weighted totals, and the perceptual
backbone, which is never the metrics classifier (checked by hash)."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ganlab import auxiliary
from ganlab import build as build_module
from ganlab.backbones import MNISTPerceptual
from ganlab.build import build_trainer, load_backbone
from ganlab.config import validate
from ganlab.errors import GanlabError
from ganlab.metrics.classifier import (
    CLASSIFIER,
    PERCEPTUAL,
    cache_path,
    cached_sha256,
    load_network,
    save_network,
    train_network,
    weights_sha256,
)
from tests.conftest import sample_subset, scalars, tiny, tiny_run

CPU = torch.device("cpu")


def quick_perceptual(cache):
    """The perceptual backbone trained for seconds (2,500 sample images, 2 epochs), cached
    under cache beside the quick classifier: runs with +aux.perceptual load it, never train."""
    path = cache_path(PERCEPTUAL, cache)
    if path.is_file():
        return load_network(path, PERCEPTUAL)
    images, labels = sample_subset(2)
    test_images, test_labels = sample_subset(10, start=1)  # odd: never trained on
    data = (images, labels, test_images, test_labels)
    sources = ("mnist_sample[::2]", "mnist_sample[1::10]")
    model, info = train_network(PERCEPTUAL, data, 2, sources=sources)
    save_network(path, model, info, PERCEPTUAL)
    return model, info


@pytest.fixture(scope="module", autouse=True)
def perceptual_cached(ganlab_cache):
    return quick_perceptual(ganlab_cache)


def features(seed: int, n: int = 12, f: int = 7, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, 1.0, (n, f))


def mean_feature_reference(real: np.ndarray, fake: np.ndarray) -> float:
    return float(sum((real[:, k].mean() - fake[:, k].mean()) ** 2 for k in range(real.shape[1])))


def contrastive_reference(real: np.ndarray, fake: np.ndarray, margin: float) -> float:
    pull = [np.sum((a - b) ** 2) for a, b in itertools.permutations(real, 2)]
    push = [
        max(0.0, margin - np.sqrt(np.sum((a - b) ** 2))) ** 2
        for a, b in itertools.product(real, fake)
    ]
    return float(np.mean(pull) + np.mean(push))


@pytest.mark.parametrize("term", [auxiliary.feature_matching, auxiliary.perceptual])
def test_mean_feature_terms_match_float64_reference(term):
    real, fake = features(0), features(1, n=9, shift=0.5)
    got = term(torch.tensor(real, dtype=torch.float32), torch.tensor(fake, dtype=torch.float32))
    np.testing.assert_allclose(got.item(), mean_feature_reference(real, fake), rtol=1e-5)
    got64 = term(torch.tensor(real), torch.tensor(fake))
    np.testing.assert_allclose(got64.item(), mean_feature_reference(real, fake), rtol=1e-12)


@pytest.mark.parametrize("term", [auxiliary.feature_matching, auxiliary.perceptual])
def test_mean_feature_terms_are_zero_when_features_coincide(term):
    real = torch.tensor(features(2))
    assert term(real, real.clone()).item() == 0.0
    assert term(real, real.flip(0)).item() < 1e-28  # same mean, other order


@pytest.mark.parametrize("margin", [0.5, 3.0])
def test_contrastive_matches_float64_reference(margin):
    real, fake = features(3, n=6), features(4, n=5, shift=0.7)
    got = auxiliary.contrastive(torch.tensor(real), torch.tensor(fake), margin)
    np.testing.assert_allclose(got.item(), contrastive_reference(real, fake, margin), rtol=1e-10)


def test_contrastive_is_zero_for_one_real_point_and_far_fakes():
    real = torch.ones(5, 4)
    far = torch.ones(3, 4) + torch.tensor([3.0, 0, 0, 0])  # at distance 3 from every real
    assert auxiliary.contrastive(real, far, margin=2.0).item() == 0.0
    assert auxiliary.contrastive(real, far, margin=4.0).item() == pytest.approx(1.0)  # (4-3)²


def params(module):
    return [p.detach().clone() for p in module.parameters()]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("model", ["mlp", "dcgan"])
def test_gradients_reach_only_the_network_being_trained(make_cfg, model, ganlab_cache):
    # The real (default) perceptual backbone, ganlab's second MNIST network, from $GANLAB_CACHE.
    cfg = make_cfg(
        *tiny(model),
        "data=mnist_sample",
        "+aux.feature_matching=1",
        "+aux.perceptual=1",
        "+aux.contrastive=1",
        "aux_params.contrastive_margin=5",
    )
    torch.manual_seed(0)
    trainer = build_trainer(cfg, torch.device("cpu"))
    assert trainer.objective.backbone is not None and not trainer.objective.backbone.training
    assert not any(p.requires_grad for p in trainer.objective.backbone.parameters())  # frozen
    G0, D0, B0 = params(trainer.G), params(trainer.D), params(trainer.objective.backbone)

    logs = trainer.g_step()
    assert {"aux/feature_matching", "aux/perceptual", "aux/total_G"} <= logs.keys()
    assert not same(G0, params(trainer.G))
    assert same(D0, params(trainer.D)) and all(p.grad is None for p in trainer.D.parameters())
    assert same(B0, params(trainer.objective.backbone))
    assert all(p.grad is None for p in trainer.objective.backbone.parameters())

    G1 = params(trainer.G)
    logs = trainer.d_step()
    assert logs["aux/contrastive"] > 0 and "aux/total_D" in logs
    assert same(G1, params(trainer.G)) and not same(D0, params(trainer.D))
    assert same(B0, params(trainer.objective.backbone))


def test_unknown_term_and_bad_weights_are_rejected(make_cfg):
    with pytest.raises(GanlabError, match="auxiliary terms are feature_matching, perceptual"):
        validate(make_cfg("+aux.feature_matchin=1"))
    with pytest.raises(GanlabError, match="invalid value for aux.contrastive: -1.0"):
        validate(make_cfg("+aux.contrastive=-1"))
    with pytest.raises(GanlabError, match="aux_params.perceptual_backbone"):
        validate(make_cfg("aux_params.perceptual_backbone=resnet"))


def test_vgg19_without_downloadable_weights_says_what_to_do(monkeypatch, tmp_path):
    import urllib.error

    import torch.hub

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(GanlabError, match="perceptual_backbone=mnist_perceptual"):
        load_backbone("vgg19", tmp_path, torch.device("cpu"))


def test_a_run_with_all_three_terms_logs_each_term_and_the_weighted_totals(
    make_cfg, tmp_path, ganlab_cache
):
    from ganlab.train import train

    w = {"feature_matching": 0.5, "perceptual": 0.01, "contrastive": 2.0}
    cfg = make_cfg(
        *tiny("dcgan"),
        "data=mnist_sample",
        "trainer.steps=6",
        "trainer.log_every=2",
        *(f"+aux.{k}={v}" for k, v in w.items()),
    )
    train(cfg, tmp_path)
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    series = {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    for name in w:
        assert len(series[f"aux/{name}"]) == 3 and all(np.isfinite(series[f"aux/{name}"]))
    expected_g = [
        w["feature_matching"] * a + w["perceptual"] * b
        for a, b in zip(series["aux/feature_matching"], series["aux/perceptual"], strict=True)
    ]
    np.testing.assert_allclose(series["aux/total_G"], expected_g, rtol=1e-5)
    np.testing.assert_allclose(
        series["aux/total_D"], [w["contrastive"] * c for c in series["aux/contrastive"]], rtol=1e-5
    )


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
