"""Fully connected GAN for 28x28 images."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ganlab.models.layers import (
    LABEL_EMBEDDING,
    ConditionalHead,
    Critic,
    LabelInput,
    spectralize,
)


def _stack(sizes: Sequence[int]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(n_in, n_out), nn.LeakyReLU(0.2)]
    return layers


class Generator(nn.Module):
    """z [N, z_dim] -> hidden... -> 784 -> tanh -> images [N, 1, 28, 28] in [-1, 1]."""

    def __init__(self, z_dim: int = 100, hidden: Sequence[int] = (128, 256), n_classes: int = 0):
        super().__init__()
        self.z_dim, self.n_classes = z_dim, n_classes
        width = z_dim + (LABEL_EMBEDDING if n_classes else 0)  # conditional: [z, embed(y)]
        self.net = nn.Sequential(*_stack([width, *hidden]), nn.Linear(hidden[-1], 784), nn.Tanh())
        if n_classes:  # created last: an unconditional G draws the same initial weights
            self.label_input = LabelInput(n_classes, z_dim, "concat")

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.n_classes:
            z = self.label_input(z, y)
        return self.net(z).view(-1, 1, 28, 28)


class Discriminator(Critic):
    """images [N, 1, 28, 28] -> 784 -> hidden... (``features``) -> raw score [N]."""

    def __init__(
        self, hidden: Sequence[int] = (256, 128), spectral_norm: bool = False, cond: str = "none"
    ):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), *_stack([784, *hidden]))
        self.head = nn.Linear(hidden[-1], 1)
        if cond != "none":  # created last: an unconditional D draws the same initial weights
            self.conditional = ConditionalHead(cond, hidden[-1])
        if spectral_norm:  # D only: a Lipschitz bound for the critic
            spectralize(self)
