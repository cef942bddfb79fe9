"""Stacked MNIST (data=stacked_mnist), its mode metrics, and PacGAN packing
(model.discriminator.pack): the data is what the papers describe, the metrics agree with
closed forms, D sees whole packs, and packed 3-channel runs train end to end."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from scipy import stats

from ganlab.build import build_trainer, load_generator
from ganlab.checkpoint import load_checkpoint
from ganlab.claim import check_identity
from ganlab.config import validate
from ganlab.data import load_mnist, load_sample, load_stacked
from ganlab.errors import GanlabError
from ganlab.evaluate import evaluate
from ganlab.metrics.evaluator import serve
from ganlab.metrics.modes import modes_covered, per_channel, reverse_kl
from ganlab.metrics.session import EvaluationSession
from ganlab.models import build_models
from ganlab.packing import pack
from ganlab.report.runs import collect_runs, read_scalars
from ganlab.report.summary import better, find_metrics
from ganlab.rundir import read_results
from ganlab.runtime import seed_everything
from ganlab.sampling import stream_npz
from ganlab.stacked import N_MODES, mode_ids, stack_digits
from ganlab.train import train
from tests.conftest import tiny

K = N_MODES
STACKED = ["data=stacked_mnist", "data.num_images=512", "data.download=false"]


# --- the dataset ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_sample()  # 500 images of each digit: uniform modes
    return torch.from_numpy(images), torch.from_numpy(labels)


def test_mode_ids_read_the_channels_as_a_three_digit_number():
    digits = torch.tensor(list(itertools.product(range(10), repeat=3)))  # 000, 001, ..., 999
    assert mode_ids(digits).tolist() == list(range(K))


def test_stacked_images_are_digits_of_the_base_with_their_labels(sample, tmp_path):
    # tmp_path holds no MNIST and download is off: the 5,000-image sample stands in
    data = load_stacked(str(tmp_path), "train", False, False, 300, 0, "cpu")
    assert data.images.shape == (300, 3, 28, 28) and data.images.dtype == torch.uint8
    assert data.source == "stacked_mnist_sample" and data.channels == 3
    batch = data.sample(16)
    assert batch.shape == (16, 3, 28, 28) and batch.min() >= -1 and batch.max() <= 1
    # each channel is one image of the base, and the mode spells the labels of the three
    images, labels = sample
    label_of = {img.numpy().tobytes(): int(y) for img, y in zip(images[:, 0], labels, strict=True)}
    for image, mode in zip(data.images, data.labels, strict=True):
        digits = [label_of[channel.numpy().tobytes()] for channel in image]
        assert 100 * digits[0] + 10 * digits[1] + digits[2] == mode


def test_the_dataset_depends_on_data_seed_only(tmp_path):
    def build(run_seed: int, data_seed: int) -> torch.Tensor:
        torch.manual_seed(run_seed)  # the run's seed moves the global RNG, not the dataset
        return load_stacked(str(tmp_path), "train", False, False, 200, data_seed, "cpu").images

    assert torch.equal(build(0, 0), build(1, 0))
    assert not torch.equal(build(0, 0), build(0, 1))


def test_modes_are_uniform_and_the_channels_independent(sample):
    images, labels = sample
    n = 200_000
    _, modes = stack_digits(images, labels, n, seed=0)
    counts = torch.bincount(modes, minlength=K).numpy()
    assert len(counts) == K  # modes 000..999 only
    # H0: uniform over the 1,000 modes (200 expected in each)
    assert stats.chisquare(counts).pvalue > 1e-3
    # H0: the first two channels' digits independent (10 x 10 contingency table)
    d0, d1 = (modes // 100).numpy(), (modes // 10 % 10).numpy()
    table = np.zeros((10, 10), np.int64)
    np.add.at(table, (d0, d1), 1)
    assert stats.chi2_contingency(table).pvalue > 1e-3
    # the same tests see a dependence when there is one: channel 1 copying channel 0
    # half the time
    copied = np.where(np.arange(n) % 2 == 0, d0, d1)
    table[:] = 0
    np.add.at(table, (d0, copied), 1)
    assert stats.chi2_contingency(table).pvalue < 1e-10


# --- mode metrics -----------------------------------------------------------------------


def test_mode_metrics_against_closed_forms():
    every = torch.arange(K).repeat(3)  # each mode equally often
    assert modes_covered(every) == K and reverse_kl(every) == pytest.approx(0.0, abs=1e-12)
    one = torch.full((26_000,), 417)
    assert modes_covered(one) == 1 and reverse_kl(one) == pytest.approx(math.log(K), rel=1e-12)
    two = torch.tensor([3] * 300 + [999] * 100)  # p = 3/4, 1/4
    expected = 0.75 * math.log(K * 0.75) + 0.25 * math.log(K * 0.25)
    assert modes_covered(two) == 2 and reverse_kl(two) == pytest.approx(expected, rel=1e-12)


def test_per_channel_hands_out_each_images_channels_in_order():
    drawn = []

    def generate(batch: int) -> torch.Tensor:  # image i: channel c holds the number 3i + c
        start = 3 * sum(drawn)
        drawn.append(batch)
        return (start + torch.arange(3 * batch, dtype=torch.float32)).view(batch, 3, 1, 1)

    draw = per_channel(generate)
    out = torch.cat([draw(b) for b in (7, 5, 1, 11)])
    assert out.shape == (24, 1, 1, 1) and out.flatten().tolist() == list(range(24))
    assert sum(drawn) == 8  # whole images only: 24 digits = 8 images


@pytest.fixture(scope="module")
def session(mnist_root, ganlab_cache):
    return EvaluationSession(mnist_root, torch.device("cpu"), 1000, floor=False)


def expected_modes(p: np.ndarray, n: int) -> tuple[float, float]:
    """Mean and sd of the number of modes hit by n draws from the mode distribution p:
    E = Σ_k 1 − (1 − p_k)ⁿ, Var from the pairwise terms (1 − p_j − p_k)ⁿ."""
    miss = (1 - p) ** n
    pairs = (1 - p[:, None] - p[None, :]) ** n - miss[:, None] * miss[None, :]
    np.fill_diagonal(pairs, 0)
    return float((1 - miss).sum()), math.sqrt(float((miss - miss**2).sum() + pairs.sum()))


def mode_law(labels: torch.Tensor) -> tuple[np.ndarray, float]:
    """The exact law of the modes of images stacked from digits with these labels,
    p(mode) = q(d0) q(d1) q(d2) with q the digits' shares, and its KL from uniform."""
    q = np.bincount(labels.numpy(), minlength=10) / len(labels)
    p = np.einsum("i,j,k->ijk", q, q, q).ravel()
    return p, float((p * np.log(K * p)).sum())


