"""Each loss against a float64 reference written from ARCHITECTURE.md's formula table.

The reference uses SciPy's log_expit (a stable log σ) on float64 NumPy arrays, independent
of the torch softplus forms under test.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import log_expit

from ganlab.errors import GanlabError
from ganlab.losses import LOSSES, get_loss


def log_sig(x):
    return log_expit(x)


def log_one_minus_sig(x):  # log(1 − σ(x)) = log σ(−x)
    return log_expit(-x)


# name: (D minimises, G minimises), straight from the table; r, f float64 arrays.
REFERENCE = {
    "minimax": (
        lambda r, f: np.mean(-log_sig(r)) + np.mean(-log_one_minus_sig(f)),
        lambda r, f: np.mean(log_one_minus_sig(f)),
    ),
    "vanilla": (
        lambda r, f: np.mean(-log_sig(r)) + np.mean(-log_one_minus_sig(f)),
        lambda r, f: np.mean(-log_sig(f)),
    ),
    "lsgan": (
        lambda r, f: np.mean((r - 1) ** 2) + np.mean(f**2),
        lambda r, f: np.mean((f - 1) ** 2),
    ),
    "wgan": (lambda r, f: np.mean(f) - np.mean(r), lambda r, f: -np.mean(f)),
    "wgan_gp": (lambda r, f: np.mean(f) - np.mean(r), lambda r, f: -np.mean(f)),
    "rsgan": (
        lambda r, f: np.mean(-log_sig(r - f)),
        lambda r, f: np.mean(-log_sig(f - r)),
    ),
    "ragan": (
        lambda r, f: np.mean(-log_sig(r - f.mean())) + np.mean(-log_one_minus_sig(f - r.mean())),
        lambda r, f: np.mean(-log_sig(f - r.mean())) + np.mean(-log_one_minus_sig(r - f.mean())),
    ),
    "hinge": (
        lambda r, f: np.mean(np.maximum(0, 1 - r)) + np.mean(np.maximum(0, 1 + f)),
        lambda r, f: -np.mean(f),
    ),
}


def test_every_loss_has_a_reference():
    assert (
        set(LOSSES)
        == set(REFERENCE)
        == {
            "minimax",
            "vanilla",
            "lsgan",
            "wgan",
            "wgan_gp",
            "rsgan",
            "ragan",
            "hinge",
        }
    )


def scores(seed: int, scale: float, n: int = 257) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(0, scale, n), rng.normal(0.3, scale, n)


@pytest.mark.parametrize("name", sorted(REFERENCE))
@pytest.mark.parametrize("seed,scale", [(0, 1.0), (1, 5.0), (2, 30.0)])
def test_loss_matches_float64_reference(name, seed, scale):
    r, f = scores(seed, scale)
    loss = get_loss(name)
    rt, ft = torch.tensor(r, dtype=torch.float32), torch.tensor(f, dtype=torch.float32)
    ref_d, ref_g = (
        fn(r.astype(np.float32).astype(np.float64), f.astype(np.float32).astype(np.float64))
        for fn in REFERENCE[name]
    )
    np.testing.assert_allclose(loss.d(rt, ft).item(), ref_d, rtol=2e-5, atol=1e-5)
    np.testing.assert_allclose(loss.g(ft, rt).item(), ref_g, rtol=2e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_loss_in_float64_is_exact(name):
    r, f = scores(3, 4.0)
    loss = get_loss(name)
    rt, ft = torch.tensor(r), torch.tensor(f)  # float64 through the torch code
    np.testing.assert_allclose(loss.d(rt, ft).item(), REFERENCE[name][0](r, f), rtol=1e-12)
    np.testing.assert_allclose(loss.g(ft, rt).item(), REFERENCE[name][1](r, f), rtol=1e-12)


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_finite_values_and_gradients_at_score_100(name):
    # Extreme, confidently wrong and confidently right scores: log(sigmoid) would give -inf.
    r = torch.tensor([100.0, -100.0, 100.0, -100.0], requires_grad=True)
    f = torch.tensor([-100.0, 100.0, 100.0, -100.0], requires_grad=True)
    loss = get_loss(name)
    d, g = loss.d(r, f), loss.g(f, r)
    (gr, gf) = torch.autograd.grad(d + g, (r, f))
    for t in (d, g, gr, gf):
        assert torch.isfinite(t).all(), (name, t)
    ref_d, ref_g = (
        fn(r.detach().double().numpy(), f.detach().double().numpy()) for fn in REFERENCE[name]
    )
    np.testing.assert_allclose(d.item(), ref_d, rtol=1e-6)
    np.testing.assert_allclose(g.item(), ref_g, rtol=1e-6)


def test_minimax_generator_saturates_where_vanilla_does_not():
    # The documented difference: with D confident that f is fake, the saturating G loss has a
    # vanishing gradient, the non-saturating one a gradient of about -1 per sample.
    f = torch.full((8,), -20.0, requires_grad=True)
    (g_minimax,) = torch.autograd.grad(get_loss("minimax").g(f, None), f)
    (g_vanilla,) = torch.autograd.grad(get_loss("vanilla").g(f, None), f)
    assert g_minimax.abs().max() < 1e-8
    np.testing.assert_allclose(g_vanilla.numpy(), -1 / 8, rtol=1e-6)


def test_unknown_loss_lists_choices():
    with pytest.raises(GanlabError, match="hinge"):
        get_loss("hinje")
