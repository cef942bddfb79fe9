"""What every model family shares: spectral normalisation and the DCGAN initialisation."""

from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

INITS = ("default", "dcgan")  # model.init: PyTorch's own, or Radford et al. 2016's N(0, 0.02)
_WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def spectralize(module: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018) of every conv and linear layer, in place:
    each weight is divided by its largest singular value, estimated by one power iteration
    per training forward pass (torch's parametrization)."""
    for child in list(module.modules()):
        if isinstance(child, _WEIGHTED):
            spectral_norm(child)
    return module


def dcgan_init_(module: nn.Module) -> None:
    """Radford et al. (2016): conv/linear weights ~ N(0, 0.02), BatchNorm scale ~ N(1, 0.02),
    biases 0."""
    for m in module.modules():
        if isinstance(m, _WEIGHTED):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
