"""Text decomposition of neuron-head directions: OMP over the embeddings of common English words.

methods.md Sec. 5 ("Text decomposition"; neuron-attention paper Sec. 4.1, Fig. 2 and the tables
of words with coefficients, following the second-order-lens paper): every direction u_{n,h}
(unit-normalised) is approximated by m text embeddings of the most common English words
(``wordfreq``, paper 30,000 words and m = 64) with batched orthogonal matching pursuit
(:func:`clipmech.decomposition.omp.omp`); the words it selects, with their coefficients, describe the pair.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from clipmech.decomposition import omp


def sparse_codes(
    directions_KE: np.ndarray,
    dictionary_AE: np.ndarray,
    n_components: int,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
) -> omp.OMPResult:
    """OMP codes of unit-normalised directions over unit-normalised text embeddings, with the path.

    Parameters
    ----------
    directions_KE : ndarray, shape (K, E)
        E.g. u_{n,h} of chosen pairs; each is divided by its norm first (zero rows stay zero
        and get no atoms).
    dictionary_AE : ndarray, shape (A, E)
        Word embeddings; normalised here.
    n_components : int
        m, atoms per direction (paper 64; at most A).
    batch_size : int
        Directions per OMP batch (:func:`clipmech.decomposition.omp.omp`).
    device : str or torch.device

    Returns
    -------
    clipmech.decomposition.omp.OMPResult
        float32 tensors on the CPU, with ``coef_path`` (K, m, m): the k-sparse codes for every
        k <= m, for the unit directions.
    """
    d = torch.nn.functional.normalize(torch.as_tensor(dictionary_AE, dtype=torch.float32), dim=1).to(device)
    t = torch.nn.functional.normalize(torch.as_tensor(directions_KE, dtype=torch.float32), dim=1).to(device)
    result = omp.omp(d, t, n_components, batch_size=batch_size, return_path=True)
    return omp.OMPResult(*(None if r is None else r.cpu() for r in result))


def sparse_directions(code: omp.OMPResult, dictionary_AE: np.ndarray, m: int, scale_K: np.ndarray) -> np.ndarray:
    """The m-sparse approximations of the coded directions, rescaled to the original norms.

    Parameters
    ----------
    code : clipmech.decomposition.omp.OMPResult
        From :func:`sparse_codes` (with ``coef_path``).
    dictionary_AE : ndarray, shape (A, E)
        The dictionary the codes were computed over (normalised here as there).
    m : int
        Atoms used, 1 <= m <= the code's m.
    scale_K : ndarray, shape (K,)
        Norms of the original directions.

    Returns
    -------
    ndarray, shape (K, E), float64

    Raises
    ------
    ValueError
        If ``m`` is outside [1, code's m] or the code has no path.
    """
    if code.coef_path is None:
        raise ValueError("the code has no coef_path; compute it with sparse_codes")
    m_max = code.support.shape[1]
    if not 1 <= m <= m_max:
        raise ValueError(f"m must be in [1, {m_max}], got {m}")
    d = torch.nn.functional.normalize(torch.as_tensor(dictionary_AE, dtype=torch.float32), dim=1)
    approx = omp.reconstruct(code.support[:, :m].contiguous(), code.coef_path[:, m - 1, :m].contiguous(), d)
    return approx.double().numpy() * np.asarray(scale_K, dtype=np.float64)[:, None]


def describe(code: omp.OMPResult, words: Sequence[str], n_words: int) -> list[str]:
    """The first ``n_words`` selected words of each direction with their coefficients.

    OMP selects atoms greedily, so the first ones explain the most; the coefficients are those of
    the full m-sparse fit of the unit direction.

    Returns
    -------
    list of str
        One per direction, e.g. ``"red (+0.62), crimson (+0.21), blue (-0.18)"``.
    """
    support = code.support.numpy()
    coef = code.coef.numpy()
    out = []
    for k in range(support.shape[0]):
        parts = [f"{words[a]} ({c:+.2f})" for a, c in zip(support[k, :n_words], coef[k, :n_words]) if a >= 0]
        out.append(", ".join(parts))
    return out


def words_table(
    heads_K: np.ndarray,
    neurons_K: np.ndarray,
    u_HCE: np.ndarray,
    code: omp.OMPResult,
    dictionary_AE: np.ndarray,
    words: Sequence[str],
    n_words: int,
) -> pd.DataFrame:
    """One row per coded pair: its words and how well the m-sparse code reconstructs u.

    Returns
    -------
    pandas.DataFrame
        Columns head, neuron, n_atoms, cos_sparse_u (cosine of the m-sparse approximation with
        u_{n,h}), words.
    """
    u_KE = u_HCE[heads_K, neurons_K]
    approx_KE = sparse_directions(code, dictionary_AE, code.support.shape[1], np.ones(len(u_KE)))
    norms = np.linalg.norm(u_KE, axis=1) * np.linalg.norm(approx_KE, axis=1)
    cos = np.divide(np.sum(u_KE * approx_KE, axis=1), norms, out=np.full(len(u_KE), np.nan), where=norms > 0)
    return pd.DataFrame(
        {
            "head": np.asarray(heads_K, dtype=int),
            "neuron": np.asarray(neurons_K, dtype=int),
            "n_atoms": code.n_active.numpy(),
            "cos_sparse_u": cos,
            "words": describe(code, words, n_words),
        }
    )
