"""Neuron x attention-head decomposition of CLIP-ResNet's attention pooling.

Implements methods.md Sec. 5 (the equations the neuron-attention paper, Secs. 3.2 and 4.1,
lost in conversion). open_clip's ``AttentionPool2d`` turns the last feature map (N, C, h, w)
into tokens x_0..x_{T-1} (T = h*w + 1; x_0 = mean of the spatial tokens; spatial token
1 + i*w + j is feature-map location (i, j); the learned positional embedding is added to all
tokens) and returns the output of one query (token 0) attending over all T tokens with H heads:

    y = sum_h sum_t alpha_{h,t} W_c^h W_v^h x_t  +  sum_h W_c^h b_v^h + b_c.

With x_t = sum_n x_t[n] e_n this is a sum over neuron-head pairs (n, h):

    c_{n,h} = s_{n,h} u_{n,h},   s_{n,h} = sum_t alpha_{h,t} x_t[n],   u_{n,h} = W_c^h W_v^h e_n.

Only x (N, T, C) and alpha (N, H, T) are stored per image; everything else is computed on the
fly from s (N, H, C) and u (H, C, E). The N x H x C x E tensor of all contributions is never
formed: reconstructions are (N, H*C) x (H*C, E) matrix products, and neuron norms use the
per-neuron H x H Gram matrices of the directions.

x and alpha come from the model through the hook sites ``visual.attnpool.hook_x`` / ``hook_alpha``
(:mod:`clipmech.hooks.pool_forward` recomputes them from the module's input); every function here is a
pure function of NumPy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

__all__ = [
    "AttnPoolWeights",
    "attnpool_weights",
    "neuron_head_directions",
    "output_bias",
    "direction_norms",
    "checked_index",
    "checked_pairs",
    "pair_scalars",
    "token_pair_scalars",
    "token_head_maps",
    "tokens_to_grid",
    "pair_contribution_norms",
    "pair_contributions",
    "neuron_contributions",
    "neuron_gram",
    "neuron_contribution_norms",
    "head_contributions",
    "reconstruct_output",
    "keep_mask_pairs",
    "top_fraction_mask",
    "mean_ablate",
    "top_norm_principal_components",
]

# --------------------------------------------------------------------------------------------
# Weights -> directions (NumPy)
# --------------------------------------------------------------------------------------------


def _check_attnpool(attnpool: nn.Module) -> None:
    required = ("positional_embedding", "q_proj", "k_proj", "v_proj", "c_proj", "num_heads")
    missing = [name for name in required if not hasattr(attnpool, name)]
    if missing:
        raise TypeError(
            f"{type(attnpool).__name__} is not an open_clip AttentionPool2d: missing {missing} (needs {list(required)})"
        )


@dataclass(frozen=True)
class AttnPoolWeights:
    """The parameters of an ``AttentionPool2d`` as NumPy arrays (methods.md Sec. 5).

    Attributes
    ----------
    positional_embedding : ndarray, shape (T, C)
    q_weight, k_weight, v_weight : ndarray, shape (C, C)  (out x in, as ``nn.Linear``)
    q_bias, k_bias, v_bias : ndarray, shape (C,)
    c_weight : ndarray, shape (E, C); c_bias : ndarray, shape (E,)
    n_heads : int
        H; the head width is C / H.
    """

    positional_embedding: np.ndarray
    q_weight: np.ndarray
    q_bias: np.ndarray
    k_weight: np.ndarray
    k_bias: np.ndarray
    v_weight: np.ndarray
    v_bias: np.ndarray
    c_weight: np.ndarray
    c_bias: np.ndarray
    n_heads: int


def attnpool_weights(attnpool: nn.Module, dtype: np.dtype | type = np.float64) -> AttnPoolWeights:
    """Copy an open_clip ``AttentionPool2d``'s parameters to NumPy.

    Parameters
    ----------
    attnpool : torch.nn.Module
        ``model.visual.attnpool``.
    dtype : numpy dtype
        Dtype of the returned arrays (default float64).

    Returns
    -------
    AttnPoolWeights

    Raises
    ------
    TypeError
        If ``attnpool`` lacks the attributes of an ``AttentionPool2d``.
    """
    _check_attnpool(attnpool)

    def arr(t: torch.Tensor) -> np.ndarray:
        return t.detach().to("cpu", torch.float64).numpy().astype(dtype, copy=False)

    return AttnPoolWeights(
        positional_embedding=arr(attnpool.positional_embedding),
        q_weight=arr(attnpool.q_proj.weight),
        q_bias=arr(attnpool.q_proj.bias),
        k_weight=arr(attnpool.k_proj.weight),
        k_bias=arr(attnpool.k_proj.bias),
        v_weight=arr(attnpool.v_proj.weight),
        v_bias=arr(attnpool.v_proj.bias),
        c_weight=arr(attnpool.c_proj.weight),
        c_bias=arr(attnpool.c_proj.bias),
        n_heads=int(attnpool.num_heads),
    )


def neuron_head_directions(weights: AttnPoolWeights) -> np.ndarray:
    """Neuron-head directions u_{n,h} = W_c^h W_v^h e_n (methods.md Sec. 5; paper Eqs. 4-5).

    W_v^h are the rows h*d:(h+1)*d of the value projection and W_c^h the matching columns of
    the output projection (d = C / H).

    Parameters
    ----------
    weights : AttnPoolWeights

    Returns
    -------
    ndarray, shape (H, C, E), dtype of the weights
        ``u_HCE[h, n]`` is the direction of neuron n through head h in the output space.
    """
    h = weights.n_heads
    e, c = weights.c_weight.shape
    wv_HdC = weights.v_weight.reshape(h, c // h, c)
    wc_EHd = weights.c_weight.reshape(e, h, c // h)
    # contiguous, so that reshaping to (H*C, E) for the reconstruction matmul is free
    return np.ascontiguousarray(np.einsum("hdc,ehd->hce", wv_HdC, wc_EHd, optimize=True))


def output_bias(weights: AttnPoolWeights) -> np.ndarray:
    """Bias of the decomposition, sum_h W_c^h b_v^h + b_c = W_c b_v + b_c (methods.md Sec. 5).

    Parameters
    ----------
    weights : AttnPoolWeights

    Returns
    -------
    ndarray, shape (E,)
    """
    return weights.c_weight @ weights.v_bias + weights.c_bias


def direction_norms(u_HCE: np.ndarray) -> np.ndarray:
    """Euclidean norms ||u_{n,h}|| of the neuron-head directions.

    Parameters
    ----------
    u_HCE : ndarray, shape (H, C, E)

    Returns
    -------
    ndarray, shape (H, C)
    """
    return np.linalg.norm(u_HCE, axis=-1)


# --------------------------------------------------------------------------------------------
# Scalars and maps (NumPy)
# --------------------------------------------------------------------------------------------


def pair_scalars(x_NTC: np.ndarray, alpha_NHT: np.ndarray) -> np.ndarray:
    """Neuron-head scalars s_{n,h} = sum_t alpha_{h,t} x_t[n] (methods.md Sec. 5).

    Parameters
    ----------
    x_NTC : ndarray, shape (N, T, C)
        Attention-pool tokens (positional embedding included).
    alpha_NHT : ndarray, shape (N, H, T)
        Query attention weights.

    Returns
    -------
    ndarray, shape (N, H, C)

    Raises
    ------
    ValueError
        If N or T of the two arrays differ.
    """
    if x_NTC.shape[:2] != (alpha_NHT.shape[0], alpha_NHT.shape[2]):
        raise ValueError(
            f"x_NTC has (N, T) = {x_NTC.shape[:2]} but alpha_NHT has (N, T) = "
            f"{(alpha_NHT.shape[0], alpha_NHT.shape[2])}"
        )
    return np.matmul(alpha_NHT, x_NTC)


def checked_index(name: str, index, size: int) -> np.ndarray:
    """``index`` as a flat intp array, each entry in [0, size).

    Raises
    ------
    ValueError
        If an entry is out of range; the message names the argument ``name``.
    """
    index = np.asarray(index, dtype=np.intp).reshape(-1)
    if index.size and (index.min() < 0 or index.max() >= size):
        raise ValueError(f"{name} must lie in [0, {size}), got range [{index.min()}, {index.max()}]")
    return index


def checked_pairs(
    heads_K, neurons_K, n_heads: int, n_neurons: int, names: tuple[str, str] = ("heads_K", "neurons_K")
) -> tuple[np.ndarray, np.ndarray]:
    """Neuron-head pairs (neurons_K[k], heads_K[k]) as two flat intp arrays of one length, in range.

    Raises
    ------
    ValueError
        If the arrays differ in length or an index is out of range; the messages name the arguments ``names``.
    """
    heads_K = np.asarray(heads_K, dtype=np.intp).reshape(-1)
    neurons_K = np.asarray(neurons_K, dtype=np.intp).reshape(-1)
    if heads_K.shape != neurons_K.shape:
        raise ValueError(
            f"{names[0]} has {heads_K.size} entries but {names[1]} has {neurons_K.size}; pass one head per neuron"
        )
    return checked_index(names[0], heads_K, n_heads), checked_index(names[1], neurons_K, n_neurons)


def token_pair_scalars(
    x_NTC: np.ndarray, alpha_NHT: np.ndarray, heads_K: np.ndarray, neurons_K: np.ndarray
) -> np.ndarray:
    """Per-token scalars alpha_{h,t} x_t[n] of chosen neuron-head pairs (paper Eq. 5).

    The contribution of pair (n, h) through token t is alpha_{h,t} x_t[n] u_{n,h}; summing the
    returned maps over t gives s_{n,h} (methods.md Sec. 5).

    Parameters
    ----------
    x_NTC : ndarray, shape (N, T, C)
    alpha_NHT : ndarray, shape (N, H, T)
    heads_K, neurons_K : array_like of int, shape (K,)
        The pairs (neurons_K[k], heads_K[k]).

    Returns
    -------
    ndarray, shape (N, K, T)
        Token 0 is the mean token; see :func:`tokens_to_grid` for the spatial layout.

    Raises
    ------
    ValueError
        If the index arrays differ in length or are out of range.
    """
    heads_K, neurons_K = checked_pairs(heads_K, neurons_K, alpha_NHT.shape[1], x_NTC.shape[2])
    return alpha_NHT[:, heads_K, :] * np.swapaxes(x_NTC[:, :, neurons_K], 1, 2)


def token_head_maps(x_NTC: np.ndarray, alpha_NHT: np.ndarray, u_HCE: np.ndarray, z_KE: np.ndarray) -> np.ndarray:
    """Per-token, per-head contributions projected on directions: <c_{h,t}, z_d>.

    c_{h,t} = alpha_{h,t} W_c^h W_v^h x_t = alpha_{h,t} sum_n x_t[n] u_{n,h} is the contribution
    of token t through head h (paper Eq. 3 and Sec. 5.1 "per-head contributions"); it is never
    formed: the directions are first projected, p_{h,n,k} = u_{n,h} . z_k.

    Parameters
    ----------
    x_NTC : ndarray, shape (N, T, C)
    alpha_NHT : ndarray, shape (N, H, T)
    u_HCE : ndarray, shape (H, C, E)
    z_KE : ndarray, shape (K, E)
        K directions in the output space (e.g. normalised class text embeddings).

    Returns
    -------
    ndarray, shape (N, H, T, K)
        Summed over h and t it equals (y - bias) . z_k.

    Raises
    ------
    ValueError
        If the widths of the arrays disagree.
    """
    if u_HCE.shape[:2] != (alpha_NHT.shape[1], x_NTC.shape[2]) or z_KE.shape[-1] != u_HCE.shape[2]:
        raise ValueError(
            f"inconsistent shapes: x_NTC {x_NTC.shape}, alpha_NHT {alpha_NHT.shape}, u_HCE {u_HCE.shape}, "
            f"z_KE {z_KE.shape} (need u (H, C, E) with H from alpha, C from x, E from z)"
        )
    p_HCK = np.matmul(u_HCE, z_KE.T)
    return alpha_NHT[..., None] * np.einsum("ntc,hck->nhtk", x_NTC, p_HCK, optimize=True)


def tokens_to_grid(a_T: np.ndarray, height: int, width: int) -> np.ndarray:
    """Drop the mean token and lay the spatial tokens out as the feature map's grid.

    Inverts the row-major flattening of ``AttentionPool2d``: token 1 + i*width + j is location
    (i, j) (methods.md Sec. 5).

    Parameters
    ----------
    a_T : ndarray, shape (..., T), T = height*width + 1
        Per-token values on the last axis.
    height, width : int
        Feature-map size (image size / 32 for CLIP-ResNet).

    Returns
    -------
    ndarray, shape (..., height, width)

    Raises
    ------
    ValueError
        If the last axis is not height*width + 1 long.
    """
    if a_T.shape[-1] != height * width + 1:
        raise ValueError(f"last axis has {a_T.shape[-1]} tokens, expected height*width + 1 = {height * width + 1}")
    return a_T[..., 1:].reshape(*a_T.shape[:-1], height, width)


# --------------------------------------------------------------------------------------------
# Contributions, norms, reconstruction (NumPy)
# --------------------------------------------------------------------------------------------


def pair_contribution_norms(s_NHC: np.ndarray, u_norm_HC: np.ndarray) -> np.ndarray:
    """Neuron-head contribution norms ||c_{n,h}|| = |s_{n,h}| ||u_{n,h}|| (methods.md Sec. 5).

    Parameters
    ----------
    s_NHC : ndarray, shape (N, H, C)
    u_norm_HC : ndarray, shape (H, C)
        From :func:`direction_norms`.

    Returns
    -------
    ndarray, shape (N, H, C)
    """
    return np.abs(s_NHC) * u_norm_HC


def pair_contributions(s_NHC: np.ndarray, u_HCE: np.ndarray, heads_K: np.ndarray, neurons_K: np.ndarray) -> np.ndarray:
    """Contributions c_{n,h} = s_{n,h} u_{n,h} of chosen pairs (paper Eq. 5; methods.md Sec. 5).

    Parameters
    ----------
    s_NHC : ndarray, shape (N, H, C)
    u_HCE : ndarray, shape (H, C, E)
    heads_K, neurons_K : array_like of int, shape (K,)

    Returns
    -------
    ndarray, shape (N, K, E)

    Raises
    ------
    ValueError
        If the index arrays differ in length or are out of range.
    """
    heads_K, neurons_K = checked_pairs(heads_K, neurons_K, u_HCE.shape[0], u_HCE.shape[1])
    return s_NHC[:, heads_K, neurons_K, None] * u_HCE[heads_K, neurons_K][None]


def neuron_contributions(s_NHC: np.ndarray, u_HCE: np.ndarray, neurons_K: np.ndarray) -> np.ndarray:
    """Neuron contributions c_n = sum_h s_{n,h} u_{n,h} of chosen neurons (methods.md Sec. 5).

    Parameters
    ----------
    s_NHC : ndarray, shape (N, H, C)
    u_HCE : ndarray, shape (H, C, E)
    neurons_K : array_like of int, shape (K,)

    Returns
    -------
    ndarray, shape (N, K, E)
    """
    neurons_K = np.asarray(neurons_K, dtype=np.intp).reshape(-1)
    return np.einsum("nhk,hke->nke", s_NHC[:, :, neurons_K], u_HCE[:, neurons_K], optimize=True)


def neuron_gram(u_HCE: np.ndarray) -> np.ndarray:
    """Per-neuron Gram matrices G_n[h, h'] = u_{n,h} . u_{n,h'} of the directions.

    Parameters
    ----------
    u_HCE : ndarray, shape (H, C, E)

    Returns
    -------
    ndarray, shape (C, H, H)
        Lets :func:`neuron_contribution_norms` avoid forming N x C x E contributions.
    """
    return np.matmul(np.transpose(u_HCE, (1, 0, 2)), np.transpose(u_HCE, (1, 2, 0)))


def neuron_contribution_norms(s_NHC: np.ndarray, gram_CHH: np.ndarray) -> np.ndarray:
    """Neuron contribution norms ||c_n|| = sqrt(s_n^T G_n s_n) (methods.md Sec. 5).

    Parameters
    ----------
    s_NHC : ndarray, shape (N, H, C)
    gram_CHH : ndarray, shape (C, H, H)
        From :func:`neuron_gram`.

    Returns
    -------
    ndarray, shape (N, C)
    """
    sq_NC = np.einsum("nhc,chk,nkc->nc", s_NHC, gram_CHH, s_NHC, optimize=True)
    return np.sqrt(np.maximum(sq_NC, 0.0))


def head_contributions(s_NHC: np.ndarray, u_HCE: np.ndarray) -> np.ndarray:
    """Head contributions c_h = sum_n s_{n,h} u_{n,h} = W_c^h W_v^h sum_t alpha_{h,t} x_t.

    methods.md Sec. 5; paper Eq. 3 summed over tokens.

    Parameters
    ----------
    s_NHC : ndarray, shape (N, H, C)
    u_HCE : ndarray, shape (H, C, E)

    Returns
    -------
    ndarray, shape (N, H, E)
    """
    return np.swapaxes(np.matmul(np.swapaxes(s_NHC, 0, 1), u_HCE), 0, 1)


def reconstruct_output(s_NHC: np.ndarray, u_HCE: np.ndarray, bias_E: np.ndarray, chunk_size: int = 256) -> np.ndarray:
    """Attention-pool output y = sum_{n,h} s_{n,h} u_{n,h} + bias (methods.md Sec. 5).

    One (N, H*C) x (H*C, E) matrix product per chunk of images.

    Parameters
    ----------
    s_NHC : ndarray, shape (N, H, C)
    u_HCE : ndarray, shape (H, C, E)
    bias_E : ndarray, shape (E,)
        From :func:`output_bias`.
    chunk_size : int
        Images per matrix product.

    Returns
    -------
    ndarray, shape (N, E)
    """
    return _mix_and_project(s_NHC, None, None, u_HCE, bias_E, chunk_size)


def _mix_and_project(
    s_NHC: np.ndarray,
    keep_HC: np.ndarray | None,
    s_mean_HC: np.ndarray | None,
    u_HCE: np.ndarray,
    bias_E: np.ndarray,
    chunk_size: int,
) -> np.ndarray:
    n, h, c = s_NHC.shape
    if u_HCE.shape[:2] != (h, c) or bias_E.shape != (u_HCE.shape[2],):
        raise ValueError(
            f"inconsistent shapes: s_NHC {s_NHC.shape}, u_HCE {u_HCE.shape}, bias_E {bias_E.shape} "
            f"(need u (H, C, E) and bias (E,))"
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    u_QE = u_HCE.reshape(h * c, -1)
    offset_E = bias_E
    if keep_HC is not None:
        offset_E = bias_E + np.where(keep_HC, 0.0, s_mean_HC).reshape(-1) @ u_QE
    out_NE = np.empty((n, u_QE.shape[1]), dtype=np.result_type(s_NHC, u_HCE, bias_E))
    for start in range(0, n, chunk_size):
        s_chunk = s_NHC[start : start + chunk_size]
        if keep_HC is not None:
            s_chunk = s_chunk * keep_HC
        out_NE[start : start + chunk_size] = s_chunk.reshape(len(s_chunk), h * c) @ u_QE + offset_E
    return out_NE


def keep_mask_pairs(
    keep: np.ndarray, level: Literal["pair", "neuron", "head"], n_heads: int, n_neurons: int
) -> np.ndarray:
    """Expand a keep mask over pairs, neurons or heads to a mask over pairs (H, C).

    Keeping neuron n keeps all pairs (n, h); keeping head h keeps all pairs (n, h)
    (paper Fig. 1 mean-ablation of pairs, neurons and heads; methods.md Sec. 5).

    Parameters
    ----------
    keep : ndarray of bool, shape (H, C), (C,) or (H,) for level pair, neuron, head
    level : {"pair", "neuron", "head"}
    n_heads, n_neurons : int
        H and C.

    Returns
    -------
    ndarray of bool, shape (H, C)

    Raises
    ------
    ValueError
        If ``level`` is not one of the allowed values or ``keep`` has the wrong shape for it.
    """
    expected = {"pair": (n_heads, n_neurons), "neuron": (n_neurons,), "head": (n_heads,)}
    if level not in expected:
        raise ValueError(f"level must be one of {sorted(expected)}, got {level!r}")
    keep = np.asarray(keep)
    if keep.dtype != np.bool_ or keep.shape != expected[level]:
        raise ValueError(
            f"keep for level={level!r} must be a boolean array of shape {expected[level]}, "
            f"got dtype {keep.dtype} and shape {keep.shape}"
        )
    if level == "neuron":
        return np.broadcast_to(keep[None, :], (n_heads, n_neurons)).copy()
    if level == "head":
        return np.broadcast_to(keep[:, None], (n_heads, n_neurons)).copy()
    return keep.copy()


def top_fraction_mask(score: np.ndarray, fraction: float) -> np.ndarray:
    """Mask of the top ``fraction`` of components by score (paper Fig. 1, Sec. 4.1).

    Keeps round(fraction * size) components with the highest score (ties broken by a stable
    sort on the flattened index, lower index first).

    Parameters
    ----------
    score : ndarray, any shape
        E.g. mean pair contribution norms (H, C), neuron norms (C,), head norms (H,).
    fraction : float in [0, 1]

    Returns
    -------
    ndarray of bool, shape of ``score``

    Raises
    ------
    ValueError
        If ``fraction`` is outside [0, 1] or the score has NaNs.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    flat = np.asarray(score).reshape(-1)
    if np.isnan(flat).any():
        raise ValueError("score contains NaN; ranking is undefined")
    k = int(round(fraction * flat.size))
    order = np.argsort(-flat, kind="stable")
    mask = np.zeros(flat.size, dtype=bool)
    mask[order[:k]] = True
    return mask.reshape(np.shape(score))


