"""ganlab.metrics definitions against independent float64 NumPy/SciPy references, and on
real MNIST test images through a briefly trained classifier (FID, KID, PRDC, label metrics);
FID on the chosen features climbs every corruption ladder; FID∞; and in a run, one sample
count per curve with its own floor."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial.distance
import scipy.special
import scipy.stats
import torch
from torchvision.transforms.functional import gaussian_blur

from ganlab.metrics import DIRECTIONS, METRIC_KEYS
from ganlab.metrics import manifold as manifold_module
from ganlab.metrics.audit import LADDERS, ladder_fids, separation
from ganlab.metrics.audit import corrupt as audit_corrupt
from ganlab.metrics.distances import fid, fid_infinity, kid, mmd2_unbiased
from ganlab.metrics.evaluator import Evaluator, real_floor, serve
from ganlab.metrics.labels import classes_covered, label_kl, mnist_score
from ganlab.metrics.manifold import prdc
from ganlab.metrics.session import EvaluationSession
from ganlab.runtime import to_signed_unit
from tests.conftest import quick_classifier, quick_features, scalars, tiny_run

CPU = torch.device("cpu")


@pytest.fixture(scope="session")
def classifier(tmp_path_factory):
    """Trained for seconds; shared with the other test modules through the session's temp."""
    return quick_classifier(tmp_path_factory.getbasetemp() / "ganlab-cache")[0]


@pytest.fixture(scope="session")
def features(tmp_path_factory):
    """The quick feature network, beside the quick classifier."""
    return quick_features(tmp_path_factory.getbasetemp() / "ganlab-cache")[0]


@pytest.fixture(scope="module")
def clean(test_split) -> torch.Tensor:
    """The first 5,000 test images (one writer population: the last 5,000 are messier),
    in the order the evaluator below draws its reference from them."""
    n = min(5000, len(test_split))  # a bare clone's stand-in split has 2,500
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    return test_split.images[:n][order]


@pytest.fixture(scope="module")
def evaluator(classifier, features, test_split) -> Evaluator:
    """Reference: 1,000 of the clean images (clean[:1000]); clean[1000:] is other real data."""
    real = test_split.images[:5000]
    return Evaluator(classifier, features, real, n_samples=1000, kid_subsets=20)


# --- references: plain float64 NumPy/SciPy, written from the papers' formulas -----------------


def fid_reference(a: np.ndarray, b: np.ndarray) -> float:
    """pytorch-fid's formula: scipy's general matrix square root of Σ_a Σ_b."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def mmd2_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD², polynomial kernel (x·y/d + 1)³, with explicit i ≠ j masks."""
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    off = lambda m: ~np.eye(m.shape[0], dtype=bool)  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float(kxx[off(kxx)].mean() + kyy[off(kyy)].mean() - 2 * kxy.mean())


def prdc_reference(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """Brute force over the full distance matrices (as in the authors' prdc package)."""
    radius = lambda s: np.sort(scipy.spatial.distance.cdist(s, s), axis=1)[:, k]  # noqa: E731
    r_real, r_fake = radius(real), radius(fake)
    d = scipy.spatial.distance.cdist(real, fake)  # [N, M]
    inside_real = d < r_real[:, None]
    return {
        "precision": inside_real.any(0).mean(),
        "recall": (d < r_fake[None, :]).any(1).mean(),
        "density": inside_real.sum(0).mean() / k,
        "coverage": (d.min(1) < r_real).mean(),
    }


def gaussian_pair(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, d))
    mix = np.eye(d) + 0.3 * rng.normal(size=(d, d)) / math.sqrt(d)  # correlated, other scale
    b = rng.normal(0.2, 1.0, size=(n, d)) @ mix * 1.3
    return a, b


