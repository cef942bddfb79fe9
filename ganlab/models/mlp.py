"""Fully connected GAN for 28x28 images."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ganlab.models.layers import (
    LABEL_EMBEDDING,
    Critic,
    GeneratorBase,
    LabelInput,
    MinibatchStd,
    spectralize,
)


def _stack(sizes: Sequence[int], dropout: float = 0.0) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(n_in, n_out), nn.LeakyReLU(0.2)]
        layers += [nn.Dropout(dropout)] if dropout else []
    return layers


class Generator(GeneratorBase):
    """z [N, z_dim] -> hidden... -> C·784 -> tanh -> images [N, C, 28, 28] in [-1, 1]
    (C = ``image_channels``: 1, or 3 for stacked MNIST)."""

    def __init__(
        self,
        z_dim: int = 100,
        hidden: Sequence[int] = (128, 256),
        n_classes: int = 0,
        image_channels: int = 1,
    ):
        super().__init__(z_dim, n_classes, image_channels)
        width = z_dim + (LABEL_EMBEDDING if n_classes else 0)  # conditional: [z, embed(y)]
        self.net = nn.Sequential(
            *_stack([width, *hidden]), nn.Linear(hidden[-1], image_channels * 784), nn.Tanh()
        )
        if n_classes:  # created last: an unconditional G draws the same initial weights
            self.label_input = LabelInput(n_classes, z_dim, "concat")

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.n_classes:
            z = self.label_input(z, y)
        return self.net(z).view(-1, self.image_channels, 28, 28)


class Discriminator(Critic):
    """packs [N, m·C, 28, 28] -> m·C·784 -> hidden... (``features``) -> raw score [N], for
    m = ``pack`` images of C = ``image_channels`` channels (Critic).

    Against mode collapse, both off by default (the card's D): ``dropout`` after every
    hidden layer (Goodfellow et al. 2014's maxout D used it), and ``minibatch_std``, the
    group size of a minibatch standard deviation feature beside the last hidden layer
    (Karras et al. 2018; ``MinibatchStd``)."""

    def __init__(
        self,
        hidden: Sequence[int] = (256, 128),
        spectral_norm: bool = False,
        cond: str = "none",
        pack: int = 1,
        image_channels: int = 1,
        dropout: float = 0.0,
        minibatch_std: int = 0,
    ):
        super().__init__(cond, pack, image_channels)
        sizes = [pack * image_channels * 784, *hidden]
        self.body = nn.Sequential(nn.Flatten(), *_stack(sizes, dropout))
        self.head = nn.Linear(hidden[-1], 1)
        if minibatch_std:
            self.head = nn.Sequential(MinibatchStd(minibatch_std), nn.Linear(hidden[-1] + 1, 1))
        self.add_conditioning(hidden[-1])
        if spectral_norm:  # D only: a Lipschitz bound for the critic
            spectralize(self)
