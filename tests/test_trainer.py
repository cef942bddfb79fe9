"""The trainer's update schedule and the WGAN constraint, on real configs."""

from __future__ import annotations

import pytest
import torch

from ganlab.build import build_trainer
from ganlab.checkpoint import load_checkpoint
from ganlab.rundir import read_results
from ganlab.train import train
from tests.conftest import tiny


def adam_steps(opt_state: dict) -> set[int]:
    return {int(s["step"]) for s in opt_state["state"].values()}


def test_n_critic_5_makes_15_d_updates_for_3_g_updates(make_cfg, tmp_path):
    cfg = make_cfg(*tiny("mlp"), "data=mnist_sample", "loss=wgan", "trainer.steps=3")
    assert cfg.trainer.n_critic == 5  # from the loss's own default
    train(cfg, tmp_path)
    # Independent count: Adam's own per-parameter step counters in the saved optimizers.
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert adam_steps(ckpt["opt_D"]) == {15}
    assert adam_steps(ckpt["opt_G"]) == {3}
    results = read_results(tmp_path)
    assert (results["steps"], results["d_updates"], results["n_critic"]) == (3, 15, 5)


def test_n_critic_override_beats_the_loss_default(make_cfg, tmp_path):
    cfg = make_cfg(
        *tiny("mlp"), "data=mnist_sample", "loss=hinge", "trainer.steps=2", "trainer.n_critic=3"
    )
    train(cfg, tmp_path)
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert adam_steps(ckpt["opt_D"]) == {6}


def test_wgan_d_weights_are_clipped_after_a_d_step(make_cfg):
    cfg = make_cfg(*tiny("dcgan"), "data=mnist_sample", "loss=wgan")
    torch.manual_seed(0)
    trainer = build_trainer(cfg, torch.device("cpu"))
    c = cfg.loss.clip
    assert c == 0.01
    assert max(p.abs().max().item() for p in trainer.D.parameters()) > c  # default init
    trainer.d_step()
    for p in trainer.D.parameters():
        assert p.abs().max().item() <= c


def test_g_step_leaves_d_untouched_and_d_step_leaves_g_untouched(make_cfg):
    cfg = make_cfg(*tiny("mlp"), "data=mnist_sample", "loss=ragan")
    torch.manual_seed(0)
    trainer = build_trainer(cfg, torch.device("cpu"))
    before_D = [p.clone() for p in trainer.D.parameters()]
    trainer.g_step()
    assert all(torch.equal(a, b) for a, b in zip(before_D, trainer.D.parameters(), strict=True))
    assert all(p.grad is None for p in trainer.D.parameters())  # no wasted D gradients
    before_G = [p.clone() for p in trainer.G.parameters()]
    trainer.d_step()
    assert all(torch.equal(a, b) for a, b in zip(before_G, trainer.G.parameters(), strict=True))


def test_a_cpu_budget_ends_the_run_completed_with_its_step_recorded(make_cfg, tmp_path):
    """trainer.cpu_minutes: the loop stops once it has used that much CPU time, writes its
    last grid and checkpoint, and results.json says where the budget ran out."""
    cfg = make_cfg(
        *tiny("mlp"), "data=mnist_sample", "trainer.steps=1000000", "trainer.cpu_minutes=0.02"
    )
    train(cfg, tmp_path)
    results = read_results(tmp_path)
    steps = results["steps"]
    assert results["status"] == "completed" and 1 <= steps < 1_000_000
    assert results["budget"] == {"cpu_minutes": 0.02, "spent_at_step": steps}
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == steps
    assert (tmp_path / "samples" / f"step_{steps:06d}.png").is_file()
    # the loop's own CPU time (results.json) reached the budget of 1.2 s
    assert results["throughput"]["cpu_s_per_it"] * steps >= 0.02 * 60


def test_a_cpu_budget_counts_every_sitting_of_a_resumed_run(make_cfg, tmp_path):
    """The checkpoint carries the CPU time spent: a finished budgeted run resumed with the
    same budget has nothing to do (a sweep run again skips it); a larger budget continues
    it, and the two sittings together use the larger budget, not a fresh one each."""
    run = [*tiny("mlp"), "data=mnist_sample", "trainer.steps=1000000", "trainer.resume=auto"]
    train(make_cfg(*run, "trainer.cpu_minutes=0.02"), tmp_path)
    first = read_results(tmp_path)
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["cpu_s"] >= 0.02 * 60  # the loop's CPU seconds, as results.json counts them
    # (the checkpoint is written a moment before the loop's clock stops)
    loop_s = first["throughput"]["cpu_s_per_it"] * first["steps"]
    assert state["cpu_s"] == pytest.approx(loop_s, rel=0.05)

    train(make_cfg(*run, "trainer.cpu_minutes=0.02"), tmp_path)  # the same budget: skipped
    assert read_results(tmp_path) == first

    train(make_cfg(*run, "trainer.cpu_minutes=0.04"), tmp_path)  # 1.2 s more, not 2.4 s
    second = read_results(tmp_path)
    total = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["cpu_s"]
    assert second["status"] == "completed" and second["steps"] > first["steps"]
    assert 0.04 * 60 <= total < 0.04 * 60 + 0.5 * (0.02 * 60)
    added = second["throughput"]["cpu_s_per_it"] * (second["steps"] - first["steps"])
    assert added == pytest.approx(total - state["cpu_s"], rel=0.05)
