"""Extraction throughput vs a bare forward pass, measured side by side in one run.

Extraction = forward with the MLP-output sites hooked on every block + token reductions + float16 copy of
every token + finiteness check + checksummed zarr region write + progress record + the publish check
(the per-batch path of clipmech.stores.activation_extraction.extract); bare = the same
model's ``encode_image`` on the same preprocessed batches. Runs alternate (bare, extraction, bare,
...) so that load on the machine hits both alike; the ratio is extraction time / bare time, median
over repeats. Target: <= 1.15.

``--precision`` takes a comma-separated list of ``extraction.precision`` values: each is measured in
turn on the same model and batches, bare and extraction both under its autocast
(:mod:`clipmech.models.precision`), and the bare forward's speed-up over the first is printed.
``benchmarks/gpu/run.sh`` runs it on a GPU.

    python benchmarks/extraction.py --model ViT-B-32 --images 128 --batch-size 32
    python benchmarks/extraction.py --model ViT-B-16 --device cuda --precision fp32,bf16
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import open_clip
import torch

from clipmech.hooks.sites import hooked
from clipmech.models import loading
from clipmech.models.precision import PRECISIONS, autocast
from clipmech.models.towers import tower
from clipmech.stores import base
from clipmech.stores.activation_extraction import (
    DEFAULT_SITES,
    StoreProvenance,
    activations_batch,
    plan_sites,
    store_template,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-32", help="open_clip architecture (random weights)")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-tokens", action="store_true", help="store reductions only")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", help=f"comma-separated, of {', '.join(PRECISIONS)}")
    args = parser.parse_args()
    precisions = args.precision.split(",")
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        parser.error(f"unknown precisions {unknown}; valid: {', '.join(PRECISIONS)}")

    torch.set_num_threads(args.threads)
    device = loading.resolve_device(args.device)
    torch.manual_seed(0)
    model = open_clip.create_model(args.model, pretrained=None).to(device).eval()
    size = model.visual.image_size
    size = size[0] if isinstance(size, tuple) else size
    generator = torch.Generator().manual_seed(0)
    batches = [
        torch.randn(min(args.batch_size, args.images - i), 3, size, size, generator=generator).to(device)
        for i in range(0, args.images, args.batch_size)
    ]
    info = tower(model, "visual")
    plan = plan_sites(model, DEFAULT_SITES, None)
    reductions = ("mean", "max", "cls")
    save_tokens = not args.no_tokens
    prov = StoreProvenance(
        model="bench",
        architecture=args.model,
        weights="random-init",
        preprocess="none",
        dataset="random",
        dataset_sha256="none",
        layers=plan.layers,
        reductions=reductions,
        save_tokens=save_tokens,
        batch_size=args.batch_size,
        clipmech_version="bench",
        open_clip_version=open_clip.__version__,
        torch_version=torch.__version__,
        sites=plan.sites,
        code="bench",
        precision="fp32",
    )
    layout = {"n_prefix_tokens": info.n_prefix_tokens, "grid_rows": info.grid[0], "grid_cols": info.grid[1]}
    batch_sites = {**dict.fromkeys((*reductions, "tokens"), plan.mlp_sites), "embedding": "the image embedding"}
    workdir = Path(tempfile.mkdtemp(prefix="clipmech-bench-"))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def bare() -> float:
        sync()
        start = time.perf_counter()
        with torch.inference_mode():
            for pixels in batches:
                model.encode_image(pixels, normalize=True).float().cpu()
        sync()
        return time.perf_counter() - start

    def extraction(run: int, precision: str) -> float:
        store = workdir / f"s{run}.zarr"
        run_prov = dataclasses.replace(prov, precision=precision)
        sync()
        start = time.perf_counter()

        def template():
            return store_template(
                args.images, plan.layers, info.n_tokens, info.width, int(model.visual.output_dim), args.batch_size,
                run_prov, layout,
            )  # fmt: skip

        first = base.begin_store(store, run_prov, template)
        with hooked(model, capture=plan.sites) as cache, torch.inference_mode():
            for pixels in batches:
                batch = activations_batch(
                    model, cache, plan, pixels, None, reductions, save_tokens, info.n_prefix_tokens
                )
                base.write_batch(store, batch, first, first + len(pixels), "bench", batch_sites)
                first += len(pixels)
        base.publish_store(store, "activation store")
        sync()
        elapsed = time.perf_counter() - start
        shutil.rmtree(store)
        return elapsed

    print(
        f"model {args.model} ({len(plan.layers)} blocks x {info.width} units, {info.n_tokens} tokens), "
        f"{args.images} images, batch {args.batch_size}, device {device}, threads {args.threads}, "
        f"tokens stored: {save_tokens}"
    )
    first_bare = None
    for precision in precisions:
        with autocast(device, precision):
            bare()  # warm-up (allocator, kernels of this dtype)
            ratios, bare_times, extract_times = [], [], []
            for run in range(args.repeats):
                b = bare()
                e = extraction(run, precision)
                bare_times.append(b)
                extract_times.append(e)
                ratios.append(e / b)
        bare_median, extract_median = statistics.median(bare_times), statistics.median(extract_times)
        first_bare = first_bare or bare_median
        print(f"precision {precision}:")
        print(f"  bare forward: median {bare_median:.2f} s ({args.images / bare_median:.1f} img/s)")
        print(f"  extraction:   median {extract_median:.2f} s ({args.images / extract_median:.1f} img/s)")
        print(
            f"  ratio extraction / bare forward: median {statistics.median(ratios):.3f} "
            f"(runs: {', '.join(f'{r:.3f}' for r in ratios)}); target <= 1.15"
        )
        print(f"  bare forward speed-up over {precisions[0]}: {first_bare / bare_median:.2f}x")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
