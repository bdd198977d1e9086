"""Attention sink and register neurons of CLIP-ResNet's attention pool.

methods.md Sec. 5 (neuron-attention paper Apps. A.5-A.6): the sink is the token with the largest
mean attention from the query (token 0), over images and heads; register neurons are the neurons
whose zeroing changes the attention to the sink the most.

Zeroing neuron n sets its raw activation a_t[n] = x_t[n] - p_t[n] to 0 at every location, and so
also in the mean token (token 0, the mean of the spatial tokens): x'_t = x_t - a_t[n] e_n for all
t. The query q = (W_q x_0 + b_q) / sqrt(d) and the keys k_t = W_k x_t (the key bias cancels in
the softmax) change by rank-one terms, so per head h

    logit'_{h,t} = q^h.k^h_t - a_t[n] q^h.W_k^h e_n - a_0[n] (W_q^h e_n).k^h_t / sqrt(d)
                   + a_0[n] a_t[n] (W_q^h e_n).(W_k^h e_n) / sqrt(d),

which :func:`attention_after_zeroing` evaluates for every neuron at once (no forward per neuron).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch

from clipmech.decomposition import pool


def token_attention_table(alpha_chunks: Iterable[np.ndarray], grid: tuple[int, int]) -> pd.DataFrame:
    """Mean attention of the query to each token, and how often each token is the per-head maximum.

    Summed over chunks of images, so memory holds one chunk (the stage reads the store's ``alpha`` a chunk at a
    time); the mean differs from that of all images at once by rounding only.

    Parameters
    ----------
    alpha_chunks : iterable of ndarray, shape (n, H, T)
        The attention of consecutive chunks of images (one array of all images works too, as ``[alpha_NHT]``).
    grid : tuple of int
        (rows, cols) of the feature map; T = rows * cols + 1.

    Returns
    -------
    pandas.DataFrame
        One row per token: token, kind (``mean`` for token 0, else ``spatial``), row, col (-1 for
        the mean token), mean_attention (over images and heads), max_attention_share (fraction
        of (image, head) whose largest attention falls on the token), is_sink (the token with the
        largest mean attention).

    Raises
    ------
    ValueError
        If T does not match the grid, or there are no images.
    """
    t = grid[0] * grid[1] + 1
    sum_T, argmax_count_T, n_rows = np.zeros(t), np.zeros(t, dtype=np.int64), 0
    for alpha_NHT in alpha_chunks:
        if alpha_NHT.shape[2] != t:
            raise ValueError(f"alpha_NHT has {alpha_NHT.shape[2]} tokens but the grid {grid} needs {t}")
        sum_T += alpha_NHT.sum(axis=(0, 1))
        argmax_count_T += np.bincount(alpha_NHT.argmax(axis=2).ravel(), minlength=t)
        n_rows += alpha_NHT.shape[0] * alpha_NHT.shape[1]
    if not n_rows:
        raise ValueError("token_attention_table needs the attention of at least one image")
    mean_T, argmax_share_T = sum_T / n_rows, argmax_count_T / n_rows
    rows = np.concatenate([[-1], np.arange(t - 1) // grid[1]])
    cols = np.concatenate([[-1], np.arange(t - 1) % grid[1]])
    return pd.DataFrame(
        {
            "token": np.arange(t),
            "kind": ["mean"] + ["spatial"] * (t - 1),
            "row": rows,
            "col": cols,
            "mean_attention": mean_T,
            "max_attention_share": argmax_share_T,
            "is_sink": np.arange(t) == int(np.argmax(mean_T)),
        }
    )


def attention_after_zeroing(x_NTC: np.ndarray, weights: pool.AttnPoolWeights, token: int) -> np.ndarray:
    """Attention of the query to ``token`` after zeroing each neuron's activation, per head.

    Closed form of the module docstring, evaluated in float64 with torch for all C neurons.

    Parameters
    ----------
    x_NTC : ndarray, shape (N, T, C)
        Tokens, positional embedding included.
    weights : AttnPoolWeights
    token : int
        The token whose attention is tracked (the sink).

    Returns
    -------
    ndarray, shape (N, C, H), float64
        alpha'_{h, token} with neuron n zeroed.

    Raises
    ------
    ValueError
        If ``token`` is out of range.
    """
    n_images, n_tokens, c = x_NTC.shape
    if not 0 <= token < n_tokens:
        raise ValueError(f"token must lie in [0, {n_tokens}), got {token}")
    h = weights.n_heads
    d = c // h
    scale = d**-0.5
    x = torch.as_tensor(x_NTC, dtype=torch.float64)
    a_NTC = x - torch.as_tensor(weights.positional_embedding, dtype=torch.float64)[None]
    wq_HdC = torch.as_tensor(weights.q_weight, dtype=torch.float64).reshape(h, d, c)
    wk_HdC = torch.as_tensor(weights.k_weight, dtype=torch.float64).reshape(h, d, c)
    q_NHd = x[:, 0] @ torch.as_tensor(weights.q_weight, dtype=torch.float64).T + torch.as_tensor(
        weights.q_bias, dtype=torch.float64
    )
    q_NHd = (q_NHd * scale).reshape(n_images, h, d)
    k_NTHd = (x @ torch.as_tensor(weights.k_weight, dtype=torch.float64).T).reshape(n_images, n_tokens, h, d)
    base_NHT = torch.einsum("nhd,nthd->nht", q_NHd, k_NTHd)
    qwk_NHC = torch.einsum("nhd,hdc->nhc", q_NHd, wk_HdC)  # q^h . W_k^h e_n
    wqk_NHCT = torch.einsum("hdc,nthd->nhct", wq_HdC, k_NTHd)  # (W_q^h e_n) . k_t^h
    wqwk_HC = torch.einsum("hdc,hdc->hc", wq_HdC, wk_HdC)
    a0_NC = a_NTC[:, 0]
    logits_NHCT = (
        base_NHT[:, :, None, :]
        - a_NTC.permute(0, 2, 1)[:, None] * qwk_NHC[..., None]
        - scale * a0_NC[:, None, :, None] * wqk_NHCT
        + scale * (a0_NC[:, :, None] * a_NTC.permute(0, 2, 1))[:, None] * wqwk_HC[None, :, :, None]
    )
    return torch.softmax(logits_NHCT, dim=-1)[..., token].permute(0, 2, 1).numpy()


def register_neurons(
    x_NTC: np.ndarray, alpha_NHT: np.ndarray, weights: pool.AttnPoolWeights, token: int, chunk_size: int = 16
) -> pd.DataFrame:
    """Rank neurons by how much zeroing each changes the attention to the sink token (paper A.6).

    Parameters
    ----------
    x_NTC : ndarray, shape (N, T, C)
    alpha_NHT : ndarray, shape (N, H, T)
        The unablated attention.
    weights : AttnPoolWeights
    token : int
        The sink token.
    chunk_size : int
        Images per evaluation (memory ~ chunk_size * H * C * T float64).

    Returns
    -------
    pandas.DataFrame
        One row per neuron, sorted by ``abs_change`` (decreasing): neuron, abs_change (mean over
        images of |mean over heads of alpha' - alpha| at the sink), mean_change (signed),
        max_head_change (mean over images of the largest |change| over heads), rank (1 = most).
    """
    abs_sum = mean_sum = max_sum = 0.0
    for start in range(0, x_NTC.shape[0], chunk_size):
        after_NCH = attention_after_zeroing(x_NTC[start : start + chunk_size], weights, token)
        change_NCH = after_NCH - alpha_NHT[start : start + chunk_size, None, :, token]
        abs_sum = abs_sum + np.abs(change_NCH.mean(axis=2)).sum(axis=0)
        mean_sum = mean_sum + change_NCH.mean(axis=2).sum(axis=0)
        max_sum = max_sum + np.abs(change_NCH).max(axis=2).sum(axis=0)
    n = x_NTC.shape[0]
    table = pd.DataFrame(
        {
            "neuron": np.arange(x_NTC.shape[2]),
            "abs_change": abs_sum / n,
            "mean_change": mean_sum / n,
            "max_head_change": max_sum / n,
        }
    ).sort_values("abs_change", ascending=False, kind="stable")
    table["rank"] = np.arange(1, len(table) + 1)
    return table.reset_index(drop=True)
