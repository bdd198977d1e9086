"""The manifest image loader with 1 and 2 workers vs a plain one-image-at-a-time loop, side by side in one run.

Writes ``--images`` JPEGs of photographs at ImageNet-like sizes (500 x 375 and 375 x 500 crops of the
colour photographs that ship inside scikit-image, quality 90) into a temporary directory with their
manifest, then times one pass over them with (a) a loop ``preprocess(Image.open(p).convert("RGB"))``
in this process, (b) ``clipmech.data.loader.image_loader`` with 1 worker and (c) with 2 workers, all
with open_clip's eval transform at ViT-B/32's size (``open_clip.image_transform(224, is_train=False)``).
Runs alternate (a, b, c, a, ...) so that load on the machine hits all alike; prints the median
images/s, the ratios (b)/(a) and (c)/(a) (target for (c)/(a): >= 1.8 on 2 free cores) and the rate of
one core, which sizes the CPUs a GPU needs. It also prints the CPU time per image of each path (this
process and its workers, from psutil): on a loaded machine the workers do not get the cores they would
have on idle ones, so the wall-clock ratios fall, while 2 x (a) / (c) in CPU time still tells the ratio
(c)/(a) to expect on 2 idle cores, and 1 / (a) in CPU time the rate of one idle core.

    python benchmarks/loader.py --images 256 --batch-size 64
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import open_clip
import pandas as pd
import psutil
import skimage
import torch
from PIL import Image

from clipmech.data import loader

#: Colour photographs inside scikit-image's package (no download).
PHOTOS = (
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg",
    "retina.jpg", "ihc.png",
)  # fmt: skip


def write_photos(directory: Path, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` JPEGs cropped and resized from scikit-image's photographs; their manifest (plain files)."""
    rng = np.random.default_rng(seed)
    data = Path(skimage.__file__).parent / "data"
    photos = [Image.open(data / name).convert("RGB") for name in PHOTOS]
    sources = []
    for i in range(n):
        photo = photos[i % len(photos)]
        size = (500, 375) if rng.random() < 0.75 else (375, 500)
        scale = min(photo.width / size[0], photo.height / size[1]) * rng.uniform(0.6, 1.0)
        width, height = int(size[0] * scale), int(size[1] * scale)
        left, top = int(rng.integers(0, photo.width - width + 1)), int(rng.integers(0, photo.height - height + 1))
        image = photo.crop((left, top, left + width, top + height)).resize(size, Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        sources.append(f"{i:05d}.jpg")
        image.save(directory / sources[-1], "JPEG", quality=90)
    return pd.DataFrame({"index": np.arange(n, dtype=np.int64), "source": sources, "member": [""] * n})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--size", type=int, default=224, help="the transform's size (ViT-B/32: 224)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gpu-rate", type=float, default=3000.0, help="images/s of a GPU, for the sizing example")
    args = parser.parse_args()

    torch.set_num_threads(1)  # the workers run 1 thread each; so does the loop, to compare one core with one
    preprocess = open_clip.image_transform(args.size, is_train=False)
    directory = Path(tempfile.mkdtemp(prefix="clipmech-bench-loader-"))
    try:
        manifest = write_photos(directory, args.images)
        paths = [directory / source for source in manifest["source"]]
        dataset = loader.ManifestImages(manifest, directory, preprocess)
        loaders = {w: loader.image_loader(dataset, batch_size=args.batch_size, workers=w) for w in (1, 2)}

        def loop() -> None:
            for first in range(0, len(paths), args.batch_size):
                batch = paths[first : first + args.batch_size]
                torch.stack([preprocess(Image.open(p).convert("RGB")) for p in batch])

        def load(workers: int) -> None:
            for _index, _pixels in loaders[workers]:
                pass

        runs = {"loop": loop, 1: lambda: load(1), 2: lambda: load(2)}
        for run in runs.values():  # warm-up: file cache, worker start-up (the workers persist)
            run()
        times, cpu = {key: [] for key in runs}, {key: [] for key in runs}
        for _ in range(args.repeats):
            for key, run in runs.items():
                cpu_start, start = cpu_seconds(), time.perf_counter()
                run()
                times[key].append(time.perf_counter() - start)
                cpu[key].append(cpu_seconds() - cpu_start)
        loaders.clear()  # the workers exit before their files go
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    rate = {key: args.images / statistics.median(values) for key, values in times.items()}
    cpu_ms = {key: 1000 * statistics.median(values) / args.images for key, values in cpu.items()}
    print(
        f"{args.images} JPEGs (500x375 / 375x500, quality 90) -> {args.size} px, batch {args.batch_size}, "
        f"{args.repeats} runs, medians"
    )
    print(f"(a) loop in this process:   {rate['loop']:7.1f} images/s")
    print(f"(b) image_loader, 1 worker:  {rate[1]:7.1f} images/s, (b)/(a) = {rate[1] / rate['loop']:.2f}")
    print(
        f"(c) image_loader, 2 workers: {rate[2]:7.1f} images/s, (c)/(a) = {rate[2] / rate['loop']:.2f} (target >= 1.8)"
    )
    print(
        f"CPU time per image (this process and its workers): (a) {cpu_ms['loop']:.1f} ms, (b) {cpu_ms[1]:.1f} ms, "
        f"(c) {cpu_ms[2]:.1f} ms; so on 2 idle cores (c)/(a) would be about "
        f"{2 * cpu_ms['loop'] / cpu_ms[2]:.2f} (2 x (a) / (c): what the load on the machine does not change)"
    )
    core, worker = 1000 / cpu_ms["loop"], 1000 / cpu_ms[2]
    print(
        f"one core decodes and transforms {rate['loop']:.0f} images/s here ((a), wall clock), {core:.0f} images/s "
        f"per CPU second (what an idle core does); through the loader {worker:.0f} images/s per CPU second (the "
        "batches' hand-over in shared memory and the collecting process included)"
    )
    print(
        f"a GPU that consumes X images/s needs about X / {worker:.0f} workers plus one core for the process that "
        f"runs the model: set cpus_per_task to ceil(X / {worker:.0f}) + 1 and pass workers = cpus_per_task - 1 "
        f"(X = {args.gpu_rate:.0f}: cpus_per_task {math.ceil(args.gpu_rate / worker) + 1})"
    )


def cpu_seconds() -> float:
    """CPU seconds (user + system) this process and its live children (the loaders' workers) have used."""
    me = psutil.Process()
    return sum(sum(process.cpu_times()[:2]) for process in [me, *me.children(recursive=True)])


if __name__ == "__main__":
    main()
