"""Benchmark: our top-k SAE (clipmech.sae) vs EleutherAI's sparsify, and chunk streaming vs random reads.

Data: tokens with a planted sparse structure (``--k-true`` of ``--atoms`` unit-norm atoms per token,
coefficients in [1, 2], Gaussian noise, an offset), written as an activation store in the pipeline's
layout (one zarr chunk per ``--chunk-images`` images, float16, crc32c; ``clipmech.stores.base``) and
read back through ``clipmech.sae.streaming``. 10 % of the images are held out.

1. SAE training: both SAEs get the same training batches (drawn once from our stream, so data
   loading counts for neither), the same n, k, steps, batch, learning rate (our n-scaled rate), Adam
   eps, AuxK (k_aux = d / 2, weight 1/32, dead after ``--dead-tokens`` tokens) and thread count. The
   reference is sparsify's ``SparseCoder`` (fused top-k encoder, sparse decoder) driven as its
   ``Trainer`` drives it for the FVU loss: decoder renormalised before each forward, AuxK from the dead
   mask, parallel gradient removed, Adam step; b_dec the mean of the first batch, as sparsify sets it.
   Steps alternate between the two, each timed alone, so load on the machine hits both alike.
   Reported: the held-out FVU of each (float64, about the held-out mean: predicting the mean gives 1)
   and its difference (goal: ours no worse by more than 0.01), and training tokens/s of each and the
   ratio ours / reference (goal >= 1).
2. Streaming: tokens/s of our chunk-sequential shuffle stream over the training images vs reading the
   same number of tokens one at a time at random (image, token) positions straight from the zarr array
   (each read decodes its chunk); goal: the stream >= 5x faster.

    python benchmarks/sae.py            # defaults: d 64, n 512, k 8, 1000 steps of 1024 tokens
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import zarr

from clipmech.sae.model import TopKSAE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from toys import write_site_store  # noqa: E402  (the tests' store writer: one site, the extraction's layout)

from clipmech.sae.streaming import ShuffleStream, SiteTokens, split_images
from clipmech.sae.train import ADAM_EPS, AUXK_COEF, SAETrainConfig, scaled_lr, train_step

SITE = "visual.blocks.1.hook_resid_pre"
VARIABLE = "visual_resid_pre"


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--d", type=int, default=64, help="token width")
    parser.add_argument("--atoms", type=int, default=256, help="planted atoms")
    parser.add_argument("--k-true", type=int, default=4, help="planted atoms per token")
    parser.add_argument("--noise", type=float, default=0.05, help="noise standard deviation per dimension")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--tokens-per-image", type=int, default=65)
    parser.add_argument("--chunk-images", type=int, default=50, help="images per zarr chunk")
    parser.add_argument("--expansion", type=float, default=8, help="n = expansion x d")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=2e-4, help="base learning rate at n = 2^14")
    parser.add_argument("--dead-tokens", type=int, default=100_000)
    parser.add_argument("--buffer-tokens", type=int, default=65_536)
    parser.add_argument("--random-reads", type=int, default=500, help="tokens read one at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, the same for both SAEs")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def planted_tokens(args: argparse.Namespace) -> np.ndarray:
    """(images, tokens, d) float32 tokens of the planted structure (module docstring)."""
    rng = np.random.default_rng(args.seed)
    n = args.images * args.tokens_per_image
    atoms_AD = rng.standard_normal((args.atoms, args.d))
    atoms_AD /= np.linalg.norm(atoms_AD, axis=1, keepdims=True)
    x_ND = np.zeros((n, args.d))
    for first in range(0, n, 65_536):
        last = min(first + 65_536, n)
        support_NK = np.argsort(rng.random((last - first, args.atoms)), axis=1)[:, : args.k_true]
        codes_NK = rng.uniform(1.0, 2.0, size=(last - first, args.k_true))
        x_ND[first:last] = np.einsum("nk,nkd->nd", codes_NK, atoms_AD[support_NK])
    x_ND += args.noise * rng.standard_normal((n, args.d)) + rng.standard_normal(args.d)
    return x_ND.reshape(args.images, args.tokens_per_image, args.d).astype(np.float32)


class Reference:
    """sparsify's SparseCoder trained as its Trainer trains it with the FVU loss (module docstring)."""

    def __init__(self, d: int, n: int, k: int, lr: float, dead_tokens: int, first_batch: torch.Tensor):
        if not torch.cuda.is_available():  # its Triton decoder needs a GPU; the eager one is its CPU path
            os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")
        from sparsify import SparseCoder, SparseCoderConfig

        torch.manual_seed(0)  # sparsify initialises from the global RNG
        self.sae = SparseCoder(d, SparseCoderConfig(num_latents=n, k=k))
        with torch.no_grad():
            self.sae.b_dec.copy_(first_batch.mean(dim=0))
        self.optimizer = torch.optim.Adam(self.sae.parameters(), lr=lr, eps=ADAM_EPS)
        self.since_fired = torch.zeros(n, dtype=torch.int64)
        self.dead_tokens = dead_tokens

    def step(self, x: torch.Tensor) -> None:
        self.sae.set_decoder_norm_to_unit_norm()
        out = self.sae(x, dead_mask=self.since_fired > self.dead_tokens)
        (out.fvu + AUXK_COEF * out.auxk_loss).backward()
        self.sae.remove_gradient_parallel_to_decoder_directions()
        self.optimizer.step()
        self.optimizer.zero_grad()
        with torch.no_grad():
            fired = torch.zeros_like(self.since_fired, dtype=torch.bool)
            fired[out.latent_indices.flatten()] = True
            self.since_fired += x.shape[0]
            self.since_fired[fired] = 0

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        self.sae.set_decoder_norm_to_unit_norm()
        return self.sae(x).sae_out


