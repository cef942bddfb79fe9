"""Differentiable augmentation (ganlab.augment, aug=diffaugment): each operation against a
NumPy reference or its defining property, the random draws' ranges, gradients through T, and
the trainer showing D (and the penalty) T(x) in D's and G's updates."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ganlab.augment import (
    BACKGROUND,
    OPERATIONS,
    brightness,
    build_augment,
    contrast,
    cutout,
    erase,
    saturation,
    translate,
    translation,
)
from ganlab.build import build_trainer
from ganlab.data import to_signed_unit
from ganlab.errors import GanlabError
from ganlab.train import train
from tests.conftest import short_run, tiny

CPU = torch.device("cpu")


def _shift_reference(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """img [C, H, W] moved down dy and right dx, uncovered pixels the background: by loops."""
    c, h, w = img.shape
    out = np.full_like(img, BACKGROUND)
    for i in range(h):
        for j in range(w):
            if 0 <= i - dy < h and 0 <= j - dx < w:
                out[:, i, j] = img[:, i - dy, j - dx]
    return out


def test_translate_moves_each_image_by_its_own_shift():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 28, 28, generator=g, dtype=torch.float64) * 2 - 1
    dy = torch.tensor([0, 4, -4, 27, -28, 1])
    dx = torch.tensor([0, -3, 4, 0, 5, -27])
    out = translate(x, dy, dx).numpy()
    for k in range(6):
        expected = _shift_reference(x[k].numpy(), int(dy[k]), int(dx[k]))
        np.testing.assert_array_equal(out[k], expected)


def test_erase_blanks_the_square_that_lies_inside_the_image():
    x = torch.rand(4, 1, 28, 28, dtype=torch.float64)
    top, left = torch.tensor([0, 10, -7, 20]), torch.tensor([0, 3, 20, -2])
    out = erase(x, top, left, (14, 14)).numpy()
    for k in range(4):
        expected = x[k].numpy().copy()
        t, lft = int(top[k]), int(left[k])
        expected[:, max(t, 0) : max(t + 14, 0), max(lft, 0) : max(lft + 14, 0)] = BACKGROUND
        np.testing.assert_array_equal(out[k], expected)


def test_the_colour_operations_have_their_defining_properties():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, 3, 28, 28, generator=g, dtype=torch.float64) * 2 - 1
    u = torch.rand(5, 1, 1, 1, generator=g, dtype=torch.float64)
    mean = x.mean(dim=(1, 2, 3))
    torch.testing.assert_close(brightness(x, u).mean(dim=(1, 2, 3)), mean + u.flatten() - 0.5)
    c = contrast(x, u)  # the mean stays, the spread scales by u + 1/2
    torch.testing.assert_close(c.mean(dim=(1, 2, 3)), mean)
    torch.testing.assert_close(c.std(dim=(1, 2, 3)), x.std(dim=(1, 2, 3)) * (u.flatten() + 0.5))
    s = saturation(x, u)  # the mean over channels stays, the deviation from it scales by 2u
    torch.testing.assert_close(s.mean(dim=1), x.mean(dim=1))
    torch.testing.assert_close(s - x.mean(dim=1, keepdim=True), (x - x.mean(1, True)) * 2 * u)
    one = x[:, :1]  # one channel: saturation changes nothing
    torch.testing.assert_close(saturation(one, u), one)


def test_random_shifts_cover_the_paper_range_and_no_more():
    """ratio 1/8 of 28 pixels: shifts of -4..4 (round(3.5)) each way, every one drawn."""
    x = torch.full((2000, 1, 28, 28), BACKGROUND)
    x[:, :, 14, 14] = 1.0  # one lit pixel: where it lands is the shift
    torch.manual_seed(0)
    out = translation(x, 0.125)
    lit = (out[:, 0] == 1.0).nonzero()
    assert len(lit) == 2000  # each image still has its pixel (a shift of 4 keeps it inside)
    dy, dx = lit[:, 1] - 14, lit[:, 2] - 14
    assert set(dy.tolist()) == set(range(-4, 5)) == set(dx.tolist())


def test_random_cutout_erases_one_square_of_half_the_side():
    x = torch.ones(2000, 1, 28, 28)
    torch.manual_seed(0)
    erased = cutout(x, 0.5)[:, 0] == BACKGROUND
    counts = erased.sum(dim=(1, 2))
    assert counts.max() == 14 * 14 and counts.min() > 0  # whole inside, or over an edge
    rows, cols = erased.any(dim=2), erased.any(dim=1)  # one contiguous block of rows/cols
    for band in (rows, cols):
        widths = band.sum(dim=1)
        first = band.float().argmax(dim=1)
        last = 27 - band.flip(1).float().argmax(dim=1)
        assert torch.equal(last - first + 1, widths) and widths.max() == 14
    assert torch.equal(counts, rows.sum(1) * cols.sum(1))  # a rectangle: the square's part


def test_gradients_reach_the_images_through_every_operation():
    policy = list(OPERATIONS)
    T = build_augment(policy, {"translation": 0.125, "cutout": 0.5})
    x = torch.rand(8, 1, 28, 28, requires_grad=True)
    torch.manual_seed(0)
    T(x).square().sum().backward()
    assert x.grad is not None and (x.grad != 0).any()
    assert build_augment([], {}) is None


class _Seen:
    """Records the tensors T returned and the inputs D was called with (by value)."""

    def __init__(self, trainer):
        self.augmented: list[torch.Tensor] = []
        self.d_inputs: list[torch.Tensor] = []
        augment = trainer.objective.augment

        def recording(x):
            out = augment(x)
            self.augmented.append(out.detach().clone())
            return out

        trainer.objective.augment = recording
        trainer.D.register_forward_pre_hook(
            lambda _, args: self.d_inputs.append(args[0].detach().clone())
        )

    def all_d_inputs_were_augmented(self) -> bool:
        return all(any(torch.equal(x, a) for a in self.augmented) for x in self.d_inputs)


def test_d_and_the_penalty_see_only_augmented_images_and_g_learns_through_them(make_cfg):
    cfg = make_cfg(*tiny("dcgan"), "data=mnist_sample", "aug=diffaugment", "penalty=r1")
    torch.manual_seed(0)
    trainer = build_trainer(cfg, CPU)
    seen = _Seen(trainer)
    trainer.d_step()
    # T(real), T(fake); D scored each, and R1 scored T(real) once more
    assert len(seen.augmented) == 2 and len(seen.d_inputs) == 3
    assert seen.all_d_inputs_were_augmented()
    data = to_signed_unit(trainer.data.images).flatten(1)  # no real image reaches D as it is
    real = seen.d_inputs[0].flatten(1)
    assert not (real[:, None, :] == data[None]).all(dim=2).any()
    seen.augmented.clear(), seen.d_inputs.clear()
    trainer.g_step()
    assert len(seen.augmented) == 1 and seen.all_d_inputs_were_augmented()
    grads = [p.grad for p in trainer.G.parameters()]
    assert all(g is not None for g in grads) and any((g != 0).any() for g in grads)


def test_without_augmentation_d_sees_the_images_themselves(make_cfg):
    cfg = make_cfg(*tiny("mlp"), "data=mnist_sample")
    trainer = build_trainer(cfg, CPU)
    assert trainer.objective.augment is None
    x = torch.rand(3, 1, 28, 28)
    assert trainer.objective.seen(x) is x


def test_a_run_with_diffaugment_trains_and_records_its_policy(make_cfg, tmp_path):
    results = short_run(
        make_cfg, tmp_path, "trainer.steps=3", "aug=diffaugment", "aug.policy=[translation]"
    )
    assert results["status"] == "completed"
    config = (tmp_path / ".hydra" / "config.yaml").read_text()
    assert "policy:\n  - translation" in config or "policy: [translation]" in config


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["aug=diffaugment", "aug.policy=[zoom]"], "aug.policy: 'zoom'"),
        (["aug=diffaugment", "aug.policy=[cutout,cutout]"], "at most once"),
        (["aug=diffaugment", "aug.policy=[]"], "needs at least one operation"),
        (["aug.policy=[cutout]"], "aug=none applies no operation"),
        (["aug=diffaugment", "aug.cutout=0"], "aug.cutout"),
        (["aug=diffaugment", "aug.translation=1.5"], "aug.translation"),
    ],
)
def test_a_bad_augmentation_is_one_error_naming_it(make_cfg, tmp_path, overrides, named):
    with pytest.raises(GanlabError, match=named):
        train(make_cfg("data=mnist_sample", *overrides), tmp_path / "run")
    assert not (tmp_path / "run").exists()
