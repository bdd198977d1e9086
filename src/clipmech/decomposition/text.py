"""Text decomposition of neuron-head directions: OMP over the embeddings of common English words.

methods.md Sec. 5 ("Text decomposition"; neuron-attention paper Sec. 4.1, Fig. 2 and the tables
of words with coefficients, following the second-order-lens paper): every direction u_{n,h}
(unit-normalised) is approximated by m text embeddings of the most common English words
(``wordfreq``, paper 30,000 words and m = 64) with batched orthogonal matching pursuit
(:func:`clipmech.decomposition.omp.omp`); the words it selects, with their coefficients, describe the pair.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from clipmech.decomposition import components, omp, pool


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


def class_pair_table(u_HCE: np.ndarray, tasks: Sequence[components.ZeroShotTask], n_class_pairs: int) -> pd.DataFrame:
    """The top ``n_class_pairs`` neuron-head pairs of every zero-shot class by cos(u, prompt)
    (:func:`clipmech.decomposition.pool.top_pairs_by_text`): ``task, class, rank, head, neuron, cos``."""
    rows = []
    for task in tasks:
        heads_Kk, neurons_Kk, cos_Kk = pool.top_pairs_by_text(u_HCE, task.text_KE, n_class_pairs)
        for k, name in enumerate(task.classes):
            for r in range(heads_Kk.shape[1]):
                rows.append(
                    {
                        "task": task.name,
                        "class": name,
                        "rank": r + 1,
                        "head": heads_Kk[k, r],
                        "neuron": neurons_Kk[k, r],
                        "cos": cos_Kk[k, r],
                    }
                )
    return pd.DataFrame(rows)


def decompose_pairs(
    u_HCE: np.ndarray,
    pair_score_HC: np.ndarray,
    keep_HC: np.ndarray,
    tasks: Sequence[components.ZeroShotTask],
    dictionary_AE: np.ndarray,
    words: Sequence[str],
    *,
    params: dict,
    device: str | torch.device,
) -> dict:
    """OMP codes and words of the kept pairs and of every class's top pairs (neuron-attention paper Fig. 2).

    Parameters
    ----------
    u_HCE : numpy.ndarray, (H, C, E)
        The pair directions u_{n,h}.
    pair_score_HC : numpy.ndarray, (H, C)
        Mean contribution norm of each pair (:func:`clipmech.decomposition.components.component_scores`).
    keep_HC : numpy.ndarray, bool, (H, C)
        The kept pairs (top ``keep_fraction`` by mean norm).
    tasks : sequence of ZeroShotTask
    dictionary_AE : numpy.ndarray, (A, E)
        Word embeddings of ``words``.
    params : dict
        ``n_components`` (m_max), ``n_class_pairs``, ``omp_batch_size``, ``n_words_shown``.

    Returns
    -------
    dict
        ``kept_heads``, ``kept_neurons`` (int, (K,), by decreasing mean norm), ``coded`` ((P, 2) head, neuron
        of every coded pair, sorted), ``code`` (their :class:`clipmech.decomposition.omp.OMPResult`), ``words``
        (the kept pairs by rank: ``rank, head, neuron, mean_norm, n_atoms, cos_sparse_u, words``) and
        ``class_pairs`` (``task, class, rank, head, neuron, cos, mean_norm, cos_sparse_u, words``).
    """
    c = u_HCE.shape[1]
    order = np.argsort(-pair_score_HC.ravel(), kind="stable")
    kept = order[keep_HC.ravel()[order]]
    kept_heads, kept_neurons = np.divmod(kept, c)
    class_table = class_pair_table(u_HCE, tasks, params["n_class_pairs"])
    class_pairs = class_table[["head", "neuron"]].to_numpy()
    coded = np.unique(np.concatenate([np.stack([kept_heads, kept_neurons], 1), class_pairs]), axis=0)
    code = sparse_codes(
        u_HCE[coded[:, 0], coded[:, 1]], dictionary_AE, params["n_components"], params["omp_batch_size"], device
    )
    described = words_table(coded[:, 0], coded[:, 1], u_HCE, code, dictionary_AE, words, params["n_words_shown"])
    described["mean_norm"] = pair_score_HC[coded[:, 0], coded[:, 1]]
    words_out = described.merge(
        pd.DataFrame({"head": kept_heads, "neuron": kept_neurons, "rank": np.arange(1, len(kept) + 1)}),
        on=["head", "neuron"],
    )
    class_out = class_table.merge(described, on=["head", "neuron"]).sort_values(["task", "class", "rank"])
    return {
        "kept_heads": kept_heads,
        "kept_neurons": kept_neurons,
        "coded": coded,
        "code": code,
        "words": words_out.sort_values("rank")[
            ["rank", "head", "neuron", "mean_norm", "n_atoms", "cos_sparse_u", "words"]
        ],
        "class_pairs": class_out[
            ["task", "class", "rank", "head", "neuron", "cos", "mean_norm", "cos_sparse_u", "words"]
        ],
    }


def sparse_accuracy(
    chunks: Iterable[tuple[int, np.ndarray, np.ndarray]],
    u_HCE: np.ndarray,
    bias_E: np.ndarray,
    tasks: Sequence[components.ZeroShotTask],
    s_mean_HC: np.ndarray,
    keep_HC: np.ndarray,
    pairs: dict,
    keep_C: np.ndarray,
    v_KE: np.ndarray,
    dictionary_AE: np.ndarray,
    *,
    params: dict,
    device: str | torch.device,
) -> pd.DataFrame:
    """Zero-shot accuracy with the kept pairs' directions replaced by their m-sparse approximations (rest
    mean-ablated), against the neuron baseline: the same fraction of neurons, each reduced to its first PC,
    itself replaced by its m-sparse approximation (neuron-attention paper Fig. 2; methods.md Sec. 5).

    One pass over ``chunks``: every variant's outputs of a chunk are scored
    (:class:`clipmech.decomposition.components.ZeroShotCounts`) and dropped, so memory holds one chunk.

    Parameters
    ----------
    chunks : iterable of (int, numpy.ndarray, numpy.ndarray)
        (start, s_NHC (n, H, C), y_NE (n, E)) of consecutive runs of the images the tasks index, float64
        (:func:`clipmech.stores.attnpool.iter_scalars` over the evaluated images).
    u_HCE, bias_E : numpy.ndarray
        Pair directions and the output bias of the pool.
    tasks : sequence of ZeroShotTask
        Their ``images`` index the images of ``chunks``.
    s_mean_HC : numpy.ndarray, (H, C)
        Mean scalars over the reference images (:meth:`clipmech.decomposition.components.ScoreSums.s_mean`).
    keep_HC : numpy.ndarray, bool, (H, C)
    pairs : dict
        :func:`decompose_pairs` of the same pairs.
    keep_C : numpy.ndarray, bool, (C,)
        The kept neurons (top ``keep_fraction`` by mean norm).
    v_KE : numpy.ndarray, (K, E)
        Their first PCs, in index order (:meth:`clipmech.decomposition.components.TopContributions.neuron_directions`).
    params : dict
        ``m_values``, ``n_components``, ``omp_batch_size``.

    Returns
    -------
    pandas.DataFrame
        ``level`` (model, pair, neuron), ``directions`` (exact, sparse), ``m`` (NaN for exact), ``task``,
        ``accuracy``.
    """
    kept_heads, kept_neurons, coded, code = pairs["kept_heads"], pairs["kept_neurons"], pairs["coded"], pairs["code"]
    index = {tuple(p): i for i, p in enumerate(coded.tolist())}
    rows_K = np.array([index[(hh, nn)] for hh, nn in zip(kept_heads.tolist(), kept_neurons.tolist())], dtype=np.intp)
    u_norm_K = np.linalg.norm(u_HCE[kept_heads, kept_neurons], axis=1)
    kept_code = omp.OMPResult(*(None if t is None else t[torch.as_tensor(rows_K)] for t in code))
    neuron_code = sparse_codes(v_KE, dictionary_AE, params["n_components"], params["omp_batch_size"], device)

    def pair_outputs(directions_KE: np.ndarray):
        return lambda s_NHC, y_NE: components.pair_outputs_with_directions(
            s_NHC, u_HCE, bias_E, keep_HC, s_mean_HC, kept_heads, kept_neurons, directions_KE, max(1, len(s_NHC))
        )

    def neuron_outputs(directions_KE: np.ndarray):
        return lambda s_NHC, y_NE: components.neuron_outputs_rank_one(
            s_NHC, u_HCE, bias_E, keep_C, s_mean_HC, v_KE, directions_KE
        )

    variants = [(("model", "exact", np.nan), lambda s_NHC, y_NE: y_NE)]
    variants.append((("pair", "exact", np.nan), pair_outputs(u_HCE[kept_heads, kept_neurons])))
    for m in params["m_values"]:
        variants.append((("pair", "sparse", m), pair_outputs(sparse_directions(kept_code, dictionary_AE, m, u_norm_K))))
    variants.append((("neuron", "exact", np.nan), neuron_outputs(v_KE)))
    v_norm_K = np.linalg.norm(v_KE, axis=1)
    for m in params["m_values"]:
        variants.append(
            (("neuron", "sparse", m), neuron_outputs(sparse_directions(neuron_code, dictionary_AE, m, v_norm_K)))
        )
    counts = [components.ZeroShotCounts(tasks) for _ in variants]
    for start, s_NHC, y_NE in chunks:
        for (_, outputs), count in zip(variants, counts):
            count.add(start, outputs(s_NHC, y_NE))
    records = [
        {"level": level, "directions": directions, "m": m, "task": task, "accuracy": accuracy}
        for ((level, directions, m), _), count in zip(variants, counts)
        for task, accuracy in count.accuracy().items()
    ]
    return pd.DataFrame(records)
