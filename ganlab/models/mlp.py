"""Fully connected GAN for 28x28 images."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ganlab.models.layers import spectralize


def _stack(sizes: Sequence[int]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(n_in, n_out), nn.LeakyReLU(0.2)]
    return layers


class Generator(nn.Module):
    """z [N, z_dim] -> hidden... -> 784 -> tanh -> images [N, 1, 28, 28] in [-1, 1]."""

    def __init__(self, z_dim: int = 100, hidden: Sequence[int] = (128, 256)):
        super().__init__()
        self.z_dim = z_dim
        self.net = nn.Sequential(*_stack([z_dim, *hidden]), nn.Linear(hidden[-1], 784), nn.Tanh())

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(-1, 1, 28, 28)


class Discriminator(nn.Module):
    """images [N, 1, 28, 28] -> 784 -> hidden... (``features``) -> raw score [N]."""

    def __init__(self, hidden: Sequence[int] = (256, 128), spectral_norm: bool = False):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), *_stack([784, *hidden]))
        self.head = nn.Linear(hidden[-1], 1)
        if spectral_norm:  # D only: a Lipschitz bound for the critic
            spectralize(self)

    def features(self, x: Tensor) -> Tensor:
        """The last hidden layer [N, hidden[-1]]: what feature matching compares."""
        return self.body(x)

    def forward(self, x: Tensor, return_features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Raw scores [N]; with ``return_features``, (features, scores) from the same pass."""
        features = self.body(x)
        scores = self.head(features).squeeze(1)
        return (features, scores) if return_features else scores
