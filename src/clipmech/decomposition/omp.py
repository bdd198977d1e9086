"""Batched Orthogonal Matching Pursuit (OMP) in torch, Gram formulation.

Used for the text decomposition of neuron-head directions (methods.md Sec. 5, "Text
decomposition"; neuron-attention paper Sec. 4.1, "Sparse text-based decomposition of neuron-head
directions", which follows the second-order-lens paper and Pati et al. 1993): each direction
u_{n,h} (length E) is approximated by m text embeddings of common English words (the atoms),
u ~= sum_j c_j d_{i_j}.

The algorithm is scikit-learn's ``orthogonal_mp_gram`` (``sklearn.linear_model._omp._gram_omp``,
the Cholesky variant of Batch-OMP of Rubinstein, Zibulevsky & Elad 2008) run on many targets at
once: a Python loop runs over the m greedy steps only, and every step is a handful of batched
tensor operations over all targets of a batch. With Gram = D D^T (A x A) and Xy = D y (length A)
for each target y, step k (k atoms already selected, support S, Cholesky factor L of Gram[S, S]):

1. alpha = Xy - Gram[:, S] gamma is the correlation of every atom with the residual
   y - D_S^T gamma (0 in exact arithmetic for the atoms in S); the atom with the largest
   |alpha| joins S.
2. The Cholesky factor of Gram[S, S] grows by one row: w = L^{-1} Gram[S, new],
   L_kk = sqrt(Gram[new, new] - |w|^2).
3. gamma = (L L^T)^{-1} Xy[S], the least-squares refit of y on all selected atoms.

Per target and step this costs O(A k) (one row of the Gram is gathered and the correlations
updated) plus O(k^2) for the triangular solves, independent of the embedding width E.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch

__all__ = ["OMPResult", "omp", "omp_gram", "reconstruct"]

_FLOAT_DTYPES = (torch.float32, torch.float64)


class OMPResult(NamedTuple):
    """Sparse codes of N targets over A atoms, m slots each.

    Attributes
    ----------
    support : torch.Tensor
        (N, m) int64. Atom indices in selection order; -1 in the slots left unused after early
        termination (always the trailing slots).
    coef : torch.Tensor
        (N, m), the dtype of the inputs. Least-squares coefficients of the selected atoms,
        aligned with ``support``; 0 in unused slots.
    n_active : torch.Tensor
        (N,) int64. Number of atoms selected per target (m unless terminated early).
    coef_path : torch.Tensor or None
        (N, m, m) when requested, else None. ``coef_path[:, k, :k + 1]`` are the coefficients
        of the first k + 1 atoms of ``support`` after step k + 1, i.e. the (k + 1)-sparse OMP
        solution (OMP is greedy, so its k-sparse support is a prefix of its m-sparse one);
        the rest of each row is 0. After early termination the rows repeat the final
        coefficients.
    """

    support: torch.Tensor
    coef: torch.Tensor
    n_active: torch.Tensor
    coef_path: torch.Tensor | None


def _check_n_nonzero(n_nonzero: int, n_atoms: int) -> None:
    if isinstance(n_nonzero, bool) or not isinstance(n_nonzero, int):
        raise TypeError(f"n_nonzero must be an int, got {type(n_nonzero).__name__}")
    if not 1 <= n_nonzero <= n_atoms:
        raise ValueError(
            f"n_nonzero must be in [1, n_atoms={n_atoms}] (cannot select more atoms than the "
            f"dictionary holds), got {n_nonzero}"
        )


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


def _check_float_pair(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name_a} must have dtype float32 or float64, got {a.dtype}")
    if b.dtype != a.dtype:
        raise TypeError(f"{name_b} must have the dtype of {name_a} ({a.dtype}), got {b.dtype}")
    if b.device != a.device:
        raise ValueError(f"{name_b} must be on the device of {name_a} ({a.device}), got {b.device}")


def _omp_gram_batch(
    gram_AA: torch.Tensor,
    xy_BA: torch.Tensor,
    n_nonzero: int,
    return_path: bool,
    workspace_mbA: torch.Tensor,
) -> OMPResult:
    """OMP of one batch of targets; inputs already validated (see :func:`omp_gram`).

    ``workspace_mbA`` (m, b >= B, A) receives the Gram rows of the selected atoms; it is reused
    across batches so that its pages are touched once per call rather than once per batch.
    """
    n_targets = xy_BA.shape[0]
    m = n_nonzero
    dtype, device = xy_BA.dtype, xy_BA.device
    eps = torch.finfo(dtype).eps  # sklearn: min_float = np.finfo(Gram.dtype).eps

    support_Bm = torch.full((n_targets, m), -1, dtype=torch.int64, device=device)
    chol_Bmm = torch.zeros((n_targets, m, m), dtype=dtype, device=device)
    rows_mBA = workspace_mbA[:, :n_targets]  # rows_mBA[j, b] = Gram[support[b, j], :]
    gamma_Bm = torch.zeros((n_targets, m), dtype=dtype, device=device)
    path_Bmm = torch.zeros((n_targets, m, m), dtype=dtype, device=device) if return_path else None
    done_B = torch.zeros(n_targets, dtype=torch.bool, device=device)
    n_active_B = torch.zeros(n_targets, dtype=torch.int64, device=device)
    alpha_BA = xy_BA.clone()
    score_BA = torch.empty_like(xy_BA)
    n_steps = 0

    for k in range(m):
        # 1. greedy selection over all atoms, as in scikit-learn
        torch.abs(alpha_BA, out=score_BA)
        lam_B = torch.argmax(score_BA, dim=1)  # ties: lowest atom index
        best_B = alpha_BA.gather(1, lam_B[:, None]).squeeze(1)
        # stop when the residual is uncorrelated with every atom, or when the best atom is one
        # already selected (its correlation, 0 in exact arithmetic, is then the largest: every
        # remaining correlation is at the level of rounding noise)
        stop_B = (best_B.square() < eps) | (support_Bm[:, :k] == lam_B[:, None]).any(1)

        # 2. Cholesky update of Gram[S, S]
        row_BA = torch.index_select(gram_AA, 0, lam_B, out=rows_mBA[k])
        diag_B = row_BA.gather(1, lam_B[:, None]).squeeze(1)
        if k > 0:
            cross_Bk = row_BA.gather(1, support_Bm[:, :k].clamp_min(0))
            w_Bk = torch.linalg.solve_triangular(chol_Bmm[:, :k, :k], cross_Bk[:, :, None], upper=False).squeeze(2)
            lkk_B = diag_B - w_Bk.square().sum(1)
            stop_B |= lkk_B <= eps  # new atom (numerically) in the span of the selected ones
        else:
            lkk_B = diag_B
        done_B |= stop_B
        take_B = ~done_B
        if not bool(take_B.any()):
            break

        # finished targets get padding: support -1, an identity row in L and a zero right-hand
        # side, so the refit below reproduces their previous gamma with an exact 0 in slot k
        # (which also cancels the unused Gram row stored in their slot k)
        support_Bm[:, k] = torch.where(take_B, lam_B, -1)
        if k > 0:
            chol_Bmm[:, k, :k] = torch.where(take_B[:, None], w_Bk, 0.0)
        chol_Bmm[:, k, k] = torch.where(take_B, lkk_B.clamp_min(eps).sqrt(), 1.0)
        n_active_B += take_B
        n_steps = k + 1

        # 3. least-squares refit on the support and new correlations with the residual
        sel_Bk = support_Bm[:, : k + 1]
        xy_sel_Bk = xy_BA.gather(1, sel_Bk.clamp_min(0)) * (sel_Bk >= 0)
        gamma_Bk = torch.cholesky_solve(xy_sel_Bk[:, :, None], chol_Bmm[:, : k + 1, : k + 1], upper=False).squeeze(2)
        gamma_Bm[:, : k + 1] = gamma_Bk
        if path_Bmm is not None:
            path_Bmm[:, k] = gamma_Bm
        torch.baddbmm(  # alpha = Xy - Gram[:, S] gamma
            xy_BA[:, None, :],
            gamma_Bk[:, None, :],
            rows_mBA[: k + 1].permute(1, 0, 2),
            alpha=-1.0,
            out=alpha_BA[:, None, :],
        )

    if path_Bmm is not None:
        # steps skipped by the early break repeat the final coefficients
        path_Bmm[:, n_steps:] = gamma_Bm[:, None, :]
    return OMPResult(support_Bm, gamma_Bm, n_active_B, path_Bmm)


def _omp_batches(
    gram_AA: torch.Tensor,
    xy_batches: Iterator[torch.Tensor],
    n_nonzero: int,
    max_batch: int,
    return_path: bool,
) -> OMPResult:
    """Run :func:`_omp_gram_batch` on each (B <= max_batch, A) block and concatenate."""
    workspace_mbA = gram_AA.new_empty((n_nonzero, max_batch, gram_AA.shape[0]))
    results = [_omp_gram_batch(gram_AA, xy_BA, n_nonzero, return_path, workspace_mbA) for xy_BA in xy_batches]
    return OMPResult(
        torch.cat([r.support for r in results]),
        torch.cat([r.coef for r in results]),
        torch.cat([r.n_active for r in results]),
        None if not return_path else torch.cat([r.coef_path for r in results]),
    )


def omp_gram(
    gram_AA: torch.Tensor,
    xy_NA: torch.Tensor,
    n_nonzero: int,
    *,
    batch_size: int = 128,
    return_path: bool = False,
) -> OMPResult:
    """Orthogonal Matching Pursuit of N targets from a precomputed Gram matrix, batched.

    Equivalent to ``sklearn.linear_model.orthogonal_mp_gram(Gram, Xy.T, n_nonzero_coefs=m)``
    (same greedy rule, same Cholesky refit, same stopping thresholds), vectorised over targets.

    Parameters
    ----------
    gram_AA : torch.Tensor
        (A, A) float32 or float64, Gram matrix D D^T of the (typically unit-norm) atoms D
        (A x E). Must be symmetric; only its rows are read.
    xy_NA : torch.Tensor
        (N, A), dtype and device of ``gram_AA``; row i is D y_i, the atoms' inner products with
        target i.
    n_nonzero : int
        m, the number of atoms to select per target, 1 <= m <= A (paper: 64).
    batch_size : int, optional
        Targets processed at once. Peak extra memory is about ``batch_size * (m + 4) * A``
        elements (the selected Gram rows dominate): 128 targets, m = 64 and A = 30,000 in float32
        take ~1 GB. Results do not depend on it beyond floating-point reassociation.
    return_path : bool, optional
        Also return the coefficients after every step (``OMPResult.coef_path``), i.e. the
        k-sparse OMP solutions for all k <= m in one run.

    Returns
    -------
    OMPResult
        ``support`` (N, m) int64, ``coef`` (N, m), ``n_active`` (N,) int64 and ``coef_path``
        (N, m, m) or None, on the device of the inputs.

    Raises
    ------
    TypeError
        If a dtype is not float32/float64, the two dtypes differ, or ``n_nonzero`` is not an int.
    ValueError
        If ``gram_AA`` is not square 2-D, ``xy_NA`` is not 2-D with A columns, the devices
        differ, ``n_nonzero`` is outside [1, A], or ``batch_size`` < 1.

    Notes
    -----
    Greedy rule: the atom maximising |alpha| = |<d_i, residual>| over all atoms joins the
    support. Ties go to the lowest atom index (``torch.argmax`` returns the first maximum).
    Coefficients are the least-squares fit of the target on the selected atoms, recomputed at
    every step through a progressively updated Cholesky factor of Gram[S, S].

    Early termination (per target, the three rules of scikit-learn): the target stops before m
    atoms when (a) the best correlation satisfies alpha^2 < eps, with eps the machine epsilon
    of the dtype: the residual is ~0 or orthogonal to every atom; (b) the argmax falls on an
    atom already selected, whose correlation is 0 up to rounding: every other correlation is
    at the level of rounding noise; or (c) from the second atom on, the new atom's squared
    distance to the span of the selected atoms, Gram[new, new] - |w|^2, is <= eps: the atoms
    are linearly dependent (e.g. m > E). The rejected atom is not added, the coefficients stay
    those of the last accepted step, and the remaining slots hold support -1 and coefficient 0
    (scikit-learn also warns "Orthogonal matching pursuit ended prematurely"). The thresholds
    in (a) and (c) are absolute, as in scikit-learn: they presume unit-norm atoms and targets
    of norm ~1. Normalise the targets (and rescale the coefficients, which are linear in the
    target) when their norms are far from 1, or small directions stop early.

    Differences from scikit-learn are floating-point only: summation order (batched matmul vs
    BLAS per target) and tie-breaking among exactly equal |alpha| (scikit-learn takes the first
    in its internally swapped atom order). A near-tie decided differently changes the rest of
    that target's support; with continuous random data this is rare (see tests/test_omp.py and
    benchmarks/omp.py for measured agreement).
    """
    if gram_AA.ndim != 2 or gram_AA.shape[0] != gram_AA.shape[1]:
        raise ValueError(f"gram_AA must be a square (A, A) matrix, got shape {tuple(gram_AA.shape)}")
    n_atoms = gram_AA.shape[0]
    if xy_NA.ndim != 2 or xy_NA.shape[1] != n_atoms:
        raise ValueError(f"xy_NA must have shape (N, A={n_atoms}) to match gram_AA, got {tuple(xy_NA.shape)}")
    _check_float_pair("gram_AA", gram_AA, "xy_NA", xy_NA)
    _check_n_nonzero(n_nonzero, n_atoms)
    _check_batch_size(batch_size)

    n_targets = xy_NA.shape[0]
    # range(0, max(N, 1), ...) still runs one (empty) batch when N == 0
    return _omp_batches(
        gram_AA,
        (xy_NA[start : start + batch_size] for start in range(0, max(n_targets, 1), batch_size)),
        n_nonzero,
        min(batch_size, n_targets),
        return_path,
    )


def omp(
    dictionary_AE: torch.Tensor,
    targets_NE: torch.Tensor,
    n_nonzero: int,
    *,
    batch_size: int = 128,
    gram_AA: torch.Tensor | None = None,
    return_path: bool = False,
) -> OMPResult:
    """Sparse-code every target over a dictionary of atoms with batched OMP.

    Methods.md Sec. 5 (text decomposition); neuron-attention paper Sec. 4.1: each target
    (e.g. a neuron-head direction u_{n,h}) is approximated by m atoms (text embeddings of the
    30,000 most common English words; paper m = 64) with least-squares coefficients. Computes
    Gram = D D^T once (unless given) and Xy = D y per batch of targets, then runs
    :func:`omp_gram`, whose notes give the algorithm, its equivalence to scikit-learn's
    ``orthogonal_mp_gram``, early termination and tie-breaking.

    Parameters
    ----------
    dictionary_AE : torch.Tensor
        (A, E) float32 or float64, one atom per row. OMP does not normalise atoms; pass
        unit-norm rows so that the greedy rule compares correlations (cosines up to the target's
        norm) and the early-termination threshold is on the intended scale.
    targets_NE : torch.Tensor
        (N, E), dtype and device of ``dictionary_AE``.
    n_nonzero : int
        m, atoms per target, 1 <= m <= A.
    batch_size : int, optional
        Targets processed at once (memory ~ ``batch_size * (m + 4) * A`` elements besides the
        A x A Gram).
    gram_AA : torch.Tensor, optional
        Precomputed ``dictionary_AE @ dictionary_AE.T`` (A, A), to reuse across calls.
    return_path : bool, optional
        Also return the k-sparse coefficients for every k <= m (see :class:`OMPResult`).

    Returns
    -------
    OMPResult
        ``support`` (N, m) int64 atom indices in selection order (-1 = unused), ``coef`` (N, m),
        ``n_active`` (N,), ``coef_path`` (N, m, m) or None; device and dtype of the inputs.

    Raises
    ------
    TypeError
        If a dtype is not float32/float64 or the dtypes differ.
    ValueError
        If the arrays are not 2-D, their widths E differ, ``gram_AA`` is not (A, A), the devices
        differ, ``n_nonzero`` is outside [1, A], or ``batch_size`` < 1.
    """
    if dictionary_AE.ndim != 2:
        raise ValueError(f"dictionary_AE must be 2-D (A, E), got shape {tuple(dictionary_AE.shape)}")
    if targets_NE.ndim != 2 or targets_NE.shape[1] != dictionary_AE.shape[1]:
        raise ValueError(
            f"targets_NE must have shape (N, E={dictionary_AE.shape[1]}) to match "
            f"dictionary_AE, got {tuple(targets_NE.shape)}"
        )
    _check_float_pair("dictionary_AE", dictionary_AE, "targets_NE", targets_NE)
    n_atoms = dictionary_AE.shape[0]
    _check_n_nonzero(n_nonzero, n_atoms)
    _check_batch_size(batch_size)
    if gram_AA is None:
        gram_AA = dictionary_AE @ dictionary_AE.T
    elif tuple(gram_AA.shape) != (n_atoms, n_atoms):
        raise ValueError(f"gram_AA must have shape (A, A)=({n_atoms}, {n_atoms}), got {tuple(gram_AA.shape)}")
    _check_float_pair("dictionary_AE", dictionary_AE, "gram_AA", gram_AA)

    n_targets = targets_NE.shape[0]
    return _omp_batches(
        gram_AA,
        (targets_NE[start : start + batch_size] @ dictionary_AE.T for start in range(0, max(n_targets, 1), batch_size)),
        n_nonzero,
        min(batch_size, n_targets),
        return_path,
    )


def reconstruct(support_NM: torch.Tensor, coef_NM: torch.Tensor, dictionary_AE: torch.Tensor) -> torch.Tensor:
    """Dense sparse approximations sum_j coef[i, j] * dictionary[support[i, j]].

    Parameters
    ----------
    support_NM : torch.Tensor
        (N, M) int64 atom indices in [0, A), or -1 for an unused slot (ignored).
    coef_NM : torch.Tensor
        (N, M) coefficients, dtype of ``dictionary_AE``.
    dictionary_AE : torch.Tensor
        (A, E) atoms, one per row.

    Returns
    -------
    torch.Tensor
        (N, E), dtype and device of ``dictionary_AE``. Loops over the M slots, so memory is
        O(N E) rather than O(N M E).

    Raises
    ------
    TypeError
        If ``support_NM`` is not int64 or ``coef_NM`` and ``dictionary_AE`` differ in dtype.
    ValueError
        If shapes disagree, an index is outside [-1, A), or the devices differ.
    """
    if support_NM.dtype != torch.int64:
        raise TypeError(f"support_NM must have dtype int64, got {support_NM.dtype}")
    if support_NM.ndim != 2 or support_NM.shape != coef_NM.shape:
        raise ValueError(
            f"support_NM and coef_NM must be (N, M) of equal shape, got "
            f"{tuple(support_NM.shape)} and {tuple(coef_NM.shape)}"
        )
    if dictionary_AE.ndim != 2:
        raise ValueError(f"dictionary_AE must be 2-D (A, E), got shape {tuple(dictionary_AE.shape)}")
    _check_float_pair("dictionary_AE", dictionary_AE, "coef_NM", coef_NM)
    if support_NM.device != dictionary_AE.device:
        raise ValueError(
            f"support_NM must be on the device of dictionary_AE ({dictionary_AE.device}), got {support_NM.device}"
        )
    n_atoms = dictionary_AE.shape[0]
    if support_NM.numel() and (int(support_NM.min()) < -1 or int(support_NM.max()) >= n_atoms):
        raise ValueError(
            f"support_NM entries must be in [-1, A={n_atoms}), got range "
            f"[{int(support_NM.min())}, {int(support_NM.max())}]"
        )

    approx_NE = dictionary_AE.new_zeros((support_NM.shape[0], dictionary_AE.shape[1]))
    for j in range(support_NM.shape[1]):
        idx_N = support_NM[:, j]
        weight_N = torch.where(idx_N >= 0, coef_NM[:, j], 0.0)
        approx_NE += weight_N[:, None] * dictionary_AE.index_select(0, idx_N.clamp_min(0))
    return approx_NE
