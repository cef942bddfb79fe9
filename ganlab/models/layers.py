"""What every model family shares: the capabilities G and D declare (``GeneratorBase``,
``Critic``), the class conditionings (``CONDITIONINGS``), spectral normalisation and the
DCGAN initialisation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from ganlab.digits import N_CLASSES

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


class MinibatchStd(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018, ProGAN §3): features h [N, F] gain
    one more, the mean over the F features of each feature's standard deviation across the
    sample's group of ``group`` samples (sample i is in group i mod N/group). A collapsed
    batch, whose samples look alike, has a small one, which D can see and punish; G's
    answer is variety. N must be a multiple of the group size (of N, if N is smaller)."""

    def __init__(self, group: int):
        super().__init__()
        self.group = group

    def forward(self, h: Tensor) -> Tensor:
        n, f = h.shape
        g = min(self.group, n)
        if n % g:
            raise ValueError(f"minibatch std: {n} samples are not groups of {g}")
        spread = h.reshape(g, n // g, f).var(dim=0, unbiased=False).add(1e-8).sqrt()
        return torch.cat([h, spread.mean(dim=1).repeat(g)[:, None]], dim=1)


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


@dataclass(frozen=True)
class Conditioning:
    """A class conditioning (``cond.name``): what it makes G and D do."""

    name: str
    labels: bool  # G draws images of given classes and D scores them with their labels
    projection: bool = False  # D adds <embed(y), φ(x)> to its score (Miyato & Koyama 2018)
    classifier: bool = False  # D has a class head; both add its cross-entropy (Odena et al. 2017)

    @property
    def n_classes(self) -> int:
        """The classes G and D are conditioned on: 10, or 0 for an unconditional pair."""
        return N_CLASSES if self.labels else 0


CONDITIONINGS: dict[str, Conditioning] = {
    c.name: c
    for c in (
        Conditioning("none", labels=False),
        Conditioning("projection", labels=True, projection=True),
        Conditioning("acgan", labels=True, classifier=True),
    )
}


class GeneratorBase(nn.Module):
    """What every G declares, so nothing has to guess: its noise width ``z_dim``, its
    ``n_classes`` (0: unconditional; else ``G(z, y)`` needs labels y in 0..n_classes-1) and
    the ``image_channels`` of its images [N, C, 28, 28] in [-1, 1]."""

    z_dim: int
    n_classes: int = 0
    image_channels: int = 1

    def __init__(self, z_dim: int, n_classes: int, image_channels: int):
        super().__init__()
        self.z_dim, self.n_classes, self.image_channels = z_dim, n_classes, image_channels

    @property
    def conditional(self) -> bool:
        return self.n_classes > 0


LABEL_EMBEDDING = 32  # width of the class embedding G's input concatenates to z


class LabelInput(nn.Module):
    """G's class input, one of two forms (each model family uses the one measured to work):

    - ``concat`` (the MLP): [z, embed(y)], a learned 32-d class embedding beside the noise;
    - ``product`` (the DCGAN): z ⊙ embed(y), the noise scaled element-wise by a learned
      per-class vector as wide as z.

    Measured on the 5,000-image sample, 1,000 steps, label accuracy on the metrics
    classifier: with ``concat`` the DCGAN learned to ignore z (its first layer's weights for z
    shrank to a third of those for the label: every row of the grid one image, projection and
    acgan alike; 0.23 for acgan), while ``product`` gave rows of varied digits (0.72
    projection, 0.68 acgan), since a product can't drop z without dropping the class. The MLP
    is the other way round: 0.71 with ``concat``, 0.18 with ``product`` (acgan).
    """

    def __init__(self, n_classes: int, z_dim: int, form: str):
        super().__init__()
        if form not in ("concat", "product"):
            raise ValueError(f"label input {form!r}: concat or product")
        self.form = form
        self.embed = nn.Embedding(n_classes, LABEL_EMBEDDING if form == "concat" else z_dim)

    def forward(self, z: Tensor, y: Tensor | None) -> Tensor:
        if y is None:
            raise ValueError("a class-conditional generator needs labels y")
        if self.form == "concat":
            return torch.cat([z, self.embed(y)], dim=1)
        return z * self.embed(y)


class ConditionalHead(nn.Module):
    r"""What D adds for a conditioning, on its last hidden features φ(x) [N, F]:

    - ``projection`` (Miyato & Koyama 2018): score + ⟨embed(y), φ(x)⟩;
    - ``acgan`` (Odena et al. 2017): a 10-way class head, ``classify(φ(x))`` -> logits.
    """

    def __init__(self, cond: Conditioning, features: int):
        super().__init__()
        self.projection = cond.projection
        if cond.projection:
            self.embed = nn.Embedding(cond.n_classes, features)
            # Small, as in the SN-GAN code (Glorot): N(0, 1) rows over thousands of features
            # would make the projection term dwarf D's score at the start.
            nn.init.xavier_uniform_(self.embed.weight)
        if cond.classifier:
            self.classes = nn.Linear(features, cond.n_classes)

    def score(self, scores: Tensor, features: Tensor, y: Tensor | None) -> Tensor:
        if not self.projection:
            return scores
        if y is None:
            raise ValueError("a projection discriminator needs labels y")
        return scores + (self.embed(y) * features).sum(1)

    def classify(self, features: Tensor) -> Tensor:
        return self.classes(features)


class Critic(nn.Module):
    """What every D shares: ``body`` (x -> last hidden features), ``head`` (-> one raw score)
    and, for a conditional D, ``conditional`` (a ConditionalHead); and what it declares:
    its conditioning ``cond``, ``n_classes`` (0: unconditional), ``image_channels`` and
    ``pack`` (PacGAN, Lin et al. 2018; ``ganlab.packing``): D scores packs of that many
    samples concatenated along channels, so its input is [N/pack, pack·C, 28, 28]; the
    trainer packs every batch before D (one score per pack).
    """

    body: nn.Module
    head: nn.Module
    conditional: ConditionalHead  # a conditional D's only (add_conditioning)

    def __init__(self, cond: str, pack: int, image_channels: int):
        super().__init__()
        self.cond = CONDITIONINGS[cond]
        self.n_classes, self.pack, self.image_channels = self.cond.n_classes, pack, image_channels

    def add_conditioning(self, features: int) -> None:
        """The conditional head on ``features`` hidden units; created after the rest, so an
        unconditional D draws the same initial weights as before conditioning existed."""
        if self.cond.labels:
            self.conditional = ConditionalHead(self.cond, features)

    def forward(
        self, x: Tensor, y: Tensor | None = None, return_features: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Raw scores [N] (given labels y when conditional); with ``return_features``,
        (features, scores) from the same pass."""
        features = self.body(x)
        scores = self.head(features).squeeze(1)
        if self.cond.labels:
            scores = self.conditional.score(scores, features, y)
        return (features, scores) if return_features else scores

    def classify(self, features: Tensor) -> Tensor:
        """ACGAN's class logits [N, 10] from ``features``."""
        return self.conditional.classify(features)
