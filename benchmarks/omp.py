"""Benchmark: batched torch OMP (clipmech.decomposition.omp.omp_gram) vs scikit-learn's orthogonal_mp_gram.

The setting of the text decomposition (methods.md Sec. 5): a dictionary of 30,000 unit-norm atoms
of width 768 (random Gaussian directions here, seeded) and m = 64 atoms per target. Both
implementations get the same precomputed float32 Gram matrix and Xy; the time to compute those
is reported separately and counted for neither. For each target count the script prints both
times, the speed ratio (scikit-learn time / ours) and the fraction of targets on which the two
select the same support (as a set: scikit-learn returns dense coefficients, not the order).

scikit-learn solves targets one at a time and copies the whole Gram for every target, so on a
few CPU cores it takes about a second per target; it is therefore timed on a random subset of
the targets (``--sklearn-subset``) and its time extrapolated linearly per target, which the
output says explicitly. Agreement is measured on that subset.

Run: ``python benchmarks/omp.py`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import torch
from sklearn.linear_model import orthogonal_mp_gram
from threadpoolctl import threadpool_limits

from clipmech.decomposition.omp import omp_gram


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-atoms", type=int, default=30_000, help="dictionary size A")
    parser.add_argument("--dim", type=int, default=768, help="embedding width E")
    parser.add_argument("--n-nonzero", type=int, default=64, help="atoms per target m")
    parser.add_argument("--targets", type=int, nargs="+", default=[1_000, 10_000], help="target counts N")
    parser.add_argument(
        "--sklearn-subset",
        type=int,
        default=40,
        help="targets per N on which scikit-learn is timed (then extrapolated); 0 = all",
    )
    parser.add_argument("--batch-size", type=int, default=128, help="our targets per batch")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and BLAS threads, the same for both (on a machine shared with other jobs "
        "two OpenMP threads can be far slower than one)",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def _unit_rows(n: int, dim: int, gen: torch.Generator) -> torch.Tensor:
    rows = torch.randn(n, dim, generator=gen, dtype=torch.float32)
    return rows / rows.norm(dim=1, keepdim=True)


def _sklearn_supports(gram_np: np.ndarray, xy_np: np.ndarray, m: int) -> tuple[list, float]:
    """scikit-learn OMP on the rows of xy_np: support sets and wall time in seconds."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "ended prematurely"
        coef_AS = orthogonal_mp_gram(gram_np, xy_np.T, n_nonzero_coefs=m)
    seconds = time.perf_counter() - start
    coef_AS = coef_AS.reshape(gram_np.shape[0], xy_np.shape[0])
    return [frozenset(np.flatnonzero(coef_AS[:, s]).tolist()) for s in range(xy_np.shape[0])], seconds


def main() -> None:
    args = _parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    n_max = max(args.targets)
    a, e, m = args.n_atoms, args.dim, args.n_nonzero

    gib = 2**30
    print(
        f"dictionary: {a} random unit-norm atoms x {e} dims, m = {m}, seed {args.seed}, "
        f"{args.threads} threads, torch {torch.__version__}"
    )
    print(
        f"dtype: float32 throughout. The {a}x{a} Gram takes {a * a * 4 / gib:.1f} GiB in float32 "
        f"({a * a * 8 / gib:.1f} GiB in float64); scikit-learn holds two more copies of it "
        f"(one per call, one per target), so float64 would need ~{3 * a * a * 8 / gib:.0f} GiB."
    )

    atoms_AE = _unit_rows(a, e, gen)
    targets_NE = _unit_rows(n_max, e, gen)
    with threadpool_limits(limits=args.threads):
        start = time.perf_counter()
        gram_AA = atoms_AE @ atoms_AE.T
        xy_NA = targets_NE @ atoms_AE.T
        print(f"precompute Gram and Xy (shared, not counted): {time.perf_counter() - start:.1f} s")
        asym = max(float((gram_AA[i : i + 1000] - gram_AA[:, i : i + 1000].T).abs().max()) for i in range(0, a, 1000))
        print(f"Gram symmetry: max |G - G^T| = {asym:.1e}")
        # scikit-learn works on a Fortran-ordered Gram; the transpose of the symmetric C-ordered
        # Gram is one, without a (slow, transposing) conversion copy
        gram_np, xy_np = gram_AA.numpy().T, xy_NA.numpy()

        start = time.perf_counter()
        gram_np.copy(order="F")
        copy_s = time.perf_counter() - start
        print(f"one Fortran-order copy of the Gram (scikit-learn makes one per target): {copy_s:.2f} s")

        omp_gram(gram_AA, xy_NA[:8], m, batch_size=args.batch_size)  # warm-up, not timed

        for n in args.targets:
            start = time.perf_counter()
            ours = omp_gram(gram_AA, xy_NA[:n], m, batch_size=args.batch_size)
            ours_s = time.perf_counter() - start

            n_sk = n if args.sklearn_subset <= 0 else min(args.sklearn_subset, n)
            subset = np.sort(rng.choice(n, size=n_sk, replace=False))
            sk_sets, sk_subset_s = _sklearn_supports(gram_np, xy_np[subset], m)
            sk_s = sk_subset_s * n / n_sk
            our_sets = [frozenset(ours.support[i][ours.support[i] >= 0].tolist()) for i in subset]
            agree = np.mean([o == s for o, s in zip(our_sets, sk_sets)])

            how = (
                "measured" if n_sk == n else (f"EXTRAPOLATED linearly from {n_sk} random targets ({sk_subset_s:.1f} s)")
            )
            print(f"\nN = {n} targets")
            print(
                f"  ours (torch, batch {args.batch_size}): {ours_s:9.1f} s "
                f"({1e3 * ours_s / n:.2f} ms/target), early stops: "
                f"{int((ours.n_active < m).sum())}"
            )
            print(f"  scikit-learn orthogonal_mp_gram:  {sk_s:9.1f} s ({1e3 * sk_s / n:.0f} ms/target), {how}")
            print(f"  speed ratio (scikit-learn / ours): {sk_s / ours_s:.1f}x")
            print(f"  support agreement (same atom set): {agree:.4f} on {n_sk} targets")
            print(f"  load average (1, 5, 15 min) of this shared machine: {os.getloadavg()}")


if __name__ == "__main__":
    main()