def test_real_stacked_images_cover_the_modes_uniform_sampling_predicts(session, mnist_root):
    test = load_mnist("mnist", str(mnist_root), "test", False, True, "cpu")
    n = 2000
    images, true_modes = stack_digits(test.images, test.labels, n, seed=0)
    p, kl_p = mode_law(test.labels)  # KL(p) ~0.005: the split is not quite balanced
    mean, sd = expected_modes(p, n)  # 865 ± 9 for uniform digits
    # Plug-in KL from uniform is log K − H(p̂), and E H(p̂) <= H(p) by Jensen, with a bias of
    # about (K − 1) / 2n (Miller–Madow): bounds of [KL(p), KL(p) + (K − 1) / n].
    classified = classified_modes(session, images)
    for modes in (true_modes, classified):
        assert abs(modes_covered(modes) - mean) < 4 * sd, (modes_covered(modes), mean, sd)
        assert kl_p <= reverse_kl(modes) <= kl_p + (K - 1) / n
    # The classifier reads the channels in order: ~0.95 per digit makes ~0.86 of the modes
    # right (a shuffled channel order or digit order would agree on ~1 %)
    agree = (classified == true_modes).double().mean()
    assert agree > 0.75, float(agree)
    # what training and ganlab-eval compute (session.modes) is the same reading
    metrics = session.modes(serve(images), n)
    assert metrics == {
        "modes_covered": modes_covered(classified),
        "reverse_kl": reverse_kl(classified),
    }


def test_the_mode_floor_reads_real_stacked_images_of_the_floor_set(mnist_root, ganlab_cache):
    with_floor = EvaluationSession(mnist_root, torch.device("cpu"), 1000, floor=True)
    n = 2000
    floor = with_floor.mode_floor(n)
    # stacked from the floor set's digits (the training images): their exact law, and the
    # bounds of the test above, for the classifier's reading of them
    p, kl_p = mode_law(with_floor.floor_set.labels)
    mean, sd = expected_modes(p, n)
    assert abs(floor["modes_covered"] - mean) < 4 * sd, (floor, mean, sd)
    assert kl_p <= floor["reverse_kl"] <= kl_p + (K - 1) / n, floor
    assert with_floor.mode_floor(n) is floor  # computed once per sample count
    assert (
        EvaluationSession(mnist_root, torch.device("cpu"), 100, floor=False).mode_floor(n) is None
    )


def classified_modes(session: EvaluationSession, images: torch.Tensor) -> torch.Tensor:
    logits = session.evaluator.embed(per_channel(serve(images)), 3 * len(images)).logits
    return mode_ids(logits.argmax(1).view(-1, 3))


