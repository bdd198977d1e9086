"""Activation-patching throughput: the batched engine vs one forward per patch vs nnsight, side by side.

On the same pairs (random images) and components (every position of every block of each family),
the same denoising sweep runs three ways: (a) ``clipmech.patching.engine.sweep``, ROME's batched
layout (clean, corrupted and all patched copies of a pair in one pass of up to ``--batch-size``
rows); (b) ``engine.loop_sweep``, one forward per pair and patch set; (c) ``tests/nnsight_sweep.py``,
one nnsight trace per component with all pairs in it (on a copy of the model, the copy timed with
it, so that nnsight's wrapped module forwards do not slow the other two). Runs alternate (a, b, c,
a, ...) so that load on the machine hits all alike; ratios are median times over repeats, loop /
batched and nnsight / batched. The metrics of the three agree to float rounding (printed as max
|difference|). On a shared machine, ``--threads`` above the idle cores slows the many small
operations of (b) and (c) most.

``--precision`` takes a comma-separated list of ``extraction.precision`` values: each is measured in
turn, the three ways under its autocast (:mod:`clipmech.models.precision`), with the largest
difference of the batched engine's metrics from the first precision's. ``benchmarks/gpu/run.sh`` runs
it on a GPU.

    python benchmarks/patching.py --model clipmech-vit-tiny --pairs 4 --batch-size 256
    python benchmarks/patching.py --model ViT-B-16 --positions 4 --device cuda --precision fp32,bf16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import open_clip
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from nnsight_sweep import FAMILY_VALUES, nnsight_sweep  # noqa: E402
from toys import vision_pairs  # noqa: E402

from clipmech.models import loading  # noqa: E402
from clipmech.models.precision import PRECISIONS, autocast  # noqa: E402
from clipmech.models.towers import tower  # noqa: E402
from clipmech.patching import engine  # noqa: E402
from clipmech.patching.components import components  # noqa: E402

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="clipmech-vit-tiny", help="open_clip ViT architecture (random weights)")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument(
        "--families", default="resid_pre,attn_out,mlp_out", help=f"comma-separated, of {', '.join(FAMILY_VALUES)}"
    )
    parser.add_argument("--positions", type=int, default=None, help="token positions 0..n-1 (default: all)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", help=f"comma-separated, of {', '.join(PRECISIONS)}")
    args = parser.parse_args()
    families = args.families.split(",")
    unknown = [f for f in families if f not in FAMILY_VALUES]
    if unknown:
        parser.error(f"unknown families {unknown}; valid: {', '.join(FAMILY_VALUES)}")
    precisions = args.precision.split(",")
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        parser.error(f"unknown precisions {unknown}; valid: {', '.join(PRECISIONS)}")

    torch.set_num_threads(args.threads)
    device = loading.resolve_device(args.device)
    torch.manual_seed(0)
    model = open_clip.create_model(args.model, pretrained=None).to(device=device, dtype=DTYPES[args.dtype]).eval()
    info = tower(model, "visual")
    clean, corrupt, metric = vision_pairs(model, args.pairs, seed=0)
    clean, corrupt = clean.to(device), corrupt.to(device)
    sets = [[c] for c in components(info, families, args.positions)]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    runs = {
        "batched": lambda s: engine.sweep(
            model, model.encode_image, metric, clean, corrupt, s, batch_size=args.batch_size
        ),
        "loop": lambda s: engine.loop_sweep(model, model.encode_image, metric, clean, corrupt, s),
        "nnsight": lambda s: nnsight_sweep(model, "visual", metric, clean, corrupt, s),
    }

    def timed(name):
        sync()
        start = time.perf_counter()
        result = runs[name](sets)
        sync()
        return time.perf_counter() - start, result

    def metrics(result):
        return np.concatenate([result.m_clean_Q, result.m_corrupt_Q, result.m_patched_QK.ravel()])

    print(
        f"model {args.model} ({args.dtype}, {info.n_layers} blocks, {info.n_tokens} tokens), {args.pairs} pairs, "
        f"{len(sets)} components ({', '.join(families)}), batch {args.batch_size}, device {device}, "
        f"threads {args.threads}, {args.repeats} repeats"
    )
    n_runs = args.pairs * (len(sets) + 2)
    first_batched = None
    for precision in precisions:
        with autocast(device, precision):
            for run in runs.values():  # warm-up (allocator, kernels of this dtype, nnsight's first trace)
                run(sets[:2])
            times = {name: [] for name in runs}
            results = {}
            for _ in range(args.repeats):
                for name in runs:
                    elapsed, results[name] = timed(name)
                    times[name].append(elapsed)
        median = {name: statistics.median(t) for name, t in times.items()}

        def gap(a, b):
            return float(np.abs(metrics(results[a]) - metrics(results[b])).max())

        print(f"precision {precision}:")
        for name, label in (
            ("batched", "batched engine.sweep"),
            ("loop", "engine.loop_sweep"),
            ("nnsight", "nnsight, a trace per component"),
        ):
            print(f"  {label + ':':32s} median {median[name]:.2f} s ({n_runs / median[name]:.0f} runs/s)")
        print(
            f"  ratio loop / batched: {median['loop'] / median['batched']:.2f}; "
            f"ratio nnsight / batched: {median['nnsight'] / median['batched']:.2f}"
        )
        print(
            f"  max |difference| of the metrics: batched vs loop {gap('batched', 'loop'):.2e}, "
            f"batched vs nnsight {gap('batched', 'nnsight'):.2e}, loop vs nnsight {gap('loop', 'nnsight'):.2e}"
        )
        if first_batched is None:
            first_batched = metrics(results["batched"])
        else:
            difference = np.abs(metrics(results["batched"]) - first_batched)
            print(
                f"  batched metrics vs {precisions[0]}: max |difference| {difference.max():.2e} "
                f"({difference.max() / first_batched.std():.3f} of their standard deviation)"
            )


if __name__ == "__main__":
    main()
