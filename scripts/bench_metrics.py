"""Reference values of ganlab's metrics, the time one evaluation takes, and the measurement
behind the choice of feature layer.

    python scripts/bench_metrics.py --data-root ../shared/data/mnist [--run-dir DIR] [--json F]
    python scripts/bench_metrics.py --data-root ../shared/data/mnist --compare-features

Default mode: the classifier (accuracy, hash, training time), then one row per set of images,
each at the n it was compared with (``n``): real training images vs the test split (the
floor), those images corrupted (salt: a fraction of the pixels white; noise σ in [-1, 1]
units, blur σ in pixels, an erased square), and a trained run's generator (``--run-dir``),
at the floor's n and at ``--n``; plus seconds per evaluation of ``--n`` samples on the
current device.

``--compare-features``: today's features (the v1 classifier, trained here with its old recipe,
or loaded with ``--old-classifier``: post-ReLU, and its pre-ReLU layer) against the candidate
layers of the current classifier, on the effective rank of the real feature covariance and
on the corruption ladders of ``ganlab.metrics.audit`` (3 seeds): does FID rise at every rung
in every seed, do adjacent rungs separate across seeds, and by how much (``min_z``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ganlab.build import load_generator
from ganlab.data import sample_mnist
from ganlab.metrics.audit import (
    LADDERS,
    corrupt,
    effective_rank,
    embed_all,
    ladder_fids,
    numeric_rank,
    separation,
    sparsity,
)
from ganlab.metrics.classifier import FEATURE_LAYER, accuracy, weights_sha256
from ganlab.metrics.evaluator import serve
from ganlab.metrics.session import EvaluationSession
from ganlab.runtime import resolve_device, to_signed_unit
from ganlab.sampling import sample_fn

SHOWN = ("fid", "fid_inf", "kid", "mnist_score", "classes_covered", "precision", "recall")
ROWS = {"salt": (0.01, 0.02), "noise": (0.1, 0.2, 0.4, 0.8), "blur": (1.0, 2.0), "erase": (7, 12)}
SEEDS = (0, 1, 2)
# How well each classifier still reads digits a young GAN draws speckled: test accuracy under
# Gaussian noise (σ in [-1, 1] units) and salt and pepper (fraction of pixels).
ROBUSTNESS = (("noise", 0.2), ("noise", 0.3), ("saltpepper", 0.02), ("saltpepper", 0.05))


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


# --- reference values ---------------------------------------------------------------------------


def corrupted_rows(session: EvaluationSession) -> dict[str, dict[str, float]]:
    """The floor set's images, corrupted, against the test split at the floor's n."""
    floor_set = session.floor_set
    n = min(session.n, len(floor_set))
    order = torch.randperm(len(floor_set), generator=torch.Generator().manual_seed(0))[:n]
    base = to_signed_unit(floor_set.images[order])
    rows = {}
    for kind, levels in ROWS.items():
        for level in levels:
            x = corrupt(base, kind, level, torch.Generator().manual_seed(0))
            rows[f"{floor_set.source} + {kind} {level}"] = {**session.metrics(serve(x), n), "n": n}
    return rows


def reference_values(args, device) -> dict:
    session, setup_s = timed(lambda: EvaluationSession(args.data_root, device, args.n))
    info, rows, eval_s = session.classifier_info, {}, None
    floor_n = min(session.n, len(session.floor_set)) if session.floor_set is not None else None
    if floor_n:
        rows[f"real {session.floor_set.source} (floor)"] = {**session.floor(floor_n), "n": floor_n}
        rows.update(corrupted_rows(session))
    if args.run_dir:
        G, _, state = load_generator(args.run_dir, device)
        cfg = state["config"]
        name = f"{cfg['loss']['name']}/{cfg['model']['name']} step {state['step']}"
        z_dim = cfg["model"]["z_dim"]
        for size in sorted({session.n, floor_n or session.n}):
            draw = sample_fn(G, z_dim, device)
            metrics, seconds = timed(lambda d=draw, n=size: session.metrics(d, n))
            rows[f"{name} (n={size:,})"] = {**metrics, "n": size}
            eval_s = seconds if size == session.n else eval_s
    print_rows(rows)
    features = session.features_info
    print(
        f"device {device}; label reader {info['weights_sha256'][:12]}: "
        f"{100 * info['test_accuracy']:.2f}% on {info['test_source']} (trained on "
        f"{info['train_source']}); feature network {features['weights_sha256'][:12]} "
        f"({FEATURE_LAYER}, trained on {features['train_source']}); networks and real "
        f"embedding {setup_s:.2f} s"
        + (f"; one evaluation at n = {session.n:,}: {eval_s:.2f} s" if eval_s else "")
    )
    seconds = {"setup": setup_s, "evaluation": eval_s}
    return {
        "device": str(device),
        "classifier": info,
        "feature_network": features,
        "n": session.n,
        "rows": rows,
        **seconds,
    }


def print_rows(rows: dict[str, dict[str, float]]) -> None:
    width = max(len(r) for r in rows)
    print(f"{'set':<{width}}  {'n':>6}  " + "  ".join(f"{k:>11}" for k in SHOWN))
    for name, m in rows.items():
        print(f"{name:<{width}}  {m['n']:>6}  " + "  ".join(f"{m[k]:>11.4g}" for k in SHOWN))


# --- the feature comparison -------------------------------------------------------------------


class LegacyClassifier(nn.Module):
    """The v1 metrics classifier (ganlab before issue 12): features after the fc128 ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Dropout(0.5), nn.Linear(128, 10))

    def forward(self, x):
        return self.head(self.body(x))

    def layers(self, x):
        pre = self.body[:-1](x)
        return {"fc128_pre_relu": pre, "fc128_post_relu": F.relu(pre)}


