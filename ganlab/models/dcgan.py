"""DCGAN (Radford et al. 2016) sized for 28x28 MNIST."""

from __future__ import annotations

from torch import Tensor, nn

from ganlab.models.layers import (
    Critic,
    GeneratorBase,
    LabelInput,
    spectralize,
)


class Generator(GeneratorBase):
    """z [N, z_dim] -> [N, 2c, 7, 7] -> [N, c, 14, 14] -> [N, C, 28, 28] in [-1, 1]
    (C = ``image_channels``: 1, or 3 for stacked MNIST; c = ``channels``, the width)."""

    def __init__(
        self, z_dim: int = 100, channels: int = 64, n_classes: int = 0, image_channels: int = 1
    ):
        super().__init__(z_dim, n_classes, image_channels)
        c = channels
        width = z_dim  # conditional: z ⊙ embed(y), as wide as z
        self.net = nn.Sequential(
            nn.ConvTranspose2d(width, 2 * c, 7, 1, 0, bias=False),  # [N, 2c, 7, 7]
            nn.BatchNorm2d(2 * c),
            nn.ReLU(True),
            nn.ConvTranspose2d(2 * c, c, 4, 2, 1, bias=False),  # [N, c, 14, 14]
            nn.BatchNorm2d(c),
            nn.ReLU(True),
            nn.ConvTranspose2d(c, image_channels, 4, 2, 1),  # [N, C, 28, 28]
            nn.Tanh(),
        )

        if n_classes:  # created last: an unconditional G draws the same initial weights
            self.label_input = LabelInput(n_classes, z_dim, "product")

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.n_classes:
            z = self.label_input(z, y)
        return self.net(z.view(z.shape[0], -1, 1, 1))


class Discriminator(Critic):
    """[N, m·C, 28, 28] -> [N, c, 14, 14] -> [N, 2c, 7, 7] -> raw score [N], for packs of
    m = ``pack`` images of C = ``image_channels`` channels (Critic).

    No BatchNorm: it would couple the samples of a batch, which breaks the per-sample
    gradient penalty and lets D tell real from fake batches by their statistics.
    """

    def __init__(
        self,
        channels: int = 64,
        spectral_norm: bool = False,
        cond: str = "none",
        pack: int = 1,
        image_channels: int = 1,
    ):
        super().__init__(cond, pack, image_channels)
        c = channels
        self.body = nn.Sequential(
            nn.Conv2d(pack * image_channels, c, 4, 2, 1),  # [N, c, 14, 14]
            nn.LeakyReLU(0.2),
            nn.Conv2d(c, 2 * c, 4, 2, 1),  # [N, 2c, 7, 7]
            nn.LeakyReLU(0.2),
            nn.Flatten(),  # [N, 2c * 49]
        )
        self.head = nn.Linear(2 * c * 7 * 7, 1)
        self.add_conditioning(2 * c * 7 * 7)
        if spectral_norm:  # D only: a Lipschitz bound for the critic
            spectralize(self)