@torch.no_grad()
def heldout_fvu(reconstruct, batches) -> float:
    """1 - explained variance about the held-out mean, float64 accumulators (predicting the mean gives 1)."""
    count, total, squares, errors = 0, 0.0, 0.0, 0.0
    for x in batches:
        x64 = x.double()
        errors += float((x64 - reconstruct(x).double()).square().sum())
        total = total + x64.sum(dim=0)
        squares += float(x64.square().sum())
        count += len(x)
    mean = total / count
    return errors / (squares - count * float(mean.square().sum()))


def streaming_benchmark(store: Path, source: SiteTokens, args: argparse.Namespace) -> None:
    stream = ShuffleStream(source, args.batch_size, args.buffer_tokens, args.seed)
    n_batches = max(1, source.n_tokens // args.batch_size)
    start = time.perf_counter()
    batches = stream.batches()
    for _ in range(n_batches):
        next(batches)
    stream_rate = n_batches * args.batch_size / (time.perf_counter() - start)
    array = zarr.open_array(store / VARIABLE, mode="r")
    rng = np.random.default_rng(args.seed)
    train = np.flatnonzero(source.selected)
    images = rng.choice(train, size=args.random_reads)
    tokens = rng.integers(0, args.tokens_per_image, size=args.random_reads)
    start = time.perf_counter()
    for image, token in zip(images, tokens):
        np.asarray(array[image, 0, token, :], dtype=np.float32)
    random_rate = args.random_reads / (time.perf_counter() - start)
    print(
        f"streaming: chunk-sequential shuffle stream {stream_rate:,.0f} tokens/s ({n_batches} batches, buffer "
        f"{args.buffer_tokens:,} tokens, peak held {stream.max_tokens_held:,}); per-token random reads "
        f"{random_rate:,.0f} tokens/s ({args.random_reads} reads, chunks of {args.chunk_images} images)"
    )
    print(f"streaming ratio stream / random reads: {stream_rate / random_rate:.1f}x; goal >= 5")


def main() -> None:
    args = _parse_args()
    torch.set_num_threads(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="clipmech-bench-sae-"))
    store = write_site_store(workdir / "planted.zarr", planted_tokens(args), SITE, args.chunk_images)
    train_images, heldout_images = split_images(args.images, 0.1, args.seed)
    source = SiteTokens(store, SITE, "all", train_images)
    heldout = list(SiteTokens(store, SITE, "all", heldout_images).batches(4096))

    cfg = SAETrainConfig(
        expansion=args.expansion,
        k=args.k,
        dead_tokens=args.dead_tokens,
        lr=args.lr,
        n_tokens=args.steps * args.batch_size,
        batch_size=args.batch_size,
        buffer_tokens=args.buffer_tokens,
        seed=args.seed,
    )
    n = cfg.latents(args.d)
    lr = scaled_lr(args.lr, n)
    stream = ShuffleStream(source, args.batch_size, args.buffer_tokens, args.seed).batches()
    batches = [next(stream) for _ in range(args.steps)]

    ours = TopKSAE(args.d, n, args.k, seed=args.seed)
    ours.init_from_data(batches[0])
    optimizer = torch.optim.Adam(ours.parameters(), lr=lr, eps=ADAM_EPS)
    since_fired = torch.zeros(n, dtype=torch.int64)
    reference = Reference(args.d, n, args.k, lr, args.dead_tokens, batches[0])
    ours_seconds = reference_seconds = 0.0
    for x in batches:
        start = time.perf_counter()
        train_step(ours, optimizer, x, since_fired, cfg).tolist()  # .tolist(): the step's end, as a log write
        ours_seconds += time.perf_counter() - start
        start = time.perf_counter()
        reference.step(x)
        reference_seconds += time.perf_counter() - start
    ours.eval()
    fvu_ours = heldout_fvu(lambda x: ours(x)[0], heldout)
    fvu_reference = heldout_fvu(reference.reconstruct, heldout)
    tokens = args.steps * args.batch_size
    print(
        f"planted data: d {args.d}, {args.atoms} atoms x {args.k_true} per token, noise {args.noise}; "
        f"{source.n_tokens:,} training and {sum(len(x) for x in heldout):,} held-out tokens"
    )
    print(
        f"SAE: n {n}, k {args.k}, {args.steps} steps of {args.batch_size}, lr {lr:.3g}, k_aux {args.d // 2}, "
        f"threads {args.threads}"
    )
    dead_ours = float((since_fired >= args.dead_tokens).float().mean())
    dead_reference = float((reference.since_fired > args.dead_tokens).float().mean())
    print(f"dead fraction at the end: ours {dead_ours:.3f}, sparsify {dead_reference:.3f}")
    print(f"held-out FVU: ours {fvu_ours:.4f}, sparsify {fvu_reference:.4f}")
    print(f"FVU difference ours - sparsify: {fvu_ours - fvu_reference:+.4f}; goal <= 0.01")
    ours_rate, reference_rate = tokens / ours_seconds, tokens / reference_seconds
    print(f"training throughput: ours {ours_rate:,.0f} tokens/s, sparsify {reference_rate:,.0f} tokens/s")
    print(f"throughput ratio ours / sparsify: {ours_rate / reference_rate:.2f}; goal >= 1")
    streaming_benchmark(store, source, args)
    shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
