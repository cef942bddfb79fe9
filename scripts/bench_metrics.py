"""Reference values of ganlab's metrics, and the time one evaluation takes.

    python scripts/bench_metrics.py --data-root ../shared/data/mnist [--run-dir DIR] [--json F]

Prints a table (and JSON): the classifier's accuracy, the metrics of real training images vs
the test split (the floor), of test images with Gaussian noise added (σ in [-1, 1] units),
and of a trained run's generator when --run-dir is given; plus seconds per evaluation of
``--n`` samples on the current device. Run it on the GPU and the CPU to compare.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ganlab.build import load_generator
from ganlab.metrics.evaluator import serve
from ganlab.metrics.session import EvaluationSession
from ganlab.runtime import resolve_device, to_signed_unit
from ganlab.sampling import sample_fn

NOISE = (0.1, 0.2, 0.4, 0.8)
SHOWN = ("fid", "kid", "mnist_score", "classes_covered", "precision", "recall")


def noisy(images_u8: torch.Tensor, sigma: float):
    """A ``generate`` serving the images with N(0, σ²) noise, in order."""
    x = to_signed_unit(images_u8)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    return serve((x + sigma * noise).clamp(-1, 1))


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default="~/.cache/ganlab/mnist")
    parser.add_argument("--run-dir", help="a training run (or checkpoint) to evaluate too")
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    device = resolve_device(args.device)

    session, setup_s = timed(lambda: EvaluationSession(args.data_root, device, args.n))
    info, reference = session.classifier_info, session.reference
    rows: dict[str, dict[str, float]] = {}
    if session.floor_set is not None:
        rows[f"real {session.floor_set.source} (floor)"] = session.floor()
    # The reference images themselves with noise added (σ = 0 would score a perfect 0).
    for sigma in NOISE:
        rows[f"test + noise σ={sigma}"] = session.metrics(noisy(reference.images, sigma))
    eval_s = None
    if args.run_dir:
        G, path, state = load_generator(args.run_dir, device)
        z_dim = state["config"]["model"]["z_dim"]
        cfg = state["config"]
        name = f"{cfg['loss']['name']}/{cfg['model']['name']} step {state['step']}"
        rows[name], eval_s = timed(lambda: session.metrics(sample_fn(G, z_dim, device)))

    width = max(len(r) for r in rows)
    print(f"{'set':<{width}}  " + "  ".join(f"{k:>15}" for k in SHOWN))
    for name, metrics in rows.items():
        print(f"{name:<{width}}  " + "  ".join(f"{metrics[k]:>15.4g}" for k in SHOWN))
    print(
        f"device {device}; classifier {info['weights_sha256'][:12]}: "
        f"{100 * info['test_accuracy']:.2f}% on {info['test_source']} "
        f"(trained on {info['train_source']}); n = {session.n}; classifier and real embedding "
        f"{setup_s:.2f} s" + (f"; one evaluation of a generator {eval_s:.2f} s" if eval_s else "")
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "device": str(device),
                    "classifier": info,
                    "n": session.n,
                    "seconds": {"real_embedding": setup_s, "evaluation": eval_s},
                    "rows": rows,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
