"""ganlab.models: G and D built from the config (D returns raw scores), a bad argument named
by its key, spectral normalisation and the DCGAN initialisation."""

from __future__ import annotations

import pytest
import torch

from ganlab.build import build_trainer
from ganlab.errors import GanlabError
from ganlab.models import build_models
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