def legacy_classifier(path: str | None, images, labels) -> tuple[LegacyClassifier, str]:
    """The v1 classifier: from its cache file, else trained with its recipe (Adam 1e-3, cosine,
    batch 64, at least 4 epochs and 3,000 steps, no augmentation, seed 0, one thread)."""
    model = LegacyClassifier()
    if path:
        state = torch.load(Path(path).expanduser(), weights_only=True)
        model.load_state_dict(state["weights"])
        return model.eval(), f"{path} ({state['info'].get('train_source')})"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LegacyClassifier()
        x, y = to_signed_unit(images), labels
        steps_per_epoch = math.ceil(len(x) / 64)
        epochs = max(4, math.ceil(3000 / steps_per_epoch))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
        model.train()
        for _ in range(epochs):
            for idx in torch.randperm(len(x)).split(64):
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                schedule.step()
    torch.set_num_threads(threads)
    return model.eval().requires_grad_(False), f"trained here ({epochs} epochs, v1 recipe)"


def compare_features(args, device) -> dict:
    session = EvaluationSession(args.data_root, device, args.n, floor=False)
    test, sample = session.reference, sample_mnist()
    old, old_source = legacy_classifier(args.old_classifier, sample.images, sample.labels)
    new = session.classifier.cpu()
    networks = {
        f"v1 {weights_sha256(old)[:12]}": old,
        f"v2 {session.classifier_info['weights_sha256'][:12]}": new,
    }
    accuracies = {name: accuracy(net, test.images, test.labels) for name, net in networks.items()}
    robust = {name: robustness(net, test.images, test.labels) for name, net in networks.items()}
    results = {}
    for name, net in networks.items():
        start = time.perf_counter()
        real = embed_all(net.layers, to_signed_unit(test.images))
        fids = ladder_fids(
            net.layers, test.images, test.labels, LADDERS, args.ladder_n, SEEDS, args.ladder_n * 2
        )
        for layer, features in real.items():
            zeros, dead = sparsity(features)
            results[f"{name} {layer}"] = {
                "effective_rank": effective_rank(features),
                "rank": numeric_rank(features),
                "zeros": zeros,
                "dead_units": dead,
                "dim": features.shape[1],
                "ladders": {
                    kind: {"fid_mean": v[layer].mean(1).tolist(), **separation(v[layer])}
                    for kind, v in fids.items()
                },
            }
        print(f"{name}: {100 * accuracies[name]:.2f}% on {test.source}, measured in "
              f"{time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip
    print_comparison(results, args.ladder_n)
    for name, readings in robust.items():
        shown = ", ".join(f"{k} {v:.2%}" for k, v in readings.items())
        print(f"{name} test accuracy under {shown}")
    print(f"v1: {old_source}; v2: the current classifier (cached), features {FEATURE_LAYER}")
    return {
        "accuracy": accuracies,
        "robustness": robust,
        "candidates": results,
        "ladders": LADDERS,
        "seeds": SEEDS,
    }


def robustness(net: nn.Module, images, labels) -> dict[str, float]:
    """Test accuracy with each corruption of ROBUSTNESS (one seeded draw)."""
    x = to_signed_unit(images)
    readings = {}
    for kind, level in ROBUSTNESS:
        noisy = corrupt(x, kind, level, torch.Generator().manual_seed(0))
        with torch.no_grad():
            predicted = torch.cat([net(chunk).argmax(1) for chunk in noisy.split(1000)])
        readings[f"{kind} {level}"] = float((predicted == labels).float().mean())
    return readings


def print_comparison(results: dict, n: int) -> None:
    """One row per candidate: rank, sparsity, and per ladder monotone/separated/min_z."""
    width = max(len(k) for k in results)
    head = f"{'candidate':<{width}}  {'dim':>3}  {'eff.rank':>8}  {'rank':>4}  {'zeros':>5}  dead"
    print(head + "".join(f"  {kind + ' (mono sep z)':>22}" for kind in LADDERS))
    for name, r in results.items():
        line = (
            f"{name:<{width}}  {r['dim']:>3}  {r['effective_rank']:>8.2f}  {r['rank']:>4}  "
            f"{r['zeros']:>5.2f}  {r['dead_units']:>4}"
        )
        for kind in LADDERS:
            lad = r["ladders"][kind]
            mark = (
                f"{'yes' if lad['monotone'] else 'NO':>3} {'yes' if lad['separated'] else 'NO':>3}"
            )
            line += f"  {mark:>10} {lad['min_z']:>11.2f}"
        print(line)
    fit = [k for k, r in results.items() if all(v["monotone"] for v in r["ladders"].values())]
    best = max(fit, key=lambda k: min(v["min_z"] for v in results[k]["ladders"].values()))
    print(
        f"ladders: {', '.join(f'{k} {v}' for k, v in LADDERS.items())} (rung 0 = clean), "
        f"{n} corrupted vs {2 * n} real test images, seeds {SEEDS}; mono: FID rises at every "
        "rung in every seed; sep: each rung's lowest FID is above the previous rung's highest; "
        "z: smallest gap between adjacent rung means / (sum of their sds over seeds)"
    )
    print(f"monotone on every ladder: {', '.join(fit)}; largest worst-case z: {best}")
    for name, r in results.items():
        means = "; ".join(
            f"{kind} " + " ".join(f"{v:.3g}" for v in lad["fid_mean"])
            for kind, lad in r["ladders"].items()
        )
        print(f"  FID means, {name}: {means}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default="~/.cache/ganlab/mnist")
    parser.add_argument("--run-dir", help="a training run (or checkpoint) to evaluate too")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--compare-features", action="store_true", help="old vs new features")
    parser.add_argument("--old-classifier", help="a v1 classifier cache file (else trained)")
    parser.add_argument("--ladder-n", type=int, default=2500, help="corrupted images per rung")
    args = parser.parse_args()
    device = resolve_device(args.device)
    out = (
        compare_features(args, device) if args.compare_features else reference_values(args, device)
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
