"""The forward of open_clip's ``AttentionPool2d``, recomputed from its parts in torch (methods.md Sec. 5).

The hook sites ``visual.attnpool.hook_x`` and ``hook_alpha`` (:mod:`clipmech.hooks.sites`) are these
functions of the module's input: the tokens x (token 0 the mean of the spatial tokens, the positional
embedding added) and the attention alpha of the query; the output recomputed from x and alpha checks
a capture (:func:`clipmech.hooks.attnpool.check_capture`) and serves mean-ablation with the attention
recomputed (:func:`clipmech.decomposition.components.activation_ablated_outputs`).
"""

from __future__ import annotations

import torch


def attnpool_tokens(features_NCHW: torch.Tensor, positional_embedding_TC: torch.Tensor) -> torch.Tensor:
    """Attention-pool input tokens, exactly as ``AttentionPool2d.forward`` builds them.

    Implements the token construction of methods.md Sec. 5 (paper Sec. 3.1): flatten the
    feature map row-major, prepend the mean of the spatial tokens as token 0, add the learned
    positional embedding to every token.

    Parameters
    ----------
    features_NCHW : torch.Tensor, shape (N, C, h, w), float
        Output of the last residual stage (post-ReLU activations; the "neurons").
    positional_embedding_TC : torch.Tensor, shape (h*w + 1, C)
        ``attnpool.positional_embedding``.

    Returns
    -------
    torch.Tensor, shape (N, T, C), T = h*w + 1, dtype of ``features_NCHW``
        Token 0 is the mean token; token ``1 + i*w + j`` is location (i, j). Positional
        embedding included.

    Raises
    ------
    ValueError
        If the feature map is not 4-D or the positional embedding does not have shape
        (h*w + 1, C).
    """
    if features_NCHW.ndim != 4:
        raise ValueError(f"features_NCHW must be 4-D (N, C, h, w), got shape {tuple(features_NCHW.shape)}")
    n, c, h, w = features_NCHW.shape
    if tuple(positional_embedding_TC.shape) != (h * w + 1, c):
        raise ValueError(
            f"positional_embedding_TC has shape {tuple(positional_embedding_TC.shape)}, expected "
            f"(h*w + 1, C) = {(h * w + 1, c)} for a feature map of shape {(n, c, h, w)}"
        )
    spatial_NSC = features_NCHW.reshape(n, c, h * w).transpose(1, 2)  # [N, h*w, C]
    x_NTC = torch.cat([spatial_NSC.mean(dim=1, keepdim=True), spatial_NSC], dim=1)  # [N, T, C]
    return x_NTC + positional_embedding_TC.to(x_NTC.dtype)[None]


def query_attention(
    x_NTC: torch.Tensor, q_weight: torch.Tensor, q_bias: torch.Tensor, k_weight: torch.Tensor, n_heads: int
) -> torch.Tensor:
    """Attention weights alpha_{h,t} of the query (token 0) over all tokens, per head.

    Recomputes what ``F.multi_head_attention_forward`` does inside ``AttentionPool2d`` for the
    one output that is kept (methods.md Sec. 5; paper Eq. 3): q = W_q x_0 + b_q, k_t = W_k x_t
    + b_k, split into H heads of width d = C / H, logits q^h . k_t^h / sqrt(d), softmax over t.
    The key bias is omitted because it adds q^h . b_k^h, the same for every token, to all
    logits of head h and so cancels in the softmax. Computed in float64 as
    r^h = W_k^{h T} q^h (C per head), logits = r^h . x_t, so no T x C x C product is formed.

    Parameters
    ----------
    x_NTC : torch.Tensor, shape (N, T, C)
        Attention-pool tokens from :func:`attnpool_tokens`.
    q_weight, k_weight : torch.Tensor, shape (C, C)
        ``attnpool.q_proj.weight`` and ``attnpool.k_proj.weight`` (out x in).
    q_bias : torch.Tensor, shape (C,)
        ``attnpool.q_proj.bias``.
    n_heads : int
        ``attnpool.num_heads``; must divide C.

    Returns
    -------
    torch.Tensor, shape (N, H, T), dtype ``torch.promote_types(x_NTC.dtype, torch.float32)``
        Softmax weights; each (n, h) row sums to 1.

    Raises
    ------
    ValueError
        If ``n_heads`` does not divide C or the weights do not have shape (C, C).
    """
    n, t, c = x_NTC.shape
    if n_heads < 1 or c % n_heads:
        raise ValueError(f"n_heads={n_heads} must be a positive divisor of the token width C={c}")
    for name, weight in (("q_weight", q_weight), ("k_weight", k_weight)):
        if tuple(weight.shape) != (c, c):
            raise ValueError(f"{name} has shape {tuple(weight.shape)}, expected (C, C) = {(c, c)}")
    d = c // n_heads
    x64_NTC = x_NTC.to(torch.float64)
    q_NC = (x64_NTC[:, 0] @ q_weight.to(torch.float64).T + q_bias.to(torch.float64)) * d**-0.5
    wk_HdC = k_weight.to(torch.float64).reshape(n_heads, d, c)
    r_NHC = torch.einsum("nhd,hdc->nhc", q_NC.reshape(n, n_heads, d), wk_HdC)
    logits_NHT = torch.einsum("nhc,ntc->nht", r_NHC, x64_NTC)
    return torch.softmax(logits_NHT, dim=-1).to(torch.promote_types(x_NTC.dtype, torch.float32))


def attnpool_output_from_attention(
    x_NTC: torch.Tensor,
    alpha_NHT: torch.Tensor,
    v_weight: torch.Tensor,
    v_bias: torch.Tensor,
    c_weight: torch.Tensor,
    c_bias: torch.Tensor,
) -> torch.Tensor:
    """Attention-pool output from tokens and attention weights (methods.md Sec. 5, first equation).

    y = sum_h W_c^h (W_v^h sum_t alpha_{h,t} x_t + b_v^h) + b_c, using sum_t alpha_{h,t} = 1.
    Computed in float64 through the value/output projections (not through u), so it checks the
    captured x and alpha independently of :func:`neuron_head_directions`.

    Parameters
    ----------
    x_NTC : torch.Tensor, shape (N, T, C)
    alpha_NHT : torch.Tensor, shape (N, H, T)
    v_weight : torch.Tensor, shape (C, C); v_bias : shape (C,)
        ``attnpool.v_proj`` parameters.
    c_weight : torch.Tensor, shape (E, C); c_bias : shape (E,)
        ``attnpool.c_proj`` parameters.

    Returns
    -------
    torch.Tensor, shape (N, E), float64

    Raises
    ------
    ValueError
        If H does not divide C.
    """
    n, h, _ = alpha_NHT.shape
    c = x_NTC.shape[-1]
    if c % h:
        raise ValueError(f"alpha_NHT has H={h} heads, which does not divide the token width C={c}")
    s_NHC = torch.einsum("nht,ntc->nhc", alpha_NHT.to(torch.float64), x_NTC.to(torch.float64))
    wv_HdC = v_weight.to(torch.float64).reshape(h, c // h, c)
    z_NHd = torch.einsum("nhc,hdc->nhd", s_NHC, wv_HdC) + v_bias.to(torch.float64).reshape(h, c // h)
    return z_NHd.reshape(n, c) @ c_weight.to(torch.float64).T + c_bias.to(torch.float64)