def test_a_generator_of_one_image_covers_one_mode(session, mnist_root):
    test = load_mnist("mnist", str(mnist_root), "test", False, True, "cpu")
    one = test.images[:3, 0][None].float().div(127.5).sub(1)  # the first three digits, one image

    def generate(batch: int) -> torch.Tensor:
        return one.expand(batch, -1, -1, -1)

    metrics = session.modes(generate, 500)
    assert metrics["modes_covered"] == 1
    assert metrics["reverse_kl"] == pytest.approx(math.log(K), rel=1e-12)


# --- packing ----------------------------------------------------------------------------


def test_pack_concatenates_consecutive_samples_along_channels():
    x = torch.randn(6, 3, 28, 28)
    packed = pack(x, 2)
    assert packed.shape == (3, 6, 28, 28)
    for p, k, c in itertools.product(range(3), range(2), range(3)):
        assert torch.equal(packed[p, 3 * k + c], x[2 * p + k, c])
    assert pack(x, 1) is x


@pytest.mark.parametrize("model", ["mlp", "dcgan"])
def test_a_packed_d_scores_packs_of_m_images_of_c_channels(make_cfg, model):
    cfg = make_cfg(*tiny(model), "model.discriminator.pack=4")
    G, D = build_models(cfg.model, image_channels=3)
    first = next(m for m in D.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear))
    width = first.in_channels if model == "dcgan" else first.in_features / 784
    assert width == 4 * 3 and D.pack == 4
    x = G(torch.randn(8, cfg.model.z_dim))
    assert x.shape == (8, 3, 28, 28)
    assert D(pack(x, 4)).shape == (2,)


def test_the_trainer_feeds_d_whole_packs_and_the_gp_one_alpha_per_pack(make_cfg, mnist_root):
    cfg = make_cfg(
        *tiny("dcgan"),
        *STACKED,
        f"data.root={mnist_root}",
        "loss=wgan_gp",
        "model.discriminator.pack=2",
        "trainer.n_critic=1",
    )
    seed_everything(0)
    trainer = build_trainer(cfg, torch.device("cpu"))
    seen: list[torch.Tensor] = []
    trainer.D.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    trainer.d_step()
    trainer.g_step()
    assert [tuple(x.shape) for x in seen] == [(8, 6, 28, 28)] * 4  # real, fake, x̂; G's fake
    real, fake, x_hat = seen[:3]
    # x̂ = α·real + (1 − α)·fake with one α per pack: solve for α where real and fake differ
    alpha = (x_hat - fake) / (real - fake)
    usable = (real - fake).abs() > 0.5
    for p in range(8):
        values = alpha[p][usable[p]]
        assert values.numel() > 100 and torch.allclose(values, values[0], atol=1e-4)
    assert alpha[:, 0][usable[:, 0]].std() > 0.05  # the packs' α differ


def test_packed_stacked_runs_train_end_to_end(make_cfg, tmp_path, mnist_root):
    for loss in ("ragan", "wgan_gp"):
        run = tmp_path / loss
        cfg = make_cfg(
            *tiny("dcgan"),
            *STACKED,
            f"data.root={mnist_root}",
            f"loss={loss}",
            "model.discriminator.pack=2",
            "trainer.steps=2",
            *(["metrics.enabled=true", "metrics.n_samples=200", "metrics.mode_samples=300"]),
            f"metrics.floor={loss == 'wgan_gp'}",  # one run with the real floors beside
        )
        train(cfg, run)
        results = read_results(run)
        assert results["status"] == "completed" and results["steps"] == 2
        assert results["data"]["num_images"] == 512
        assert results["data"]["source"].startswith("stacked_mnist")
        assert 1 <= results["metrics"]["modes_covered"] <= 300
        assert 0 <= results["metrics"]["reverse_kl"] <= math.log(K)
        assert ("modes_covered_floor" in results["metrics"]) == (loss == "wgan_gp")
        assert Image.open(run / "samples" / "step_000002.png").mode == "RGB"
        D_state = load_checkpoint(run / "checkpoints" / "last.pt")["D"]
        assert D_state["body.0.weight"].shape[1] == 2 * 3  # pack · channels
    # TensorBoard and the sweep report carry the mode metrics, each the right way round
    scalars = read_scalars(run, ["metrics/modes_covered", "metrics_final/reverse_kl"])
    assert scalars["metrics/modes_covered"][2] == results["metrics"]["modes_covered"]
    assert scalars["metrics_final/reverse_kl"][2] == pytest.approx(results["metrics"]["reverse_kl"])
    found = find_metrics(collect_runs(tmp_path))
    assert {"modes_covered", "reverse_kl"} <= set(found)
    assert (better("modes_covered"), better("reverse_kl")) == ("higher", "lower")
    # the checkpoint rebuilds a 3-channel G; ganlab-eval measures it as training did
    G, _, state = load_generator(run, torch.device("cpu"))
    assert G(torch.randn(2, state["config"]["model"]["z_dim"])).shape == (2, 3, 28, 28)
    report = evaluate(run, n=200, data_root=str(mnist_root))
    assert report["metrics"]["modes_covered"] == results["metrics"]["modes_covered"]
    # the real floor of 300 stacked images: the modes 300 uniform draws hit (259 ± 8), a KL
    # of at least log(K / modes) (H(p̂) <= log modes), and ganlab-eval's the same as training's
    real = {key: results["metrics"][f"{key}_floor"] for key in ("modes_covered", "reverse_kl")}
    mean, sd = expected_modes(np.full(K, 1 / K), 300)
    assert abs(real["modes_covered"] - mean) < 4 * sd, (real, mean, sd)
    assert math.log(K / real["modes_covered"]) <= real["reverse_kl"] < 1.5, real
    assert {key: report["floor"][key] for key in real} == real
    assert "modes_covered_floor" in find_metrics(collect_runs(tmp_path))
    assert report["metrics"]["fid"] == pytest.approx(results["metrics"]["fid"], rel=1e-9)
    out = tmp_path / "s.npz"
    stream_npz(lambda b: G(torch.randn(b, 16)).detach(), 5, out)
    assert np.load(out)["images"].shape == (5, 3, 28, 28)