# --- FID ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "d", "seed"), [(2000, 128, 0), (500, 16, 1), (3000, 64, 2)])
def test_fid_matches_scipy_reference(n, d, seed):
    a, b = gaussian_pair(n, d, seed)
    expected = fid_reference(a, b)
    assert expected > 1  # the sets differ: a relative error means something
    assert fid(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(expected, rel=1e-6)
    # float32 features are promoted to float64 before any statistic
    got32 = fid(torch.from_numpy(a).float(), torch.from_numpy(b).float())
    assert got32 == pytest.approx(fid_reference(a.astype(np.float32), b.astype(np.float32)), 1e-6)


@pytest.mark.filterwarnings("ignore:Matrix is singular")  # scipy's, in the reference
@pytest.mark.parametrize("dead", [0, 40])
def test_fid_on_classifier_features_matches_scipy_and_torchmetrics(evaluator, clean, dead):
    """The classifier's real features, and the same with units that never fire (as after a
    ReLU, the v1 features: singular covariances, the hard case for sqrtm)."""
    tm_fid = pytest.importorskip("torchmetrics.image.fid")

    class Given(torch.nn.Module):  # the features are the input: no network in between
        num_features = 128

        def forward(self, x):
            return x

    real = evaluator.real.features.clone()
    fake = evaluator.embed(serve_corrupted(clean[1000:2000], "blur", 1.0), 1000).features
    real[:, :dead], fake[:, :dead] = 0, 0
    assert (real.std(0) == 0).sum() == dead  # dense features (pre-ReLU), or dead units
    metric = tm_fid.FrechetInceptionDistance(feature=Given())
    metric.update(real, real=True)
    metric.update(fake, real=False)
    expected = fid_reference(real.numpy(), fake.numpy())
    assert fid(real, fake) == pytest.approx(expected, rel=1e-9)
    assert fid(real, fake) == pytest.approx(float(metric.compute()), rel=1e-9)
    assert abs(fid(real, real)) < 1e-9


def test_fid_of_a_set_with_itself_is_zero():
    a, _ = gaussian_pair(2000, 128, 4)
    relu = np.maximum(a, 0)
    relu[:, :30] = 0  # dead units: a singular covariance, where sqrtm struggles
    for x in (a, relu):
        assert abs(fid(torch.from_numpy(x), torch.from_numpy(x))) < 1e-6


def corrupt(images: torch.Tensor, kind: str, level: float) -> torch.Tensor:
    """uint8 images -> [-1, 1], with Gaussian noise (std level) or blur (sigma level) added."""
    x = images.float().div(127.5).sub(1)
    if level == 0:
        return x
    if kind == "noise":
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        return (x + level * noise).clamp(-1, 1)
    return gaussian_blur(x, kernel_size=9, sigma=level)


@pytest.mark.parametrize(
    ("kind", "levels"), [("noise", [0, 0.2, 0.4, 0.6, 0.8]), ("blur", [0, 0.6, 1.0, 1.5, 2.5])]
)
def test_fid_grows_along_a_corruption_ladder(evaluator, clean, kind, levels):
    """Other real test images, progressively corrupted, move monotonically away. (Noise
    starts at σ = 0.2: the classifier is trained to read noisy digits, and at n = 1,000 FID on
    its features does not resolve σ = 0.1 from clean; docs/metrics/README.md.)"""
    fids = []
    for level in levels:
        features = evaluator.embed(serve_corrupted(clean[1000:2000], kind, level), 1000).features
        fids.append(fid(evaluator.real.features, features))
    assert all(lo < hi for lo, hi in zip(fids, fids[1:], strict=False)), fids
    assert fids[-1] > 10 * fids[0], fids  # the ladder spans far more than the real-real floor


def test_the_feature_network_sees_the_salt_the_label_reader_reads_through(
    evaluator, classifier, clean
):
    """The salt ladder (metrics v3's reason, issue 27): white pixels on 0.5, 1 and 2 % of the
    pixels of other real test images raise FID on the feature network rung by rung, 2 % to at
    least 3x the clean images' (on the 5,000-image sample vs the test split the cached network
    gives 61x: docs/metrics), while the label reader, trained to read speckled digits, still
    reads them (its features alone would hardly move: the defect metrics v2 could not see)."""
    x = to_signed_unit(clean[1000:2000])
    levels = (0, 0.005, 0.01, 0.02)
    salted = [audit_corrupt(x, "salt", level, torch.Generator().manual_seed(0)) for level in levels]
    fids = [evaluator(serve(images), 1000)["fid"] for images in salted]
    assert all(lo < hi for lo, hi in zip(fids, fids[1:], strict=False)), fids
    assert fids[-1] >= 3 * fids[0], fids
    labels = [classifier(images).argmax(1) for images in (salted[0], salted[-1])]
    assert (labels[0] == labels[1]).double().mean() > 0.9  # the same digits, read through salt


def serve_corrupted(images: torch.Tensor, kind: str = "noise", level: float = 0.4):
    return serve(corrupt(images, kind, level))


# --- KID ----------------------------------------------------------------------------------------


def test_mmd2_matches_reference():
    a, b = gaussian_pair(300, 32, 5)
    got = mmd2_unbiased(torch.from_numpy(a), torch.from_numpy(b[:250]))  # unequal sizes too
    assert float(got) == pytest.approx(mmd2_reference(a, b[:250]), rel=1e-10)


def test_kid_is_the_mean_over_subsets():
    a, b = (torch.from_numpy(x) for x in gaussian_pair(400, 32, 6))
    # Subsets as large as both sets: each is the whole set, so KID is the plain estimate.
    mean, std = kid(a, b, subsets=5, subset_size=400)
    assert mean == pytest.approx(mmd2_reference(a.numpy(), b.numpy()), rel=1e-10) and std == 0
    # Smaller subsets: reproducible with the seed, with a spread, around the same value.
    mean1, std1 = kid(a, b, subsets=50, subset_size=100, seed=1)
    assert (mean1, std1) == kid(a, b, subsets=50, subset_size=100, seed=1)
    assert mean1 != kid(a, b, subsets=50, subset_size=100, seed=2)[0]
    assert std1 > 0 and abs(mean1 - mean) < 3 * std1


def test_kid_is_unbiased_for_one_distribution():
    """Two halves of one set: the estimates average to 0, while the biased one does not."""
    rng = np.random.default_rng(7)
    unbiased, biased = [], []
    d = 16
    for _ in range(200):
        x, y = rng.normal(size=(50, d)), rng.normal(size=(50, d))
        unbiased.append(float(mmd2_unbiased(torch.from_numpy(x), torch.from_numpy(y))))
        k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
        biased.append(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())  # with diagonals
    stderr = np.std(unbiased) / math.sqrt(len(unbiased))
    assert abs(np.mean(unbiased)) < 3 * stderr
    assert np.mean(biased) > 10 * np.std(biased) / math.sqrt(len(biased))  # the test has power


def test_kid_of_real_halves_is_near_zero(evaluator, clean):
    half_a, half_b = evaluator.real.features[:500], evaluator.real.features[500:]
    same, spread = kid(half_a, half_b, subsets=50, subset_size=250)
    noisy = evaluator.embed(serve_corrupted(clean[1000:1500], "noise", 0.8), 500).features
    different, different_spread = kid(half_a, noisy, subsets=50, subset_size=250)
    assert abs(same) < 3 * spread  # 0 within the subsets' spread
    assert different - 3 * different_spread > abs(same) + 3 * spread  # and clearly apart


# --- label metrics ------------------------------------------------------------------------------


def one_hot_logits(labels: torch.Tensor, confidence: float = 30.0) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, 10).double() * confidence


