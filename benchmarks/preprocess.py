"""Training's batched resize vs open_clip's per-image PIL transform, measured side by side in one run.

Both turn the same rendered Shapes batch (uint8, 224 px) into the model's normalised input:
``loading.preprocess_images`` (the model's eval transform, one PIL call per image: what evaluation
and extraction use) and ``loading.preprocess_square_batch`` (one tensor resize for the batch: what
training uses). Runs alternate so that load on the machine hits both alike; prints the median
times, the speed-up and the largest difference in grey levels.

    python benchmarks/preprocess.py --architecture clipmech-vit-tiny --images 128
"""

from __future__ import annotations

import argparse
import statistics
import time

import open_clip
import torch

from clipmech.data import shapes
from clipmech.models import loading, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--architecture", default="clipmech-vit-tiny", help="open_clip architecture (its eval transform)"
    )
    parser.add_argument("--images", type=int, default=128, help="a training batch")
    parser.add_argument("--image-size", type=int, default=224, help="rendered size before the transform")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model, _, preprocess = open_clip.create_model_and_transforms(args.architecture)
    cfg = model.visual.preprocess_cfg
    images, _ = train.render_batch(shapes.stream(0, shapes.STREAM_TRAIN), args.images, args.image_size, [1, 2, 3, 4, 5])

    def timed(fn) -> tuple[float, torch.Tensor]:
        start = time.perf_counter()
        out = fn()
        return time.perf_counter() - start, out

    timed(lambda: loading.preprocess_square_batch(images, cfg))  # warm-up
    pil_times, batched_times = [], []
    for _ in range(args.repeats):
        t, reference = timed(lambda: loading.preprocess_images(images, preprocess))
        pil_times.append(t)
        t, batched = timed(lambda: loading.preprocess_square_batch(images, cfg))
        batched_times.append(t)
    grey_levels = float((batched - reference).abs().max()) * min(cfg["std"]) * 255
    pil, fast = statistics.median(pil_times), statistics.median(batched_times)
    print(f"{args.architecture}: {args.images} images {args.image_size} px -> {cfg['size']}, threads {args.threads}")
    print(f"PIL per image (eval transform): median {pil * 1000:.1f} ms")
    print(f"batched tensor resize:          median {fast * 1000:.1f} ms")
    print(f"speed-up: {pil / fast:.1f}x; largest difference {grey_levels:.2f} grey levels")


if __name__ == "__main__":
    main()