# --- config -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "key", "says"),
    [
        (["model.discriminator.pack=0"], "model.discriminator.pack", "integer >= 1"),
        (["model.discriminator.pack=3"], "model.discriminator.pack", "trainer.batch_size=64"),
        (["model.discriminator.pack=2", "cond=projection"], "model.discriminator.pack", "cond"),
        (["data=stacked_mnist", "cond=acgan"], "cond.name", "1,000 modes"),
        (["data.num_images=1000"], "data.num_images", "only data=stacked_mnist"),
        (["data=stacked_mnist", "data.num_images=0"], "data.num_images", ">= 1"),
        (["data=stacked_mnist", "+aux.perceptual=1"], "aux.perceptual", "1-channel"),
    ],
)
def test_bad_stacked_or_packed_settings_fail_early_with_one_line(make_cfg, overrides, key, says):
    with pytest.raises(GanlabError, match=f"invalid value for {key}:") as error:
        validate(make_cfg(*overrides))
    assert says in str(error.value) and "\n" not in str(error.value)


def test_the_stacked_mnist_experiment_sweeps_every_loss_and_both_packings(make_cfg):
    cfg = make_cfg("+experiment=stacked_mnist", return_hydra_config=True)
    assert (cfg.data.name, cfg.data.num_images, cfg.data.seed) == ("stacked_mnist", 128000, 0)
    assert cfg.model.name == "dcgan"
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    params = cfg.hydra.sweeper.params
    assert (params.loss, params["model.discriminator.pack"], params.seed) == (
        "glob(*)",
        "1,2",
        "0,1,2",
    )
    assert cfg.metrics.mode_samples == 26_000
    validate(make_cfg("data=stacked_mnist", "model.discriminator.pack=2"))


def test_a_checkpoint_from_before_packing_resumes_and_another_pack_does_not(tmp_path):
    # configs saved before model.discriminator.pack existed hold no pack: it meant 1
    old = {"model": {"name": "mlp", "discriminator": {"hidden": [8], "spectral_norm": False}}}
    new = {"model": {"name": "mlp", "discriminator": {"hidden": [8], "spectral_norm": False}}}
    new["model"]["discriminator"]["pack"] = 1
    check_identity(old, new, tmp_path / "last.pt")
    new["model"]["discriminator"]["pack"] = 2
    with pytest.raises(GanlabError, match="model.discriminator="):
        check_identity(old, new, tmp_path / "last.pt")


def test_an_mnist_checkpoint_does_not_resume_into_a_stacked_run(make_cfg, tmp_path):
    """A named refusal, not the generic "cannot restore" of mismatched weight shapes."""
    plain = OmegaConf.to_container(make_cfg(), resolve=True)
    stacked = OmegaConf.to_container(make_cfg("data=stacked_mnist"), resolve=True)
    with pytest.raises(GanlabError, match=r"data.num_images=None, this run has data.num_images="):
        check_identity(plain, stacked, tmp_path / "last.pt")
    other = OmegaConf.to_container(make_cfg("data=stacked_mnist", "data.seed=7"), resolve=True)
    with pytest.raises(GanlabError, match="data.seed"):
        check_identity(stacked, other, tmp_path / "last.pt")
    check_identity(stacked, stacked, tmp_path / "last.pt")


def test_data_mnist_leaves_the_stacked_keys_unset(make_cfg):
    cfg = make_cfg()
    assert (cfg.data.num_images, cfg.data.seed, cfg.model.discriminator.pack) == (None, None, 1)