def test_mnist_score_limits():
    ones = torch.ones(1000, dtype=torch.long)
    assert mnist_score(one_hot_logits(ones)) == pytest.approx(1.0, abs=1e-12)  # one class
    assert mnist_score(torch.zeros(100, 10)) == pytest.approx(1.0)  # no confidence
    balanced = one_hot_logits(torch.arange(1000) % 10)
    assert mnist_score(balanced) == pytest.approx(10.0, rel=1e-9)
    # absurdly confident logits: probabilities underflow, the score stays finite
    assert mnist_score(one_hot_logits(torch.arange(1000) % 10, 1e4)) == pytest.approx(10.0)


def test_mnist_score_matches_reference():
    logits = torch.randn(500, 10, generator=torch.Generator().manual_seed(0)) * 3
    p = scipy.special.softmax(logits.numpy().astype(np.float64), axis=1)
    expected = math.exp(np.mean([scipy.stats.entropy(row, p.mean(0)) for row in p]))
    assert mnist_score(logits) == pytest.approx(expected, rel=1e-9)


def test_classes_covered_and_label_kl_of_only_ones():
    real = one_hot_logits(torch.arange(1000) % 10)  # balanced "real" labels
    only_ones = one_hot_logits(torch.ones(500, dtype=torch.long))
    assert classes_covered(only_ones) == 1
    assert classes_covered(real) == 10
    assert label_kl(only_ones, real) == pytest.approx(math.log(10), rel=1e-12)
    assert label_kl(real, real) == pytest.approx(0.0, abs=1e-12)
    # 1 % is covered, less is not
    labels = torch.cat([torch.zeros(99, dtype=torch.long), torch.ones(1, dtype=torch.long)])
    assert classes_covered(one_hot_logits(labels)) == 2
    assert (
        classes_covered(one_hot_logits(torch.cat([labels, torch.zeros(1, dtype=torch.long)]))) == 1
    )


