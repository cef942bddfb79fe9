"""Learning-rate schedules (ganlab.schedules): the factor against closed forms, the lr each
update of a real run used, and a resumed run continuing the schedule exactly."""

from __future__ import annotations

import math

import pytest
import torch

from ganlab.checkpoint import load_checkpoint
from ganlab.errors import GanlabError
from ganlab.schedules import LrSchedule, run_progress
from ganlab.train import train
from tests.conftest import scalars, short_run


@pytest.mark.parametrize(
    ("name", "p", "expected"),
    [
        ("constant", 0.7, 1.0),
        ("linear", 0.0, 1.0),
        ("linear", 0.25, 0.75),
        ("linear", 1.0, 0.0),
        ("cosine", 0.0, 1.0),
        ("cosine", 0.25, (1 + math.sqrt(0.5)) / 2),  # cos(π/4) = √½
        ("cosine", 0.5, 0.5),
        ("cosine", 1.0, 0.0),
    ],
)
def test_each_schedule_is_its_closed_form(name, p, expected):
    assert LrSchedule(name).factor(p) == pytest.approx(expected, abs=1e-12)


def test_the_warm_up_rises_linearly_then_the_decay_runs_over_the_rest():
    s = LrSchedule("linear", warmup=0.2)
    assert [s.factor(p) for p in (0.0, 0.1, 0.2)] == pytest.approx([0.0, 0.5, 1.0])
    assert s.factor(0.6) == pytest.approx(0.5)  # halfway through the 0.8 after the warm-up
    assert s.factor(1.0) == pytest.approx(0.0)
    assert LrSchedule("constant", warmup=0.5).factor(0.75) == 1.0
    assert not LrSchedule().active and LrSchedule("constant", 0.1).active


def test_the_clock_is_the_more_spent_budget():
    assert run_progress(50, 100) == 0.5
    assert run_progress(50, 100, cpu_s=90, cpu_minutes=2) == 0.75  # 90 s of 120
    assert run_progress(50, 100, cpu_s=30, cpu_minutes=2) == 0.5  # the steps are ahead
    assert run_progress(50, 100, cpu_s=999, cpu_minutes=2) == 1.0


def _lrs_used(monkeypatch) -> list[float]:
    """The lr of G's optimizer at each of its steps, whatever optimizer the run builds."""
    seen: list[float] = []
    step = torch.optim.Adam.step

    def recording(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording)
    return seen


def test_a_run_updates_at_the_lr_its_schedule_gives(make_cfg, tmp_path, monkeypatch):
    seen = _lrs_used(monkeypatch)
    short_run(make_cfg, tmp_path, "trainer.steps=4", "trainer.lr_schedule=cosine",
              "trainer.lr_warmup=0.25", "optimizer.lr=1e-3")  # fmt: skip
    # G and D alternate (n_critic 1): D's step, then G's, per iteration; both follow it
    expected = [1e-3 * LrSchedule("cosine", 0.25).factor((i + 1) / 4) for i in range(4)]
    assert expected[0] == pytest.approx(1e-3) and expected[-1] == pytest.approx(0.0)
    assert seen[1::2] == pytest.approx(expected) and seen[0::2] == pytest.approx(expected)
    # TensorBoard has the lr at each log interval (short_run logs every 5 steps: at the end)
    logged = [event.value for event in scalars(tmp_path)["perf/lr_G"]]
    assert logged and logged[-1] == pytest.approx(expected[-1], abs=1e-9)


def test_a_resumed_run_continues_its_schedule_exactly(make_cfg, tmp_path):
    common = ("trainer.steps=6", "trainer.lr_schedule=linear", "trainer.ckpt_every=3")
    short_run(make_cfg, tmp_path / "whole", *common)
    part = tmp_path / "whole" / "checkpoints" / "step_000003.pt"
    short_run(make_cfg, tmp_path / "resumed", *common, f"trainer.resume={part}")
    whole, resumed = (
        load_checkpoint(tmp_path / run / "checkpoints" / "last.pt") for run in ("whole", "resumed")
    )
    assert resumed["step"] == whole["step"] == 6
    for name, weights in whole["G"].items():
        assert torch.equal(weights, resumed["G"][name]), name


def test_a_constant_schedule_trains_bit_for_bit_as_before(make_cfg, tmp_path):
    short_run(make_cfg, tmp_path / "default", "trainer.steps=3")
    short_run(make_cfg, tmp_path / "named", "trainer.steps=3", "trainer.lr_schedule=constant")
    a, b = (load_checkpoint(tmp_path / r / "checkpoints" / "last.pt") for r in ("default", "named"))
    assert all(torch.equal(v, b["G"][k]) for k, v in a["G"].items())


@pytest.mark.parametrize(
    ("override", "named"),
    [("trainer.lr_schedule=step", "trainer.lr_schedule"), ("trainer.lr_warmup=1", "lr_warmup")],
)
def test_a_bad_schedule_is_one_error_naming_the_key(make_cfg, tmp_path, override, named):
    with pytest.raises(GanlabError, match=named):
        train(make_cfg("data=mnist_sample", override), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_schedule_keeps_the_iteration_eager_and_says_why(make_cfg, tmp_path):
    """A compiled step would hold lr at its first value (a float baked into the graph)."""
    results = short_run(
        make_cfg,
        tmp_path,
        "trainer.steps=2",
        "trainer.lr_schedule=linear",
        "trainer.compile=default",
    )
    assert results["execution"]["compile"] == "off"
    assert "trainer.lr_schedule=linear changes lr every step" in results["execution"]["why"]
