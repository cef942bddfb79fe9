"""ganlab.data: IDX reading against the real MNIST test split, hostile files, the fallback."""

from __future__ import annotations

import enum
import gzip
import logging
import os
import re
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from ganlab.build import build_data
from ganlab.data import DataError, find_idx, load_mnist, load_sample, read_idx
from tests.conftest import SHARED_MNIST, needs_shared

SHARED = SHARED_MNIST
RAW = SHARED / "MNIST" / "raw"
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write uint8 array as IDX (magic 0x08 type, ndim), gzipped when path ends in .gz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data += np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_split(folder: Path, prefix: str, n: int = 3, gz: bool = True) -> tuple[Path, Path]:
    ext = ".gz" if gz else ""
    images = write_idx(
        folder / f"{prefix}-images-idx3-ubyte{ext}",
        np.arange(n * 784, dtype=np.int64).reshape(n, 28, 28) % 256,
    )
    labels = write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", np.arange(n) % 10)
    return images, labels


# --- read_idx ------------------------------------------------------------------------------


@needs_shared
def test_read_idx_real_test_split(tmp_path):
    images = read_idx(RAW / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(RAW / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert np.bincount(labels).tolist() == TEST_COUNTS
    raw = tmp_path / "t10k-labels-idx1-ubyte"
    raw.write_bytes(gzip.decompress((RAW / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw_images = tmp_path / "t10k-images-idx3-ubyte"
    raw_images.write_bytes(gzip.decompress((RAW / "t10k-images-idx3-ubyte.gz").read_bytes()))
    assert np.array_equal(read_idx(raw), labels)
    assert np.array_equal(read_idx(raw_images), images)


def test_read_idx_roundtrip(tmp_path):
    # MNIST's shapes only (images [N, 28, 28], labels [N] in 0..9): see the header tests below
    array = (np.arange(2 * 28 * 28) * 3 % 256).reshape(2, 28, 28).astype(np.uint8)
    labels = array[0, 0] % 10
    assert np.array_equal(read_idx(write_idx(tmp_path / "a.gz", array)), array)
    assert np.array_equal(read_idx(write_idx(tmp_path / "b", labels)), labels)


def _hostile(tmp_path: Path, kind: str) -> Path:
    good = write_idx(tmp_path / "good", np.zeros((4, 28, 28), np.uint8)).read_bytes()
    if kind == "wrong_magic":
        return _put(tmp_path / "x-idx3-ubyte", b"\x00\x00\x0d\x03" + good[4:])
    if kind == "truncated_payload":
        return _put(tmp_path / "x-idx3-ubyte.gz", gzip.compress(good[:-10]))
    if kind == "extra_payload":
        return _put(tmp_path / "x-idx3-ubyte", good + b"\x00")
    if kind == "truncated_header":
        return _put(tmp_path / "x-idx3-ubyte", good[:9])
    if kind == "truncated_gzip":
        compressed = gzip.compress(good)
        return _put(tmp_path / "x-idx3-ubyte.gz", compressed[: len(compressed) // 2])
    if kind == "not_gzip":
        return _put(tmp_path / "x-idx3-ubyte.gz", good)
    return _put(tmp_path / f"x-idx3-ubyte{'.gz' if kind == 'empty_gz' else ''}", b"")


def _put(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "kind",
    [
        "wrong_magic",
        "truncated_payload",
        "extra_payload",
        "truncated_header",
        "truncated_gzip",
        "not_gzip",
        "empty",
        "empty_gz",
    ],
)
def test_read_idx_rejects_hostile_files(tmp_path, kind):
    path = _hostile(tmp_path, kind)
    with pytest.raises(DataError, match="x-idx3-ubyte") as info:
        read_idx(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


# --- read_idx: the header first, then exactly the bytes it declares -----------------------------


def _idx(path: Path, magic: int, dims: tuple[int, ...], payload: bytes) -> Path:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    data = header + payload
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


IMAGES, LABELS = 0x803, 0x801


@pytest.mark.parametrize(
    ("magic", "dims", "payload", "says"),
    [
        (IMAGES, (0, 28, 28), b"", "holds 0 images"),
        (LABELS, (0,), b"", "holds 0 labels"),
        (IMAGES, (2**31, 28, 28), b"\0" * 784, "not MNIST's ([N, 28, 28] with 1 <= N <= 70,000)"),
        (IMAGES, (70_001, 28, 28), b"", "not MNIST's"),
        (IMAGES, (3, 32, 32), b"\0" * 3 * 1024, "not MNIST's"),
        (LABELS, (2**32 - 1,), b"\0", "not MNIST's ([N] with"),
        (IMAGES, (3, 28, 28), b"\0" * (3 * 784 - 1), "holds 2351 data bytes"),
        (IMAGES, (3, 28, 28), b"\0" * (3 * 784 + 5), "holds more than 2352 data bytes"),
        (LABELS, (4,), bytes([0, 3, 12, 255]), "2 of its 4 labels are >= 10 (the largest is 255)"),
    ],
    ids=["0_images", "0_labels", "huge_n", "n_above_70000", "32x32", "huge_labels", "short",
         "long", "labels_ge_10"],
)  # fmt: skip
def test_read_idx_refuses_non_mnist_headers_and_payloads(tmp_path, magic, dims, payload, says):
    path = _idx(tmp_path / "x-idx-ubyte.gz", magic, dims, payload)
    with pytest.raises(DataError) as info:
        read_idx(path)
    message = str(info.value)
    assert message.startswith(str(path)) and says in message and "\n" not in message


def test_a_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    """A fine header (100 images) followed by 1 GiB of zeros in 64 tiny gzip members
    (one stream to a reader): refused after reading 78,401 bytes, never the whole stream."""
    path = tmp_path / "bomb-idx3-ubyte.gz"
    header = IMAGES.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (100, 28, 28))
    zeros = gzip.compress(bytes(2**24), compresslevel=9)  # 16 MiB of zeros in ~16 kB
    with path.open("wb") as fh:
        fh.write(gzip.compress(header + bytes(100 * 784)))
        for _ in range(64):  # 64 x 16 MiB = 1 GiB more
            fh.write(zeros)
    assert path.stat().st_size < 2_000_000
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="holds more than 78400 data bytes"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000  # inflating it all would hold 1 GiB


def test_permission_denied_says_so(tmp_path, monkeypatch):
    """Simulated (so it runs as root too): a PermissionError is named, never 'download it
    again'; a folder that cannot be looked into names the folder."""
    path = _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", LABELS, (2,), b"\0\1")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(gzip, "open", refuse)
    with pytest.raises(DataError) as info:
        read_idx(path)
    assert "permission denied" in str(info.value) and "download" not in str(info.value)
    monkeypatch.undo()
    monkeypatch.setattr(Path, "is_file", refuse)
    with pytest.raises(DataError, match=f"{re.escape(str(tmp_path))}: looking for .*permission"):
        find_idx(tmp_path, "test")


@pytest.mark.skipif(
    os.geteuid() == 0 if hasattr(os, "geteuid") else True,
    reason="running as root (or not on POSIX): chmod does not stop root from reading a file, "
    "so no real PermissionError can be provoked; test_permission_denied_says_so simulates one",
)
def test_an_unreadable_file_is_a_permission_error(tmp_path):
    path = _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", LABELS, (2,), b"\0\1")
    path.chmod(0)
    try:
        with pytest.raises(DataError, match="permission denied") as info:
            read_idx(path)
        assert "download" not in str(info.value)
    finally:
        path.chmod(0o644)


# --- find_idx ------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", [".", "MNIST/raw"])
def test_find_idx_both_layouts(tmp_path, layout):
    folder = tmp_path / layout
    test_pair = write_split(folder, "t10k")
    assert find_idx(tmp_path, "test") == [test_pair]
    assert find_idx(tmp_path, "train") is None
    assert find_idx(tmp_path, "all") is None
    train_pair = write_split(folder, "train", gz=False)
    assert find_idx(tmp_path, "train") == [train_pair]
    assert find_idx(tmp_path, "all") == [train_pair, test_pair]


def test_find_idx_needs_both_files(tmp_path):
    images, _ = write_split(tmp_path, "t10k")
    images.with_name("t10k-labels-idx1-ubyte.gz").unlink()
    assert find_idx(tmp_path, "test") is None
    with pytest.raises(DataError, match="train, test, all"):
        find_idx(tmp_path, "validation")


# --- load_mnist ----------------------------------------------------------------------------


@needs_shared
def test_load_mnist_real_test_split(test_split):
    assert test_split.source == "mnist" and len(test_split) == 10000
    assert test_split.images.shape == (10000, 1, 28, 28)
    assert test_split.images.dtype == torch.uint8 and test_split.labels.dtype == torch.int64
    assert torch.bincount(test_split.labels).tolist() == TEST_COUNTS


def test_load_mnist_all_concatenates(tmp_path):
    write_split(tmp_path, "train", n=5)
    write_split(tmp_path / "MNIST" / "raw", "t10k", n=3)
    data = load_mnist("mnist", str(tmp_path), "all", download=False, strict=True, device="cpu")
    assert data.images.shape == (8, 1, 28, 28) and data.labels.tolist() == [0, 1, 2, 3, 4, 0, 1, 2]


def test_load_mnist_expands_root(tmp_path, monkeypatch):
    write_split(tmp_path, "t10k")
    monkeypatch.setenv("GANLAB_TEST_ROOT", str(tmp_path))
    data = load_mnist("mnist", "$GANLAB_TEST_ROOT", "test", False, True, "cpu")
    assert len(data) == 3 and data.source == "mnist"


def test_missing_files_strict_raises(tmp_path):
    with pytest.raises(DataError) as info:
        load_mnist("mnist", str(tmp_path), "train", download=False, strict=True, device="cpu")
    message = str(info.value)
    assert str(tmp_path) in message and "data.root" in message and "mnist_sample" in message
    assert "disabled" in message and "\n" not in message


def test_missing_files_not_strict_falls_back_and_says_so_once(tmp_path, caplog):
    """The fallback is one short warning per process: a sweep's jobs, run one after another
    in one process, do not each repeat it (their results.json say data.source)."""
    with caplog.at_level(logging.WARNING, logger="ganlab.data"):
        for _ in range(2):
            data = load_mnist(
                "mnist", str(tmp_path), "train", download=False, strict=False, device="cpu"
            )
            assert data.source == "mnist_sample" and len(data) == 5000
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(tmp_path) in warnings[0], warnings
    assert "data.download=false" in warnings[0] and len(warnings[0]) < 200 + len(str(tmp_path))


def test_download_failure_is_reported(tmp_path, monkeypatch, caplog):
    """torchvision's multi-line offline error becomes one short line (stubbed: no network)."""
    torchvision = pytest.importorskip("torchvision")

    def offline(root, train, download):
        raise RuntimeError("Error downloading x.gz:\nTried https://a/, got:\n<urlopen error>\n")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataError, match="download failed: Error downloading x.gz") as info:
        load_mnist("mnist", str(tmp_path), "test", download=True, strict=True, device="cpu")
    assert "<urlopen error>" in str(info.value) and "\n" not in str(info.value)
    with caplog.at_level(logging.DEBUG, logger="ganlab.data"):
        data = load_mnist("mnist", str(tmp_path), "test", True, False, "cpu")
    assert data.source == "mnist_sample" and "<urlopen error>" in caplog.text  # at DEBUG
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "(download failed)" in warning and "urlopen" not in warning  # the console's: short


def test_download_writes_torchvision_layout(tmp_path, monkeypatch):
    torchvision = pytest.importorskip("torchvision")
    calls = []

    def fake(root, train, download):
        calls.append(train)
        write_split(Path(root) / "MNIST" / "raw", "train" if train else "t10k", n=2, gz=False)

    monkeypatch.setattr(torchvision.datasets, "MNIST", fake)
    data = load_mnist("mnist", str(tmp_path), "all", download=True, strict=True, device="cpu")
    assert data.source == "mnist" and len(data) == 4 and sorted(calls) == [False, True]


def test_corrupt_files_are_never_replaced(tmp_path):
    images, _ = write_split(tmp_path, "t10k")
    images.write_bytes(images.read_bytes()[:20])
    with pytest.raises(DataError, match="t10k-images"):
        load_mnist("mnist", str(tmp_path), "test", download=True, strict=False, device="cpu")


def test_mismatched_pair_rejected(tmp_path):
    write_split(tmp_path, "t10k", n=3)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="t10k-labels"):
        load_mnist("mnist", str(tmp_path), "test", download=False, strict=True, device="cpu")


@pytest.mark.parametrize(
    ("name", "split", "allowed"),
    [("cifar", "train", "mnist_sample"), ("mnist", "val", "train, test, all")],
)
def test_unknown_name_or_split(tmp_path, name, split, allowed):
    with pytest.raises(DataError, match=allowed):
        load_mnist(name, str(tmp_path), split, download=False, strict=True, device="cpu")


# --- load_sample and MNIST.sample ----------------------------------------------------------


def test_load_sample():
    images, labels = load_sample()
    assert images.shape == (5000, 1, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (5000,) and labels.dtype == np.int64
    assert np.bincount(labels).tolist() == [500] * 10
    assert images.min() == 0 and images.max() == 255


def test_mnist_sample_name(caplog):
    with caplog.at_level(logging.INFO, logger="ganlab.data"):
        data = load_mnist("mnist_sample", "unused", "train", False, True, "cpu")
    assert data.source == "mnist_sample" and len(data) == 5000
    assert any("mnist_sample" in r.getMessage() for r in caplog.records)


def test_batches(test_split):
    torch.manual_seed(0)
    batch = test_split.sample(4096)
    assert batch.shape == (4096, 1, 28, 28) and batch.dtype == torch.float32
    assert batch.min().item() == -1.0 and batch.max().item() == 1.0
    torch.manual_seed(0)
    again = test_split.sample(4096)
    assert torch.equal(batch, again)
    assert not torch.equal(batch, test_split.sample(4096))


def test_batch_values_are_the_images(test_split):
    torch.manual_seed(1)
    idx = torch.randint(len(test_split), (8,))
    torch.manual_seed(1)
    batch = test_split.sample(8)
    assert torch.equal(((batch + 1) * 127.5).round().to(torch.uint8), test_split.images[idx])


@pytest.mark.parametrize("as_enum", [False, True])
def test_build_data_from_config(tmp_path, as_enum):
    write_split(tmp_path, "t10k")
    split = enum.Enum("Split", "train test all").test if as_enum else "test"
    cfg = OmegaConf.create(
        {"name": "mnist", "root": str(tmp_path), "split": split, "download": False, "strict": True}
    )
    data = build_data(cfg, "cpu")
    assert len(data) == 3 and data.source == "mnist"