def test_label_kl_matches_scipy_and_is_finite_for_missing_classes():
    gen = torch.tensor([0, 0, 1, 2, 2, 2, 3, 9])
    real = torch.arange(100) % 10
    expected = scipy.stats.entropy(np.bincount(gen, minlength=10) / 8, np.full(10, 0.1))
    assert label_kl(one_hot_logits(gen), one_hot_logits(real)) == pytest.approx(expected)
    # a class real data never shows: large but finite (ε = 1e-6 floor on p_real)
    kl = label_kl(one_hot_logits(torch.tensor([5, 5])), one_hot_logits(torch.tensor([1, 2])))
    assert kl == pytest.approx(math.log(1e6))


def test_a_generator_of_only_ones_covers_one_class(evaluator, test_split):
    """A collapsed G: one real "1" with a little pixel noise, 500 times."""
    one = test_split.images[test_split.labels == 1][:1].float().div(127.5).sub(1)  # [1, 1, 28, 28]
    noise = 0.05 * torch.randn(500, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    fake = evaluator.embed(serve((one + noise).clamp(-1, 1)), 500)
    p_real_one = float((evaluator.real.logits.argmax(1) == 1).double().mean())  # ≈ 0.11
    assert classes_covered(fake.logits) == 1
    assert label_kl(fake.logits, evaluator.real.logits) == pytest.approx(-math.log(p_real_one))
    assert mnist_score(fake.logits) < 1.1


# --- precision / recall / density / coverage ----------------------------------------------------


@pytest.mark.parametrize("chunk", [1000, 64])  # 64: blocks that do not divide the set sizes
def test_prdc_matches_brute_force(monkeypatch, chunk):
    monkeypatch.setattr(manifold_module, "CHUNK", chunk)
    a, b = gaussian_pair(300, 8, 8)
    got = prdc(torch.from_numpy(a), torch.from_numpy(b[:250]), k=5)
    expected = prdc_reference(a, b[:250], k=5)
    assert got == pytest.approx(expected, abs=1e-12)
    assert all(0.05 < value < 0.99 for value in got.values()), got  # a non-trivial case


def test_prdc_identical_and_far_sets():
    a, _ = gaussian_pair(500, 16, 9)
    x = torch.from_numpy(a)
    same = prdc(x, x.clone())
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    # each open ball holds its centre and k - 1 neighbours: density k / k, up to rounding at
    # the balls' edges (the k-th neighbour sits exactly on it)
    assert same["density"] == pytest.approx(1.0, abs=0.01)
    far = prdc(x, x + 1000)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


# --- the evaluator ------------------------------------------------------------------------------


def test_registry_is_complete():
    assert set(DIRECTIONS.values()) == {"min", "max"}
    assert METRIC_KEYS[0] == "fid"


def test_evaluator_returns_every_metric_and_leaves_the_rng_alone(evaluator, clean):
    assert evaluator.n == 1000 and evaluator.real.features.shape == (1000, 128)
    assert evaluator.real.features.dtype == torch.float64
    state = torch.get_rng_state()
    metrics = evaluator(serve(clean[1000:2000]))  # other real images: the floor, in effect
    assert torch.equal(torch.get_rng_state(), state)  # training's RNG stream is untouched
    assert tuple(metrics) == METRIC_KEYS
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["classes_covered"] == 10 and metrics["precision"] > 0.7

    # a set identical to the reference: FID 0, full precision and recall
    identical = evaluator(serve(clean[:1000]))
    assert abs(identical["fid"]) < 1e-6
    assert identical["precision"] == identical["recall"] == identical["coverage"] == 1.0
    assert identical["label_kl"] == pytest.approx(0.0, abs=1e-12)

    # fewer samples: compared with the first n of the reference; bad shapes are refused
    assert evaluator(serve(clean[:300]), n=300)["fid"] == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match="shape"):
        evaluator(lambda b: torch.zeros(b, 784))


