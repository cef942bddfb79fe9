"""The EMA generator: one update against its definition in float64, decay 0, its batch-norm
statistics, a bit-exact resume, sampling from it, and the raw generator's metrics beside it."""

from __future__ import annotations

import pytest
import torch

from ganlab.build import load_generator
from ganlab.checkpoint import GENERATOR_FILE, save_generator
from ganlab.ema import BN_BATCH_SIZE, BN_BATCHES, BN_SEED, EMA, recalibrate_batchnorm
from ganlab.errors import GanlabError
from ganlab.models import build_models
from ganlab.rundir import read_results
from ganlab.train import train
from tests.conftest import TINY_RUN, tiny


def test_one_ema_update_is_the_weighted_average_in_float64():
    G, _ = build_models({"name": "mlp", "z_dim": 4, "generator": {"hidden": [8]}})
    G = G.double()
    ema = EMA(G, decay=0.999, z_dim=4)
    old = [p.detach().clone() for p in ema.G.parameters()]
    with torch.no_grad():
        for p in G.parameters():
            p.add_(torch.randn_like(p))
    r = ema.rate()
    assert r == pytest.approx(min(0.999, 1 / 10))  # the warm-up at t = 0
    ema.update(G)
    for averaged, o, new in zip(ema.G.parameters(), old, G.parameters(), strict=True):
        torch.testing.assert_close(averaged, r * o + (1 - r) * new, rtol=0, atol=1e-15)
    assert ema.rate() == pytest.approx(2 / 11)  # t = 1


def test_decay_zero_makes_the_ema_the_raw_generator():
    G, _ = build_models({"name": "dcgan", "z_dim": 4, "generator": {"channels": 4}})
    ema = EMA(G, decay=0.0, z_dim=4)
    with torch.no_grad():
        for p in G.parameters():
            p.mul_(3).add_(1)
    ema.update(G)
    assert all(torch.equal(a, b) for a, b in zip(ema.G.parameters(), G.parameters(), strict=True))


def test_ema_batchnorm_statistics_are_those_of_its_own_activations():
    G, _ = build_models({"name": "dcgan", "z_dim": 4, "generator": {"channels": 4}})
    G.bn_probe = None
    recalibrate_batchnorm(G, 4, torch.device("cpu"))
    first_bn = G.net[1]  # BatchNorm2d after the first transposed conv
    # Independently: the mean over the same noise batches of the pre-BN activations' means.
    rng = torch.Generator().manual_seed(BN_SEED)
    means, variances = [], []
    with torch.no_grad():
        for _ in range(BN_BATCHES):
            z = torch.randn(BN_BATCH_SIZE, 4, generator=rng)
            h = G.net[0](z.view(-1, 4, 1, 1))
            means.append(h.mean((0, 2, 3)))
            variances.append(h.var((0, 2, 3), unbiased=True))
    torch.testing.assert_close(first_bn.running_mean, torch.stack(means).mean(0))
    torch.testing.assert_close(first_bn.running_var, torch.stack(variances).mean(0))
    assert not G.training


def test_ema_resume_is_bit_exact_and_sampling_uses_it(make_cfg, tmp_path):
    common = [*tiny("dcgan"), "data=mnist_sample", "trainer.sample_every=0", "trainer.ema=0.9"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(make_cfg(*common, "trainer.steps=6", "trainer.ckpt_every=3"), straight)
    train(make_cfg(*common, "trainer.steps=3", "trainer.ckpt_every=3"), resumed)
    train(make_cfg(*common, "trainer.steps=6", "trainer.resume=auto"), resumed)
    a = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)["G_ema"]
    b = torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)["G_ema"]
    assert a["updates"] == b["updates"] == 6
    assert all(torch.equal(a["G"][k], b["G"][k]) for k in a["G"])
    G, _, state = load_generator(straight, torch.device("cpu"))
    assert state["generator"] == "ema"
    raw, _, state = load_generator(straight, torch.device("cpu"), generator="raw")
    assert state["generator"] == "raw"
    z = torch.randn(4, 16)
    assert not torch.equal(G(z), raw(z))


def test_an_ema_run_reports_the_raw_generator_beside_the_ema_one(make_cfg, tmp_path, ganlab_cache):
    cfg = make_cfg(
        *TINY_RUN,
        "trainer.steps=4",
        "trainer.ema=0.5",
        "metrics.enabled=true",
        "metrics.n_samples=200",
        "metrics.floor=false",
    )
    train(cfg, tmp_path)
    results = read_results(tmp_path)
    assert results["evaluation"]["generator"] == "ema"
    assert set(results["metrics_raw"]) <= set(results["metrics"])
    assert results["metrics_raw"]["fid"] != results["metrics"]["fid"]


def test_the_kept_generator_alone_draws_what_the_checkpoint_draws(make_cfg, tmp_path):
    """scripts/slim_runs.py keeps a study's final G as GENERATOR_FILE (float16, the EMA G):
    loaded back it draws the checkpoint's EMA G's images to float16 precision, in a file a
    fraction of the checkpoint's size, and it says so when asked for the raw G it lacks."""
    cfg = make_cfg(*tiny("dcgan"), "data=mnist_sample", "trainer.sample_every=0",
                   "trainer.ema=0.9", "trainer.steps=4")  # fmt: skip
    train(cfg, tmp_path)
    last = tmp_path / "checkpoints" / "last.pt"
    kept = tmp_path / GENERATOR_FILE
    save_generator(torch.load(last, weights_only=True), kept)
    assert kept.stat().st_size < last.stat().st_size / 3
    G, _, state = load_generator(last, torch.device("cpu"))
    small, _, small_state = load_generator(kept, torch.device("cpu"))
    assert state["generator"] == small_state["generator"] == "ema"
    assert small_state["step"] == 4 and small_state["config"] == state["config"]
    assert all(v.dtype != torch.float32 for v in torch.load(kept)["G_ema"]["G"].values())
    z = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(small(z), G(z), atol=1e-2, rtol=0)
    with pytest.raises(GanlabError, match="only the EMA generator"):
        load_generator(kept, torch.device("cpu"), generator="raw")
