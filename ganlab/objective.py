"""What D and G minimise beside the adversarial loss, and how each extra term is computed.

``Objective`` holds the loss (``ganlab.losses``), the Lipschitz constraint (a penalty of
``ganlab.penalties`` or weight clipping), the auxiliary terms (``ganlab.auxiliary``), the
class conditioning (``ganlab.models.layers.CONDITIONINGS``) and the augmentation D sees images
through (``ganlab.augment``); the trainer adds what it returns
to each update's loss. Nothing here steps an optimizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganlab.augment import Augment
from ganlab.auxiliary import TERMS
from ganlab.losses import GANLoss
from ganlab.models.layers import CONDITIONINGS, Conditioning, Critic
from ganlab.packing import pack
from ganlab.penalties import PENALTIES

Pair = tuple[Tensor | None, Tensor | None]  # (images, D's features of them)


@dataclass
class Objective:
    """What D and G minimise: the adversarial loss, its Lipschitz constraint, the auxiliary
    terms (``ganlab.auxiliary.TERMS``) with a non-zero weight, the class conditioning and
    the augmentation of D's inputs."""

    loss: GANLoss
    penalty: str = "none"  # a key of ganlab.penalties.PENALTIES
    penalty_weight: float = 0.0  # D adds penalty.scale · weight · mean(penalty)
    penalty_every: int = 1  # lazy regularisation: every k-th D step, with weight · k
    clip: float | None = None  # D weights clipped to [-clip, clip] after each D step
    aux: dict[str, float] = field(default_factory=dict)  # term name -> weight
    aux_params: dict[str, float] = field(default_factory=dict)  # the terms' own parameters
    backbone: nn.Module | None = None  # frozen network with features(x), for "backbone" terms
    cond: Conditioning = CONDITIONINGS["none"]
    cond_weight: float = 1.0  # acgan: weight of the class cross-entropy
    augment: Augment | None = None  # DiffAugment's T (None: D sees the images themselves)

    def __post_init__(self) -> None:
        self.aux = {name: w for name, w in self.aux.items() if w}

    def seen(self, x: Tensor) -> Tensor:
        """What D is shown of images x: T(x), drawn afresh per image, or x without an
        augmentation. Differentiable, so G learns through it (Zhao et al. 2020)."""
        return x if self.augment is None else self.augment(x)

    def terms(self, network: str) -> list[str]:
        """Active terms of ``network`` ("G" or "D"), in registry order."""
        return [n for n, t in TERMS.items() if n in self.aux and t.network == network]

    @property
    def penalized(self) -> bool:
        """Whether D's objective has a penalty term at all (a penalty and a weight > 0)."""
        return PENALTIES[self.penalty] is not None and self.penalty_weight > 0

    @property
    def compile_blocker(self) -> str | None:
        """Why an iteration with this objective cannot be compiled, or None when it can."""
        if self.penalized:
            return (
                f"penalty={self.penalty} needs a double backward through D, which "
                "torch.compile does not support (pytorch/pytorch#91469)"
            )
        return None

    @property
    def reads_d_features(self) -> bool:
        """Whether an update needs D's last hidden features besides its scores."""
        return self.cond.classifier or any(TERMS[name].reads == "D" for name in self.aux)

    def classes(
        self, D: Critic, pairs: list[tuple[Tensor, Tensor]], logs: dict[str, Tensor], tag: str
    ) -> Tensor | None:
        """AC-GAN (Odena et al. 2017): weight · Σ CE(D's class logits, y) over (features,
        labels) pairs: real images for D, generated ones for G.

        D's class head learns from real images only. With generated images in D's term too
        (the paper's form), G and D agreed on class codes of their own within 1,000 DCGAN
        steps: each grid row one steady shape, not the asked-for digit (label accuracy 0.23).
        """
        if not self.cond.classifier:
            return None
        ce = sum(F.cross_entropy(D.classify(features), y) for features, y in pairs)
        logs[tag] = ce
        return self.cond_weight * ce

    def penalty_term(
        self,
        D: Critic,
        real: Tensor,
        fake: Tensor,
        labels: tuple[Tensor | None, Tensor | None],
        logs: dict[str, Tensor],
    ) -> Tensor:
        """scale · weight · mean(penalty), on the D updates the trainer's ``penalty_due``
        picks (every ``penalty_every``-th, with weight × penalty_every). The penalty's points
        are packs, as D sees them: one α and one gradient norm per pack (PacGAN).
        ``labels``: (real, fake) labels of a conditional run, else (None, None)."""
        penalty = PENALTIES[self.penalty]
        y = labels[0] if penalty.labels == "real" else labels[1]
        scored = D if y is None else (lambda x: D(x, y))
        value = penalty.fn(scored, pack(real, D.pack), pack(fake, D.pack)).mean()
        logs[f"penalty/{self.penalty}"] = value
        return penalty.scale * self.penalty_weight * self.penalty_every * value

    def aux_terms(
        self, network: str, real: Pair, fake: Pair, logs: dict[str, Tensor]
    ) -> Tensor | None:
        """The weighted sum of ``network``'s auxiliary terms (None when it has none), each
        logged as aux/<name> and the sum as aux/total_<network>. real/fake: (images, D's
        features of what it saw of them); a backbone term reads the images themselves."""
        terms = {}
        for name in self.terms(network):
            term = TERMS[name]
            if term.reads == "D":
                real_features, fake_features = real[1], fake[1]
            else:  # the frozen backbone; real features are constants
                with torch.no_grad():
                    real_features = self.backbone.features(real[0])
                fake_features = self.backbone.features(fake[0])
            params = {arg: self.aux_params[key] for arg, key in term.params.items()}
            terms[name] = term.fn(real_features, fake_features, **params)
        if not terms:
            return None
        total = sum(self.aux[name] * term for name, term in terms.items())
        logs.update({f"aux/{name}": term for name, term in terms.items()})
        logs[f"aux/total_{network}"] = total
        return total