def mean_ablate(
    s_NHC: np.ndarray,
    u_HCE: np.ndarray,
    bias_E: np.ndarray,
    keep: np.ndarray,
    *,
    level: Literal["pair", "neuron", "head"] = "pair",
    s_mean_HC: np.ndarray | None = None,
    chunk_size: int = 256,
) -> np.ndarray:
    """Output with all non-kept components replaced by their dataset mean (paper Fig. 1).

    y_ablated = sum_{kept (n,h)} s_{n,h} u_{n,h} + sum_{ablated (n,h)} mean(s_{n,h}) u_{n,h}
    + bias (methods.md Sec. 5, mean-ablation). Because c_{n,h} is linear in s_{n,h},
    replacing s by its mean replaces c_{n,h} (and, summed over h or n, c_n or c_h) by its mean.
    The ablated part is one constant vector; the kept part one (N, H*C) x (H*C, E) product per
    chunk.

    Parameters
    ----------
    s_NHC : ndarray, shape (N, H, C)
    u_HCE : ndarray, shape (H, C, E)
    bias_E : ndarray, shape (E,)
    keep : ndarray of bool, shape (H, C), (C,) or (H,)
        Components to keep, for ``level`` "pair", "neuron" or "head".
    level : {"pair", "neuron", "head"}
    s_mean_HC : ndarray, shape (H, C), optional
        Mean of s over the reference set (the paper's 1000 images); default: mean of ``s_NHC``.
    chunk_size : int
        Images per matrix product.

    Returns
    -------
    ndarray, shape (N, E)

    Raises
    ------
    ValueError
        If ``level`` or the shapes are invalid.
    """
    _, h, c = s_NHC.shape
    keep_HC = keep_mask_pairs(keep, level, h, c)
    if s_mean_HC is None:
        s_mean_HC = s_NHC.mean(axis=0)
    elif s_mean_HC.shape != (h, c):
        raise ValueError(f"s_mean_HC must have shape (H, C) = {(h, c)}, got {s_mean_HC.shape}")
    return _mix_and_project(s_NHC, keep_HC, s_mean_HC, u_HCE, bias_E, chunk_size)


