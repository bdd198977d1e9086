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
   Steps alternate between the two, each timed alone, so load on the machine hits both alike; the
   first step of each is not timed (it sets up CUDA kernels, and sparsify's Triton compiles them).
   Reported: the held-out FVU of each (float64, about the held-out mean: predicting the mean gives 1)
   and its difference (goal: ours no worse by more than 0.01), and training tokens/s of each and the
   ratio ours / reference (goal >= 1).
2. Streaming: tokens/s of our chunk-sequential shuffle stream over the training images vs reading the
   same number of tokens one at a time at random (image, token) positions straight from the zarr array
   (each read decodes its chunk); goal: the stream >= 5x faster.
3. Latents held sparse: a random SAE of ``--eval-latents`` latents (k ``--eval-k``) on Gaussian tokens of
   ``--eval-images`` images x ``--eval-tokens`` tokens (a class token and the patches) of width
   ``--eval-d``. Each computation reports its CPU time and the rise of the process's peak RSS over its
   resident size, both measured after a warm-up on 4 images, the peak reset before it (Linux
   ``/proc/self/clear_refs``, freed heap returned first); the sparse computation runs first, so memory
   the process keeps can only lower the dense one's figure. (a) MiCLIP's SAE unit set: the dense
   (N, T', n) latents with the image-level activations, maps and typical firing values read from them
   (as before the top-k codes), vs :func:`clipmech.miclip.evaluation.sae_set` on top-k codes; (b) the
   SAE alignment's per-latent scores (image and patch AUROC, AP, Purity, entropy) of 16 random
   concepts: dense column blocks with scikit-learn's per-latent ``average_precision_score`` and the
   dense patch ranks (as before), vs :func:`clipmech.sae.alignment.score_units` on the sparse latents,
   the encoding included in both. Reported: both, their ratios (goals: memory and CPU ratios > 1) and
   whether the results agree (image activations, maps, AUROCs, Purity and entropy exactly, typical
   firing and AP to float64 rounding).

    python benchmarks/sae.py            # defaults: d 64, n 512, k 8, 1000 steps of 1024 tokens; part 3:
                                        # n 4096, k 32, 32 images x 197 tokens of width 768

``--device cuda`` trains both SAEs of part 1 on the GPU (sparsify with its Triton decoder), the batches
already there; ``--no-latents`` leaves out part 3, a measure of CPU time and memory, whose imports
(clipmech.miclip) also need wordfreq. ``benchmarks/gpu/run.sh`` runs it so.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse
import torch
import zarr
from sklearn.metrics import average_precision_score

from clipmech.analyses import concepts, dead, selectivity
from clipmech.models import loading
from clipmech.sae import alignment, latents
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
    parser.add_argument("--eval-latents", type=int, default=4096, help="part 3: SAE latents")
    parser.add_argument("--eval-k", type=int, default=32, help="part 3: SAE k")
    parser.add_argument("--eval-images", type=int, default=32, help="part 3: evaluated images")
    parser.add_argument("--eval-tokens", type=int, default=197, help="part 3: tokens per image, the class token first")
    parser.add_argument("--eval-d", type=int, default=768, help="part 3: token width")
    parser.add_argument("--device", default="cpu", help="part 1's device: cpu, cuda, auto (CUDA when present)")
    parser.add_argument("--no-latents", action="store_true", help="leave out part 3")
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
        if first_batch.device.type != "cuda":  # its Triton decoder needs a GPU; the eager one is its CPU path
            os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")
        from sparsify import SparseCoder, SparseCoderConfig

        torch.manual_seed(0)  # sparsify initialises from the global RNG (on the CPU, whatever the device)
        self.sae = SparseCoder(d, SparseCoderConfig(num_latents=n, k=k)).to(first_batch.device)
        with torch.no_grad():
            self.sae.b_dec.copy_(first_batch.mean(dim=0))
        self.optimizer = torch.optim.Adam(self.sae.parameters(), lr=lr, eps=ADAM_EPS)
        self.since_fired = torch.zeros(n, dtype=torch.int64, device=first_batch.device)
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
def heldout_fvu(reconstruct, batches, device) -> float:
    """1 - explained variance about the held-out mean, float64 accumulators (predicting the mean gives 1)."""
    count, total, squares, errors = 0, 0.0, 0.0, 0.0
    for x in batches:
        x = x.to(device)
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


def _rss_bytes(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak since the last reset) of this process, from ``/proc/self/status``."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}: part 3 measures memory on Linux only")


def _reset_peak() -> int:
    """Return freed heap to the system (glibc ``malloc_trim``), reset the peak RSS to the resident size
    (``/proc/self/clear_refs``, Linux >= 4.0) and return that size."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    return _rss_bytes("VmRSS")


def _eval_setup(args: argparse.Namespace) -> tuple[TopKSAE, np.ndarray, np.ndarray, np.ndarray]:
    """Part 3's seeded SAE, tokens (N, T, d) float32, image presence (N, 16) and patch presence (N, P, 16)."""
    rng = np.random.default_rng(args.seed)
    sae = TopKSAE(args.eval_d, args.eval_latents, args.eval_k, seed=args.seed).eval()
    tokens_NTD = rng.standard_normal((args.eval_images, args.eval_tokens, args.eval_d), dtype=np.float32)
    present_NF = rng.random((args.eval_images, 16)) < 0.3
    patch_present_NPF = rng.random((args.eval_images, args.eval_tokens - 1, 16)) < 0.1
    return sae, tokens_NTD, present_NF, patch_present_NPF


def _dense_unit_set(sae, tokens_NTD, positions, grid):
    from clipmech.miclip import units as miclip_units

    """MiCLIP's SAE unit set as it was computed from dense latents: image-level activations, maps, typical firing."""
    patch = positions >= 1
    with torch.inference_mode():
        z_NTn = np.zeros((tokens_NTD.shape[0], positions.size, sae.n_latents), dtype=np.float32)
        for start in range(0, tokens_NTD.shape[0], 64):  # 64 images per encoder call
            x_BD = torch.from_numpy(tokens_NTD[start : start + 64].reshape(-1, tokens_NTD.shape[-1]))
            z_NTn[start : start + 64] = sae.encode(x_BD).numpy().reshape(-1, positions.size, sae.n_latents)
    acts_Nn = latents.image_activations(z_NTn, patch).astype(np.float64)
    maps = z_NTn[:, patch].transpose(0, 2, 1).reshape(z_NTn.shape[0], z_NTn.shape[2], *grid)
    top_Kn = miclip_units.top_images(acts_Nn, miclip_units.TYPICAL_FRACTION)
    values_KnP = z_NTn[:, patch][top_Kn, :, np.arange(top_Kn.shape[1])[None, :]].astype(np.float64)
    firing = values_KnP != 0
    count_n, total_n = firing.sum(axis=(0, 2)), np.where(firing, values_KnP, 0.0).sum(axis=(0, 2))
    typical_n = np.divide(total_n, count_n, out=np.zeros_like(total_n), where=count_n > 0)
    return acts_Nn, maps, typical_n


def _sparse_unit_set(sae, tokens_NTD, positions, grid):
    from clipmech.miclip import evaluation as miclip_evaluation

    """:func:`clipmech.miclip.evaluation.sae_set`: the same from top-k codes (maps read lazily; the image-level
    latents spilled to a scratch folder, read back whole)."""
    with tempfile.TemporaryDirectory(prefix="miclip-sae-") as scratch:
        unit_set = miclip_evaluation.sae_set(
            sae, positions, 1, miclip_evaluation.array_batches(tokens_NTD), grid, scratch=scratch
        )
        acts_Nn = np.asarray(unit_set.acts_NU[:], dtype=np.float64)
    return acts_Nn, unit_set.maps, unit_set.embed.keywords["typical_U"]


def _dense_scores(sae, x_BD, present_NF, patch_present_NPF, patch_T):
    """The alignment's per-latent scores as they were computed: dense encodes of 4096 tokens made sparse, dense
    column blocks, the dense patch ranks and scikit-learn's AP latent by latent."""
    with torch.inference_mode():
        parts = [
            scipy.sparse.csr_matrix(sae.encode(torch.from_numpy(x_BD[start : start + 4096])).numpy())
            for start in range(0, x_BD.shape[0], 4096)
        ]
    acts_BU = scipy.sparse.vstack(parts).tocsc()
    n_images, n_tokens = present_NF.shape[0], patch_T.size
    chunk = max(1, alignment.BLOCK_ELEMENTS // x_BD.shape[0])
    scores: dict[str, list] = {"image": [], "patch": [], "ap": [], "purity": [], "entropy": []}
    for start in range(0, acts_BU.shape[1], chunk):
        block_NTU = acts_BU[:, start : start + chunk].toarray().reshape(n_images, n_tokens, -1)
        image_NU = latents.image_activations(block_NTU, patch_T)
        dead_U = dead.dead_units(image_NU)[:, None]
        scores["image"].append(np.where(dead_U, np.nan, concepts.auroc(image_NU, present_NF)))
        patch_BU = block_NTU[:, patch_T].reshape(-1, block_NTU.shape[2])
        scores["patch"].append(np.where(dead_U, np.nan, concepts.auroc(patch_BU, patch_present_NPF.reshape(-1, 16))))
        ap_UF = np.full((image_NU.shape[1], 16), np.nan)
        for f in range(16):
            y_N = present_NF[:, f]
            if 0 < y_N.sum() < y_N.size:
                y_NU = np.repeat(y_N[:, None], image_NU.shape[1], 1)
                ap_UF[:, f] = average_precision_score(y_NU, image_NU.astype(np.float64), average=None)
        scores["ap"].append(np.where(dead_U, np.nan, ap_UF))
        top_KU = np.argsort(-image_NU, axis=0, kind="stable")[:4]
        scores["purity"].append(np.where(dead_U, np.nan, present_NF[top_KU].mean(axis=0)))
        entropy_U = selectivity.entropy(selectivity.affinity(present_NF.astype(float), top_KU))
        scores["entropy"].append(np.where(dead_U[:, 0], np.nan, entropy_U))
    return {name: np.concatenate(values) for name, values in scores.items()}


def _sparse_scores(sae, x_BD, present_NF, patch_present_NPF, patch_T):
    """:func:`clipmech.sae.alignment.score_units` on the sparse latents of the alignment."""
    acts_BU = alignment.method_activations("sae", x_BD, sae=sae)
    scores = alignment.score_units(
        acts_BU, n_images=present_NF.shape[0], patch_tokens=patch_T, present_NF=present_NF,
        patch_present_NSF=patch_present_NPF, counts_NF=present_NF.astype(float), purity_k=4, entropy_k=4,
    )  # fmt: skip
    return {
        "image": scores.auroc_image_UF, "patch": scores.auroc_patch_UF, "ap": scores.ap_UF,
        "purity": scores.purity_UF, "entropy": scores.entropy_U,
    }  # fmt: skip


def _measure(task: str, setup, args: argparse.Namespace):
    """Run one of part 3's computations: (result, CPU seconds, rise of the peak RSS over the resident size, bytes)."""
    sae, tokens_NTD, present_NF, patch_present_NPF = setup
    positions, patch_T = np.arange(args.eval_tokens), np.arange(args.eval_tokens) >= 1
    grid = (1, args.eval_tokens - 1)

    def run(n_images: int):
        if task.endswith("unit_set"):
            return globals()[f"_{task}"](sae, tokens_NTD[:n_images], positions, grid)
        x_BD = tokens_NTD[:n_images].reshape(-1, args.eval_d)
        return globals()[f"_{task}"](sae, x_BD, present_NF[:n_images], patch_present_NPF[:n_images], patch_T)

    run(min(4, args.eval_images))  # a warm-up: lazy imports, code pages and thread pools are not the computation's
    resident = _reset_peak()
    start = time.process_time()
    result = run(args.eval_images)
    seconds = time.process_time() - start
    peak = _rss_bytes("VmHWM")
    if task.endswith("unit_set"):  # every map, for the agreement: after the measurement
        result = (result[0], np.asarray(result[1][:, :]), result[2])
    return result, seconds, max(0, peak - resident)


def sparse_latents_benchmark(args: argparse.Namespace) -> None:
    mib = 2**20
    print(
        f"latents held sparse: n {args.eval_latents}, k {args.eval_k}, {args.eval_images} images x "
        f"{args.eval_tokens} tokens of width {args.eval_d}, threads {args.threads}"
    )
    torch.set_num_threads(args.threads)
    setup = _eval_setup(args)
    codes, codes_s, codes_b = _measure("sparse_unit_set", setup, args)
    dense, dense_s, dense_b = _measure("dense_unit_set", setup, args)
    print(
        f"MiCLIP SAE unit set: dense latents {dense_s:.2f} CPU s, peak RSS +{dense_b / mib:.1f} MiB; top-k codes "
        f"{codes_s:.2f} CPU s, +{codes_b / mib:.1f} MiB"
    )
    same = np.array_equal(dense[0], codes[0]) and np.array_equal(dense[1], codes[1])
    typical = np.max(np.abs(dense[2] - codes[2]) / np.maximum(np.abs(dense[2]), 1e-300))
    print(
        f"unit set agreement: activations and maps equal {same}, typical firing max relative difference {typical:.1e}"
    )
    print(
        f"unit set ratio dense / codes: memory {max(dense_b, 1) / max(codes_b, 1):.1f}x, "
        f"CPU {dense_s / max(codes_s, 1e-6):.1f}x; goal > 1"
    )
    sparse, sparse_s, sparse_b = _measure("sparse_scores", setup, args)
    dense, dense_s, dense_b = _measure("dense_scores", setup, args)
    print(
        f"alignment scores: dense blocks and scikit-learn AP {dense_s:.2f} CPU s, peak RSS +{dense_b / mib:.1f} MiB; "
        f"sparse and vectorised {sparse_s:.2f} CPU s, +{sparse_b / mib:.1f} MiB"
    )
    exact = all(np.array_equal(dense[name], sparse[name], equal_nan=True) for name in ("image", "patch", "purity"))
    ap = np.nanmax(np.abs(dense["ap"] - sparse["ap"]))
    entropy = np.array_equal(dense["entropy"], sparse["entropy"], equal_nan=True)
    print(f"scores agreement: AUROCs and Purity equal {exact}, entropy equal {entropy}, AP max difference {ap:.1e}")
    print(
        f"scores ratio dense / sparse: memory {max(dense_b, 1) / max(sparse_b, 1):.1f}x, "
        f"CPU {dense_s / max(sparse_s, 1e-6):.1f}x; "
        "goal > 1"
    )


def main() -> None:
    args = _parse_args()
    if args.steps < 2:
        raise SystemExit(f"--steps {args.steps}: at least 2 (the first is a warm-up, not timed)")
    torch.set_num_threads(args.threads)
    device = loading.resolve_device(args.device)
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
    batches = [next(stream).to(device) for _ in range(args.steps)]

    ours = TopKSAE(args.d, n, args.k, seed=args.seed).to(device)
    ours.init_from_data(batches[0])
    optimizer = torch.optim.Adam(ours.parameters(), lr=lr, eps=ADAM_EPS)
    since_fired = torch.zeros(n, dtype=torch.int64, device=device)
    reference = Reference(args.d, n, args.k, lr, args.dead_tokens, batches[0])
    ours_seconds = reference_seconds = 0.0
    for step, x in enumerate(batches):
        if step == 1:  # the first step of each is a warm-up
            ours_seconds = reference_seconds = 0.0
        start = time.perf_counter()
        train_step(ours, optimizer, x, since_fired, cfg).tolist()  # .tolist(): the step's end, as a log write
        ours_seconds += time.perf_counter() - start
        start = time.perf_counter()
        reference.step(x)
        reference.sae.b_dec.sum().tolist()  # the step's end, as for ours (a GPU runs asynchronously)
        reference_seconds += time.perf_counter() - start
    ours.eval()
    fvu_ours = heldout_fvu(lambda x: ours(x)[0], heldout, device)
    fvu_reference = heldout_fvu(reference.reconstruct, heldout, device)
    tokens = (args.steps - 1) * args.batch_size
    print(
        f"planted data: d {args.d}, {args.atoms} atoms x {args.k_true} per token, noise {args.noise}; "
        f"{source.n_tokens:,} training and {sum(len(x) for x in heldout):,} held-out tokens"
    )
    print(
        f"SAE: n {n}, k {args.k}, {args.steps} steps of {args.batch_size}, lr {lr:.3g}, k_aux {args.d // 2}, "
        f"threads {args.threads}, device {device}"
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
    if not args.no_latents:
        sparse_latents_benchmark(args)


if __name__ == "__main__":
    main()
