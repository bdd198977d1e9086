"""The attention pool's tokens, attention and output, captured through the hook sites (methods.md Secs. 5-6).

The neuron x head decomposition (:mod:`clipmech.decomposition.pool`) needs, per image, the tokens x
(N, T, C) and the query's attention alpha (N, H, T) of a CLIP-ResNet's ``AttentionPool2d``, and its
output y (N, E) to check them against. They are the sites ``visual.attnpool.hook_x``, ``hook_alpha``
and ``hook_out`` of :func:`clipmech.hooks.sites.hooked`; :func:`capture_attnpool` runs the image tower
once with them captured and recomputes y from x and alpha as a self-check.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from clipmech.hooks.pool_forward import attnpool_output_from_attention
from clipmech.hooks.sites import hooked
from clipmech.models.towers import tower

#: The sites :func:`capture_attnpool` captures: tokens, attention of the query, output.
ATTNPOOL_SITES = ("visual.attnpool.hook_x", "visual.attnpool.hook_alpha", "visual.attnpool.hook_out")

#: Default tolerance of the capture self-check (relative error of the recomputed output), by
#: the dtype the attention pool runs in.
VERIFY_RTOL = {
    torch.float64: 1e-10,
    torch.float32: 1e-4,
    torch.float16: 3e-2,
    torch.bfloat16: 3e-2,
}


@dataclass(frozen=True)
class AttnPoolCapture:
    """What one forward through ``AttentionPool2d`` leaves behind (methods.md Sec. 5).

    Attributes
    ----------
    x_NTC : torch.Tensor, shape (N, T, C), dtype of the model
        Attention-pool tokens, token 0 = mean token, positional embedding included.
    alpha_NHT : torch.Tensor, shape (N, H, T), float32 or float64
        Attention of the query (token 0) to every token, per head; rows sum to 1.
    y_NE : torch.Tensor, shape (N, E), dtype of the model
        The module's output (the image embedding before normalisation).
    """

    x_NTC: torch.Tensor
    alpha_NHT: torch.Tensor
    y_NE: torch.Tensor


def check_capture(attnpool: nn.Module, capture: AttnPoolCapture, rtol: float | None = None) -> None:
    """Recompute the output from the captured x and alpha and compare it with the module's.

    Parameters
    ----------
    attnpool : torch.nn.Module
        ``model.visual.attnpool``, an open_clip ``AttentionPool2d``.
    capture : AttnPoolCapture
    rtol : float, optional
        Largest allowed ``max_n ||y_hat_n - y_n|| / ||y_n||``; default by the output's dtype from
        :data:`VERIFY_RTOL` (1e-10 float64, 1e-4 float32, 3e-2 float16/bfloat16).

    Raises
    ------
    RuntimeError
        If the relative error exceeds ``rtol`` (the module no longer matches ``AttentionPool2d``).
    """
    with torch.no_grad():
        y_hat_NE = attnpool_output_from_attention(
            capture.x_NTC,
            capture.alpha_NHT,
            attnpool.v_proj.weight,
            attnpool.v_proj.bias,
            attnpool.c_proj.weight,
            attnpool.c_proj.bias,
        )
        y64_NE = capture.y_NE.to(torch.float64)
        err = ((y_hat_NE - y64_NE).norm(dim=-1) / y64_NE.norm(dim=-1).clamp_min(1e-300)).max().item()
    tol = VERIFY_RTOL.get(capture.y_NE.dtype, 1e-4) if rtol is None else rtol
    if not err <= tol:
        raise RuntimeError(
            f"attnpool capture check failed: output recomputed from the captured tokens and attention differs "
            f"from the module's output by relative error {err:.3g} > rtol={tol:.3g} (dtype {capture.y_NE.dtype}); "
            "the module no longer matches open_clip's AttentionPool2d"
        )


def capture_attnpool(
    model: nn.Module, images_NCHW: torch.Tensor, *, verify: bool = True, rtol: float | None = None
) -> AttnPoolCapture:
    """Run the image tower on a batch and return x, alpha and y of its attention pool.

    Runs ``model.visual(images)`` under ``torch.inference_mode()`` with :data:`ATTNPOOL_SITES`
    captured (methods.md Sec. 5; paper Sec. 3.1-3.2); the hooks are removed also when it raises.

    Parameters
    ----------
    model : torch.nn.Module
        An open_clip CLIP model with a ModifiedResNet image tower (``model.visual.attnpool``).
    images_NCHW : torch.Tensor, shape (N, 3, S, S)
        Preprocessed images on the model's device, in the model's dtype.
    verify : bool
        Check the output recomputed from x and alpha against the module's (:func:`check_capture`).
    rtol : float, optional
        As in :func:`check_capture`.

    Returns
    -------
    AttnPoolCapture
        x (N, T, C), alpha (N, H, T), y (N, E), detached, on the model's device; y equals
        ``model.visual(images)``.

    Raises
    ------
    TypeError
        If the image tower is unsupported or has no attention pool (e.g. a ViT).
    RuntimeError
        If the capture check fails (see :func:`check_capture`).
    """
    info = tower(model, "visual")
    if not info.has_attnpool:
        raise TypeError(
            f"{type(model).__name__} has a {info.kind} image tower without visual.attnpool; the decomposition "
            "needs an open_clip ModifiedResNet image tower (RN50, RN101, RN50x4, RN50x16, RN50x64)"
        )
    with hooked(model, capture=ATTNPOOL_SITES) as cache, torch.inference_mode():
        model.visual(images_NCHW)
    capture = AttnPoolCapture(*(cache[site] for site in ATTNPOOL_SITES))
    if verify:
        check_capture(model.visual.attnpool, capture, rtol)
    return capture