def test_real_floor_is_far_below_a_corrupted_set(evaluator, clean):
    floor = real_floor(evaluator, clean[1000:])
    noisy = evaluator(serve_corrupted(clean[1000:2000], "noise", 0.8))
    assert tuple(floor) == METRIC_KEYS
    assert floor["fid"] < noisy["fid"] / 10
    assert floor["precision"] > noisy["precision"] and floor["recall"] > noisy["recall"]


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


def test_metrics_at_several_sizes_come_from_one_draw(quick, features, test_split):
    real = test_split.images[:1000]
    evaluator = Evaluator(quick[0], features, real, n_samples=600, kid_subsets=5)
    other = test_split.images[1000:1600]
    both = evaluator.at(serve(other), (200, 600))
    assert both[600] == evaluator(serve(other), 600)
    assert both[200] == evaluator(serve(other[:200]), 200)  # the first 200 of the draw


def test_each_session_says_which_metric_networks_it_uses(quick, features, mnist_root, caplog):
    with caplog.at_level(logging.INFO, logger="ganlab.metrics.session"):
        session = EvaluationSession(mnist_root, CPU, 200)
    info = quick[1]
    line = f"label reader {info['weights_sha256'][:12]} "
    line += f"({100 * info['test_accuracy']:.2f}% on {info['test_source']}), feature network "
    assert line + session.features_info["weights_sha256"][:12] in caplog.text
    provenance = session.provenance(200)
    assert provenance["classifier_sha256"] == info["weights_sha256"]
    assert provenance["feature_network_sha256"] == session.features_info["weights_sha256"]
    assert provenance["feature_network_sha256"] != provenance["classifier_sha256"]


# --- the features: every corruption ladder, in every seed -------------------------------------


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


# --- FID at infinitely many samples ------------------------------------------------------------


def test_fid_infinity_removes_the_sample_size_bias():
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(4000, 64, generator=generator, dtype=torch.float64) for _ in "ab")
    shifted = b * 1.1 + 0.05
    true = 64 * 0.05**2 + 64 * 0.1**2  # Gaussians: the closed form
    assert abs(fid_infinity(a, b)) < 0.2 < fid(a, b)  # one distribution: FID∞ ≈ 0
    assert abs(fid_infinity(a, shifted) - true) < abs(fid(a, shifted) - true) / 3
    assert fid_infinity(a, b, seed=1) == fid_infinity(a, b, seed=1)
