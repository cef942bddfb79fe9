"""End to end on CPU: every loss x model writes the run-dir contract (its pictures too), the
newer options train, learning happens."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image, ImageSequence
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ganlab.build import build_trainer
from ganlab.data import load_mnist
from ganlab.losses import LOSSES
from ganlab.rundir import read_results
from ganlab.train import train
from tests.conftest import GRID_RUN, TINY_RUN, tiny


def read_events(tb_dir):
    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


@pytest.mark.parametrize("model", ["mlp", "dcgan"])
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_loss_and_model_writes_the_run_dir(make_cfg, tmp_path, loss, model):
    cfg = make_cfg(
        *tiny(model),
        f"loss={loss}",
        "data=mnist_sample",
        "trainer.steps=4",
        "trainer.log_every=2",
        "trainer.sample_every=2",
        "trainer.ckpt_every=2",
    )
    objective = train(cfg, tmp_path)

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["loss"] == loss and results["model"] == model
    assert results["steps"] == 4 and results["seed"] == 0
    assert results["data"] == {"source": "mnist_sample", "num_images": 5000}
    assert results["throughput"]["it_per_s"] > 0
    assert math.isfinite(results["final"]["loss_d"]) and math.isfinite(results["final"]["loss_g"])
    assert objective == results["final"]["loss_g"]

    assert (tmp_path / "checkpoints" / "last.pt").is_file()
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == [
        "step_000002.png",
        "step_000004.png",
    ]
    assert (tmp_path / "samples" / "step_000004.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    events = read_events(tmp_path / "tb")
    tags = events.Tags()
    for tag in ("loss/D", "loss/G", "D/real", "D/fake", "perf/it_per_s"):
        assert tag in tags["scalars"], tag
        assert [e.step for e in events.Scalars(tag)] == [2, 4]
    if loss == "wgan_gp":
        assert "penalty/gp" in tags["scalars"]
    if loss in ("wgan", "wgan_gp"):
        assert "wasserstein/estimate" in tags["scalars"]
    assert tags["images"] == ["samples"]
    assert [e.step for e in events.Images("samples")] == [2, 4]
    # The logged loss is the mean of what was trained on: finite and equal to results.json.
    assert events.Scalars("loss/G")[-1].value == pytest.approx(results["final"]["loss_g"])


def test_grids_are_saved_enlarged_and_progress_gif_has_a_frame_per_grid(make_cfg, tmp_path):
    train(make_cfg(*GRID_RUN, "trainer.steps=6"), tmp_path)
    grids = sorted((tmp_path / "samples").glob("*.png"))
    assert [p.name for p in grids] == ["step_000002.png", "step_000004.png", "step_000006.png"]
    with Image.open(grids[0]) as png:
        assert png.size == (3 * 242, 3 * 242)  # 8 x 8 digits of 28 px, 2 px apart, x3
    with Image.open(tmp_path / "progress.gif") as gif:
        frames = list(ImageSequence.Iterator(gif))
        assert len(frames) == len(grids) == gif.n_frames
        assert gif.size[0] == 3 * 242 and gif.info.get("loop") == 0
    # TensorBoard keeps the grid at its own size
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    acc.Reload()
    image = acc.Images("samples")[-1]
    assert (image.width, image.height) == (242, 242)


@pytest.mark.parametrize(
    "extra",
    [
        ["penalty=r1", "penalty.every=2", "model.discriminator.spectral_norm=true"],
        ["loss=hinge", "penalty=dragan", "trainer.ema=0.99"],
        ["loss=wgan", "recipe=paper"],
        ["loss=ragan", "penalty=r2", "model.init=dcgan"],
    ],
)
def test_new_options_train_end_to_end(make_cfg, tmp_path, extra):
    train(make_cfg(*TINY_RUN, "trainer.steps=6", "trainer.log_every=3", *extra), tmp_path)
    results = read_results(tmp_path)
    assert results["status"] == "completed" and results["steps"] == 6


def pixel_stats(images: torch.Tensor) -> torch.Tensor:
    """(mean intensity, fraction of ink pixels) of images in [-1, 1]."""
    x = (images + 1) / 2
    return torch.stack([x.mean(), (x > 0.5).float().mean()])


def test_short_vanilla_mlp_run_moves_pixel_statistics_toward_real(make_cfg, shared_mnist, tmp_path):
    real = load_mnist("mnist", str(shared_mnist), "test", False, True, "cpu")
    real_stats = pixel_stats(real.images.float() / 127.5 - 1)  # about (0.13, 0.10)

    overrides = [
        "model=mlp",
        "loss=vanilla",
        f"data.root={shared_mnist}",
        "data.split=test",
        "data.download=false",
        "trainer.progress=false",
        "trainer.log_every=0",
        "trainer.sample_every=0",
        "trainer.ckpt_every=0",
    ]
    # What an untrained generator gives, over several initialisations: the bar to beat.
    random_gaps = []
    for seed in range(5):
        torch.manual_seed(seed)
        trainer = build_trainer(make_cfg(*overrides, f"seed={seed}"), torch.device("cpu"))
        fake = trainer.generate(torch.randn(2000, trainer.z_dim))
        random_gaps.append((pixel_stats(fake) - real_stats).abs().max().item())

    # (the pixel statistics are the measure here: no FID evaluation needed)
    train(make_cfg(*overrides, "trainer.steps=1000", "metrics.enabled=false"), tmp_path)
    trainer = build_trainer(make_cfg(*overrides), torch.device("cpu"))
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    trainer.G.load_state_dict(state["G"])
    torch.manual_seed(123)
    trained_gap = (
        (pixel_stats(trainer.generate(torch.randn(2000, trainer.z_dim))) - real_stats)
        .abs()
        .max()
        .item()
    )
    print(f"real {real_stats.tolist()} random gaps {random_gaps} trained gap {trained_gap}")
    assert trained_gap < min(random_gaps) / 3


def test_metrics_run_periodically_and_at_the_end(make_cfg, shared_mnist, tmp_path, ganlab_cache):
    cfg = make_cfg(
        *tiny("mlp"),
        "metrics.enabled=true",
        "metrics.n_samples=500",
        "metrics.eval_samples=200",
        "trainer.eval_every=4",
        "trainer.steps=8",
        "trainer.log_every=4",
        f"data.root={shared_mnist}",
        "data.split=test",
        "data.download=false",
    )
    objective = train(cfg, tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    metrics = results["metrics"]
    for key in ("fid", "kid", "mnist_score", "classes_covered", "precision", "recall", "fid_floor"):
        assert math.isfinite(metrics[key]), key
    assert objective == metrics["fid"]  # the sweep objective
    assert metrics["fid"] > metrics["fid_floor"]  # 8 steps of training are far from real
    evaluation = results["evaluation"]
    assert evaluation["n_samples"] == 500 and evaluation["step"] == 8
    assert evaluation["reference"] == "mnist/test" and len(evaluation["classifier_sha256"]) == 64

    events = read_events(tmp_path / "tb")
    # One curve at one n (metrics.eval_samples, the final step included); the final evaluation
    # at metrics.n_samples under its own tag, equal to results.json.
    assert [e.step for e in events.Scalars("metrics/fid")] == [4, 8]
    assert [e.step for e in events.Scalars("metrics_final/fid")] == [8]
    assert events.Scalars("metrics_final/fid")[-1].value == pytest.approx(metrics["fid"])
    assert events.Scalars("metrics/fid")[-1].value != pytest.approx(metrics["fid"])  # n=200
