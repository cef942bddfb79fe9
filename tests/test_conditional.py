"""Class-conditional GANs (cond=projection, cond=acgan): bit-identical when off, every
combination trains, the labels really steer G, and the metrics mean what they say."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from ganlab.build import build_trainer, load_generator
from ganlab.data import load_mnist
from ganlab.errors import GanlabError
from ganlab.metrics.conditional import ConditionalMetrics, label_accuracy
from ganlab.metrics.evaluator import serve
from ganlab.metrics.session import EvaluationSession
from ganlab.rundir import read_results
from ganlab.runtime import seed_everything
from ganlab.train import train
from tests.conftest import tiny

# Weight statistics (sum, sum of squares of G's, then D's parameters, float64) after three
# iterations of tiny runs, printed by the code as it was before conditioning was added
# (commit da521c0): cond=none must train exactly as before.
BEFORE_CONDITIONING = {
    ("mlp", "vanilla"): [9.572258108895767, 297.8452928453471, -2.9611354351072805, 32.554814327],
    ("dcgan", "wgan_gp"): [26.674135496979943, 37.354417674807905, 1.079729803786904, 8.616608546],
    ("dcgan", "hinge"): [26.64751631580657, 37.35648598431889, 0.5416807600922766, 8.3170227778],
}


@pytest.mark.parametrize(("model", "loss"), sorted(BEFORE_CONDITIONING))
def test_cond_none_trains_exactly_as_before(make_cfg, model, loss):
    # the weights' layout the values above were recorded with: channels-last convolutions
    # round differently (5e-6 apart after wgan_gp's double backward)
    layout = "trainer.memory_format=contiguous"
    cfg = make_cfg(*tiny(model), "data=mnist_sample", f"loss={loss}", "cond=none", layout)
    seed_everything(0)
    trainer = build_trainer(cfg, torch.device("cpu"))
    for _ in range(3):
        for _ in range(cfg.trainer.n_critic):
            trainer.d_step()
        trainer.g_step()
    stats = []
    for net in (trainer.G, trainer.D):
        flat = torch.cat([p.detach().double().flatten() for p in net.parameters()])
        stats += [float(flat.sum()), float(flat.pow(2).sum())]
    np.testing.assert_allclose(stats, BEFORE_CONDITIONING[(model, loss)], rtol=1e-6)


@pytest.mark.parametrize("cond", ["projection", "acgan"])
@pytest.mark.parametrize("model", ["mlp", "dcgan"])
@pytest.mark.parametrize("loss", ["vanilla", "wgan_gp", "hinge"])
def test_every_conditioning_model_and_loss_trains(make_cfg, tmp_path, cond, model, loss):
    cfg = make_cfg(
        *tiny(model), "data=mnist_sample", f"loss={loss}", f"cond={cond}", "trainer.steps=2"
    )
    train(cfg, tmp_path)
    results = read_results(tmp_path)
    assert results["status"] == "completed" and results["steps"] == 2
    assert (tmp_path / "samples" / "step_000002.png").is_file()


@pytest.fixture(scope="module")
def session(mnist_root, ganlab_cache):
    return EvaluationSession(mnist_root, torch.device("cpu"), 1000, floor=False)


def test_label_accuracy_of_real_images_is_the_classifiers_accuracy(session, mnist_root):
    real = load_mnist("mnist", str(mnist_root), "test", False, True, "cpu")
    images, labels = real.images[:1000], real.labels[:1000]
    logits = session.evaluator.embed(serve(images), 1000).logits
    true = label_accuracy(logits, labels)
    assert true > 0.8 and true == pytest.approx(float((logits.argmax(1) == labels).double().mean()))
    shuffled = labels[torch.randperm(1000, generator=torch.Generator().manual_seed(0))]
    assert label_accuracy(logits, shuffled) == pytest.approx(0.1, abs=0.04)


def test_intra_fid_of_real_vs_real_is_near_zero_and_far_below_noise(session, mnist_root):
    metrics = ConditionalMetrics(session)
    real = load_mnist("mnist", str(mnist_root), "test", False, True, "cpu")
    x = real.images[:2000].float().div(127.5).sub(1)
    same = metrics(x, real.labels[:2000])  # (a subset of) the reference itself
    noisy = metrics((x + 0.8 * torch.randn_like(x)).clamp(-1, 1), real.labels[:2000])
    assert same["intra_fid"] < 0.2 * noisy["intra_fid"]
    assert same["label_accuracy"] > 0.8


def test_a_short_acgan_run_draws_the_asked_for_digits(
    make_cfg, tmp_path, mnist_root, ganlab_cache, session
):
    cfg = make_cfg(
        "model=mlp",
        "trainer.progress=false",
        f"data.root={mnist_root}",
        "data.download=false",
        "data.split=test",
        "cond=acgan",
        "trainer.steps=300",
        "trainer.sample_every=0",
        "metrics.n_samples=500",
        "metrics.floor=false",
    )
    train(cfg, tmp_path)
    metrics = read_results(tmp_path)["metrics"]
    # Chance is 0.1; 300 MLP steps gave 0.58 here (on the tests' quick classifier). A broken
    # label path can't pass: G's images read against labels other than the asked-for ones
    # (each shifted by one class) score no better than chance.
    assert metrics["label_accuracy"] > 0.3 and metrics["intra_fid"] > 0

    out = tmp_path / "sevens.npz"
    done = subprocess.run(
        [sys.executable, "-m", "ganlab.sample", str(tmp_path), "digit=7", "n=50", f"out={out}"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    saved = np.load(out)
    assert saved["images"].shape == (50, 28, 28) and (saved["labels"] == 7).all()
    # The labels steer G: for fixed z, images of different digits differ far more than
    # images of one digit for different z (a label path G ignores gives equal spreads).
    G, _, state = load_generator(tmp_path, torch.device("cpu"))
    z = torch.randn(
        8, state["config"]["model"]["z_dim"], generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        grid = torch.stack([G(z, torch.full((8,), d)) for d in range(10)])  # [digit, z, ...]
    labels = torch.arange(10).repeat_interleave(100)
    z = torch.randn(1000, z.shape[1], generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        logits = session.evaluator.embed(serve(G(z, labels)), 1000).logits
    asked, shifted = label_accuracy(logits, labels), label_accuracy(logits, (labels + 1) % 10)
    assert asked > 0.3 > 0.2 > shifted, (asked, shifted)
    across_digits = (grid - grid.mean(0, keepdim=True)).pow(2).mean()
    across_z = (grid - grid.mean(1, keepdim=True)).pow(2).mean()
    assert across_digits > 3 * across_z, (float(across_digits), float(across_z))


def test_an_unconditional_checkpoint_asked_for_a_digit_fails_with_one_line(make_cfg, tmp_path):
    train(make_cfg(*tiny("mlp"), "data=mnist_sample", "trainer.steps=2"), tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "ganlab.sample", str(tmp_path), "digit=3", "out=x.png"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: digit=3:")


def test_resume_with_another_cond_fails_early(make_cfg, tmp_path):
    train(make_cfg(*tiny("mlp"), "data=mnist_sample", "trainer.steps=2"), tmp_path)
    again = make_cfg(
        *tiny("mlp"), "data=mnist_sample", "trainer.steps=4", "trainer.resume=auto", "cond=acgan"
    )
    with pytest.raises(GanlabError, match="cond.name='none', this run has cond.name='acgan'"):
        train(again, tmp_path)


def test_the_grid_of_a_conditional_run_has_one_row_per_digit(make_cfg):
    from ganlab.run import fixed_noise

    z, y = fixed_noise(16, "projection", 0)
    assert z.shape == (80, 16) and y.tolist() == [d for d in range(10) for _ in range(8)]
    assert fixed_noise(16, "none", 0)[1] is None
