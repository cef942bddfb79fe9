"""ganlab.models: G and D built from the config (D returns raw scores), a bad argument named
by its key, spectral normalisation, the DCGAN initialisation, and the MLP D's options against
mode collapse (minibatch standard deviation, dropout)."""

from __future__ import annotations

import pytest
import torch

from ganlab.build import build_trainer
from ganlab.errors import GanlabError
from ganlab.models import build_models
from ganlab.models.layers import MinibatchStd
from ganlab.train import train
from tests.conftest import tiny


@pytest.mark.parametrize("model", ["mlp", "dcgan"])
def test_models_instantiate_and_d_returns_raw_scores(make_cfg, model):
    cfg = make_cfg(f"model={model}", "model.z_dim=12")
    G, D = build_models(cfg.model)
    z = torch.randn(5, 12)
    x = G(z)
    assert x.shape == (5, 1, 28, 28) and x.abs().max() <= 1
    scores = D(x)
    assert scores.shape == (5,)
    # No sigmoid in D: scores leave [0, 1] once the output layer is scaled up.
    with torch.no_grad():
        list(D.parameters())[-1].add_(10.0)
    assert D(x).min() > 1


def test_a_bad_model_argument_is_reported_with_its_key(make_cfg):
    cfg = make_cfg("model=mlp", "+model.generator.width=3")
    with pytest.raises(GanlabError, match="model.generator"):
        build_models(cfg.model)


@pytest.mark.parametrize("model", ["mlp", "dcgan"])
def test_spectral_norm_keeps_each_d_layer_at_unit_top_singular_value(make_cfg, model):
    cfg = make_cfg(*tiny(model), "data=mnist_sample", "model.discriminator.spectral_norm=true")
    trainer = build_trainer(cfg, torch.device("cpu"))
    for _ in range(5):
        trainer.d_step()
        trainer.g_step()
    layers = [m for m in trainer.D.modules() if hasattr(m, "parametrizations")]
    assert len(layers) >= 3
    trainer.D.eval()  # no further power iteration: the weight as D now uses it
    for layer in layers:
        weight = layer.weight.detach().flatten(1)
        assert torch.linalg.matrix_norm(weight, ord=2).item() == pytest.approx(1.0, abs=0.05)


def test_dcgan_init_draws_weights_from_n_0_002(make_cfg):
    cfg = make_cfg("model=dcgan", "model.init=dcgan")
    G, D = build_models(cfg.model)
    conv = G.net[3].weight  # 128 x 64 x 4 x 4 = 131k draws
    assert conv.mean().abs() < 1e-3 and conv.std().item() == pytest.approx(0.02, rel=0.02)
    assert G.net[1].weight.mean().item() == pytest.approx(1.0, abs=0.01)


def test_minibatch_std_appends_each_groups_mean_feature_spread():
    """Against a float64 loop: sample i is in group i mod N/g (ProGAN's reshape)."""
    h = torch.randn(12, 5, dtype=torch.float64)
    out = MinibatchStd(4)(h)
    assert out.shape == (12, 6) and torch.equal(out[:, :5], h)
    for i in range(12):
        members = h[[j for j in range(12) if j % 3 == i % 3]]  # 3 groups of 4
        spread = ((members - members.mean(0)).pow(2).mean(0) + 1e-8).sqrt().mean()
        assert out[i, 5].item() == pytest.approx(spread.item(), rel=1e-12)
    assert MinibatchStd(4)(h[:2]).shape == (2, 6)  # fewer samples than a group: one group
    with pytest.raises(ValueError, match="not groups of 4"):
        MinibatchStd(4)(h[:6])


def test_the_mlp_d_sees_a_collapsed_batch_through_its_minibatch_std(make_cfg):
    """Identical samples give the appended feature ~0: the score changes although every
    sample alone is the same image, which a per-sample D cannot tell apart."""
    cfg = make_cfg("model=mlp", "model.discriminator.minibatch_std=4")
    _, D = build_models(cfg.model)
    x = torch.rand(8, 1, 28, 28) * 2 - 1
    same = x[:1].expand(8, -1, -1, -1)  # sample 0 among copies of itself, or among others
    assert not torch.allclose(D(same)[0], D(x)[0])
    _, plain = build_models(make_cfg("model=mlp").model)
    assert torch.allclose(plain(same)[0], plain(x)[0])


def test_dropout_in_the_mlp_d_is_off_by_default_and_draws_in_training(make_cfg):
    _, D = build_models(make_cfg("model=mlp").model)
    assert not any(isinstance(m, torch.nn.Dropout) for m in D.modules())
    _, D = build_models(make_cfg("model=mlp", "model.discriminator.dropout=0.5").model)
    assert sum(isinstance(m, torch.nn.Dropout) for m in D.modules()) == 2
    x = torch.rand(4, 1, 28, 28)
    torch.manual_seed(0)
    assert not torch.equal(D(x), D(x))  # a fresh mask per pass
    D.eval()
    assert torch.equal(D(x), D(x))


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("model.discriminator.dropout=1.0", "a rate in"),
        ("model.discriminator.dropout=true", "a rate in"),
        ("model.discriminator.minibatch_std=-2", "0 \\(off\\) or >= 1"),
        ("model.discriminator.minibatch_std=0.5", "0 \\(off\\) or >= 1"),
    ],
)
def test_a_bad_d_option_is_one_error_naming_it(make_cfg, override, named):
    with pytest.raises(GanlabError, match=f"model.discriminator.*{named}"):
        build_models(make_cfg("model=mlp", override).model)


def test_a_minibatch_group_that_does_not_divide_the_packs_is_refused(make_cfg, tmp_path):
    cfg = make_cfg("model=mlp", "data=mnist_sample", "model.discriminator.minibatch_std=5")
    with pytest.raises(GanlabError, match="minibatch_std: 5"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