# --------------------------------------------------------------------------------------------
# Rank-1 check (NumPy)
# --------------------------------------------------------------------------------------------


def top_norm_principal_components(
    c_NE: np.ndarray, *, top_k: int = 50, n_components: int = 1, center: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Principal components of one component's contributions over its top-norm images.

    The paper (Sec. 4.1, App. A.2) takes the first principal component of a pair's (or a
    neuron's) contributions over the ``top_k`` = 50 images with the largest contribution norm
    (methods.md Sec. 5: for a pair this must be +-u_{n,h} / ||u_{n,h}||).

    Parameters
    ----------
    c_NE : ndarray, shape (N, E)
        Contributions of one component over N images, e.g. ``pair_contributions(...)[:, k]``.
    top_k : int
        Number of images with the largest ||c|| to use (all if N < top_k).
    n_components : int
        Number of components returned.
    center : bool
        Subtract the mean over the selected images first (PCA); False gives the uncentred SVD.

    Returns
    -------
    pcs_KE : ndarray, shape (n_components, E)
        Unit vectors, sign chosen so each has a non-negative dot product with the mean
        contribution of the selected images.
    explained_K : ndarray, shape (n_components,)
        Fraction of the selected images' (centred) sum of squares along each component.

    Raises
    ------
    ValueError
        If ``top_k`` or ``n_components`` is not positive, or n_components exceeds
        min(selected images, E).
    """
    if top_k < 1 or n_components < 1:
        raise ValueError(f"top_k and n_components must be positive, got top_k={top_k}, n_components={n_components}")
    norms_N = np.linalg.norm(c_NE, axis=1)
    sel_KE = c_NE[np.argsort(-norms_N, kind="stable")[:top_k]]
    if n_components > min(sel_KE.shape):
        raise ValueError(f"n_components={n_components} exceeds min(selected images, E) = {min(sel_KE.shape)}")
    mean_E = sel_KE.mean(axis=0)
    data_KE = sel_KE - mean_E if center else sel_KE
    _, sv_K, vt_KE = np.linalg.svd(data_KE, full_matrices=False)
    pcs = vt_KE[:n_components]
    signs = np.where(pcs @ mean_E < 0, -1.0, 1.0)
    total = float(np.sum(sv_K**2))
    explained = sv_K[:n_components] ** 2 / total if total > 0 else np.full(n_components, np.nan)
    return pcs * signs[:, None], explained


#: Texts whose cosines with every pair :func:`top_pairs_by_text` holds at once.
TEXT_CHUNK = 64


def top_pairs_by_text(u_HCE: np.ndarray, z_KE: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The k pairs whose direction u_{n,h} is most cosine-similar to each text embedding.

    The pair selection of the paper's segmentation (Sec. 5.1) and distribution-shift monitoring
    (Sec. 5.2): rank all H x C pairs by cos(u_{n,h}, z) and keep the top k, per text.

    Parameters
    ----------
    u_HCE : ndarray, shape (H, C, E)
    z_KE : ndarray, shape (K, E)
        Text embeddings (normalised or not).
    k : int
        Pairs per text, 1 <= k <= H * C.

    Returns
    -------
    heads_Kk, neurons_Kk : ndarray of int, shape (K, k)
        Pairs in decreasing cosine.
    cos_Kk : ndarray, shape (K, k)

    Raises
    ------
    ValueError
        If k is outside [1, H * C].
    """
    h, c, e = u_HCE.shape
    if not 1 <= k <= h * c:
        raise ValueError(f"k must be in [1, H*C={h * c}], got {k}")
    u_QE = u_HCE.reshape(h * c, e)
    u_norm = np.linalg.norm(u_QE, axis=1)
    z = z_KE / np.linalg.norm(z_KE, axis=1, keepdims=True)
    top_Kk = np.empty((len(z), k), dtype=np.intp)
    cos_Kk = np.empty((len(z), k))
    # Texts in chunks, so that ImageNet's 1000 classes never hold K x H x C cosines at once; a chunk's product may
    # round differently from all texts' (up to K = TEXT_CHUNK texts are one chunk, as before).
    for start in range(0, len(z), TEXT_CHUNK):
        z_kE = z[start : start + TEXT_CHUNK]
        cos_kP = np.divide(
            z_kE @ u_QE.T, u_norm[None], out=np.full((len(z_kE), h * c), -np.inf), where=u_norm[None] > 0
        )
        top_Kk[start : start + TEXT_CHUNK] = np.argsort(-cos_kP, axis=1, kind="stable")[:, :k]
        cos_Kk[start : start + TEXT_CHUNK] = np.take_along_axis(cos_kP, top_Kk[start : start + TEXT_CHUNK], axis=1)
    heads, neurons = np.divmod(top_Kk, c)
    return heads, neurons, cos_Kk
