"""Grad-CAM for text prompts on open_clip models, and the energy pointing game.

Implements methods.md Sec. 4 (shapes paper, Sec. 3.3 "Visual grounding with CLIP and
gradient-based localization"; Grad-CAM of Selvaraju et al.): for an image and prompt t,

    S_t      = cos(image embedding, text embedding of t)            (default), or
               softmax over the prompt set of logit_scale * cos      (``score="softmax"``)
    alpha_c  = 1 / (h w) sum_{i,j} dS_t / dA^c_{ij}                  (shapes paper, Sec. 3.3.2)
    map      = ReLU(sum_c alpha_c A^c), upsampled bilinearly to the image size,

where A (h x w x C) is the activation of a target layer at the spatial positions: the patch tokens
of a vision transformer (class token dropped) or the feature map of a ModifiedResNet stage.

Target layers are hook sites of the vision tower (:mod:`clipmech.hooks.sites`, methods.md Sec. 6):

* transformer towers (open_clip ViT, a timm trunk): ``visual.blocks.<l>.<hook>`` with hook one of
  ``hook_resid_pre``, ``hook_attn_out``, ``hook_resid_mid``, ``mlp.hook_post``, ``hook_mlp_out`` and
  ``hook_resid_post``; the layer may be negative (``-1`` = the last block). A is the patch tokens
  (prefix tokens dropped) in raster order. Default ``visual.blocks.<L-1>.hook_resid_pre``, the
  residual stream entering the last block. The paper's choice, the last block's MLP output
  (``visual.blocks.-1.hook_mlp_out``), is a layer whose patch tokens never reach a class-token
  readout, so its gradients are exactly zero; :func:`gradcam` raises a ValueError naming the site
  when every gradient is zero.
* ModifiedResNet: ``visual.blocks.<l>.hook_resid_post``, the output (C, h, w) of stage ``layer<l+1>``.
  Default ``visual.blocks.3.hook_resid_post`` (``layer4``), the last convolutional feature map, which
  feeds the attention pool.

A is captured by an edit of the site (:func:`clipmech.hooks.sites.hooked`) that substitutes a
detached copy requiring grad, so gradients flow from S_t back to A only; the hooks live in a context
manager (:func:`capture_activation`) that removes them in ``finally``.

The energy pointing game (ours, methods.md Sec. 4) splits a map's energy (its sum) over the pixels
of the prompted object(s), the distractor objects, other objects and the background of an instance
mask.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from clipmech.analyses import binding
from clipmech.hooks.sites import canonical_name, hooked, resolve
from clipmech.models.towers import Tower, tower

#: Hooks of a transformer block whose tensor is (N, T, channels), so A has a patch grid.
VIT_TARGET_HOOKS = (
    "hook_resid_pre",
    "hook_attn_out",
    "hook_resid_mid",
    "mlp.hook_post",
    "hook_mlp_out",
    "hook_resid_post",
)
SCORES = ("cosine", "softmax")


@dataclass(frozen=True)
class TargetLayer:
    """A resolved Grad-CAM target layer.

    Attributes
    ----------
    name : str
        Canonical site name, negative layer resolved (``"visual.blocks.11.hook_resid_pre"``).
    tower : Tower
        The vision tower (:func:`clipmech.models.towers.tower`): its grid and prefix tokens lay out A.
    """

    name: str
    tower: Tower


def default_target(model: nn.Module) -> str:
    """The default target site: ``visual.blocks.<L-1>.hook_resid_pre`` (transformer towers) or
    ``visual.blocks.3.hook_resid_post`` (``layer4`` of a ModifiedResNet).

    Raises
    ------
    TypeError
        If the vision tower's kind is not supported (:func:`clipmech.models.towers.tower`).
    """
    info = tower(model, "visual")
    if info.kind == "resnet":
        return f"visual.blocks.{info.n_layers - 1}.hook_resid_post"
    return f"visual.blocks.{info.n_layers - 1}.hook_resid_pre"


def _target_sites(info: Tower) -> str:
    if info.kind == "resnet":
        return f"visual.blocks.<l>.hook_resid_post for l in 0..{info.n_layers - 1}"
    return (
        f"visual.blocks.<l>.<hook> for l in -{info.n_layers}..{info.n_layers - 1} and hook in "
        f"{', '.join(VIT_TARGET_HOOKS)}"
    )


def resolve_target(model: nn.Module, target: str | None = None) -> TargetLayer:
    """Resolve a target site (see the module docstring) on an open_clip CLIP model.

    Parameters
    ----------
    model : open_clip.CLIP or open_clip.CustomTextCLIP
        A model whose vision tower is an open_clip ``VisionTransformer``, a timm ViT trunk or a
        ``ModifiedResNet``.
    target : str, optional
        A vision-tower site with a patch grid (module docstring); None picks :func:`default_target`.

    Returns
    -------
    TargetLayer

    Raises
    ------
    ValueError
        If the name is not a site of the model, or a site without a patch grid (text tower, attention
        pool, per-head sites); the message lists the valid targets. Also for a layer out of range.
    TypeError
        If the vision tower's kind is not supported.
    """
    info = tower(model, "visual")
    target = default_target(model) if target is None else target
    try:
        name = canonical_name(model, target)
    except ValueError as error:
        raise ValueError(f"Grad-CAM target {target!r}: {error}\nvalid targets: {_target_sites(info)}") from None
    site = resolve(model, name)
    allowed = ("hook_resid_post",) if info.kind == "resnet" else VIT_TARGET_HOOKS
    if site.tower != "visual" or site.layer is None or site.hook not in allowed:
        raise ValueError(
            f"Grad-CAM target {target!r} is not a vision-tower site with a patch grid; valid targets: "
            f"{_target_sites(info)} (e.g. {default_target(model)!r})"
        )
    return TargetLayer(name=name, tower=info)


class _Capture:
    """Holds the activation a hook captured during one forward pass."""

    def __init__(self, name: str):
        self.name = name
        self.activation: torch.Tensor | None = None

    def leaf(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.activation is not None:
            raise RuntimeError(f"target layer {self.name!r} ran more than once in one forward pass")
        self.activation = tensor.detach().requires_grad_(True)
        return self.activation


@contextmanager
def capture_activation(model: nn.Module, target: TargetLayer) -> Iterator[_Capture]:
    """Capture A at ``target`` as a leaf tensor that requires grad, for one forward pass.

    An edit of the site (:func:`clipmech.hooks.sites.hooked`) substitutes a detached copy of the
    activation (same values) so that ``torch.autograd.grad(score, capture.activation)`` gives dS/dA
    whether or not the model's parameters require grad. The hooks are removed in ``finally``, also
    when the body raises.

    Yields
    ------
    capture
        Object whose ``activation`` is None until the forward pass reaches the site, then the
        captured tensor: (N, T, channels) for a transformer tower, (N, C, h, w) for a ResNet.

    Raises
    ------
    RuntimeError
        If the site runs twice in the body (a capture holds one forward pass), or (from the forward)
        its tensor is not batch-first with the tower's token count.
    """
    capture = _Capture(target.name)
    with hooked(model, edit={target.name: capture.leaf}):
        yield capture


def _spatial(activation: torch.Tensor, target: TargetLayer, n_images: int) -> torch.Tensor:
    """A (or its gradient) as (N, h, w, C): transformer patch tokens in raster order, or the ResNet map."""
    info = target.tower
    if info.kind != "resnet":
        grid_h, grid_w = info.grid
        expected = (n_images, info.n_tokens)
        if activation.ndim != 3 or tuple(activation.shape[:2]) != expected:
            raise RuntimeError(
                f"target layer {target.name!r}: expected batch-first (N, T, D) activations with "
                f"(N, T) = {expected} ({info.n_prefix_tokens} prefix tokens + {grid_h} x {grid_w} patches), got "
                f"{tuple(activation.shape)}; token-first layouts (open_clip < 3) are not supported"
            )
        return activation[:, info.n_prefix_tokens :].reshape(n_images, grid_h, grid_w, activation.shape[2])
    if activation.ndim != 4 or activation.shape[0] != n_images:
        raise RuntimeError(
            f"target layer {target.name!r}: expected (N, C, h, w) with N = {n_images}, got {tuple(activation.shape)}"
        )
    return activation.permute(0, 2, 3, 1)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    """Detached CPU copy; float64 stays float64, other float types become float32."""
    tensor = tensor.detach().cpu()
    return tensor.numpy() if tensor.dtype == torch.float64 else tensor.float().numpy()


@dataclass(frozen=True)
class GradCamResult:
    """Grad-CAM output for N images and P prompts (numpy; float64 for a float64 model, else float32).

    Attributes
    ----------
    maps_NPHW : (N, P, H, W) maps upsampled bilinearly to the input image size (non-negative,
        in units of S_t: sum_c alpha_c A^c).
    cam_NPhw : (N, P, h, w) maps at the layer's resolution.
    alpha_NPC : (N, P, C) channel weights alpha_c.
    scores_NP : (N, P) S_t of every image and prompt (cosine, or softmax probability).
    layer : canonical target-layer name.
    score : ``cosine`` or ``softmax``.
    """

    maps_NPHW: np.ndarray
    cam_NPhw: np.ndarray
    alpha_NPC: np.ndarray
    scores_NP: np.ndarray
    layer: str
    score: str


def gradcam(
    model: nn.Module,
    images_NCHW: torch.Tensor,
    text_emb_PE: torch.Tensor | np.ndarray,
    *,
    target: str | None = None,
    score: str = "cosine",
    logit_scale: float | None = None,
    prompts: Sequence[int] | None = None,
) -> GradCamResult:
    """Grad-CAM maps of text prompts on images (methods.md Sec. 4; shapes paper Sec. 3.3).

    Parameters
    ----------
    model : open_clip.CLIP
        In eval mode (BatchNorm statistics must not mix images), on the images' device; not
        called under ``torch.inference_mode``. Its parameters are not modified.
    images_NCHW : torch.Tensor, float, (N, 3, H, W)
        Preprocessed images (the model's eval transform).
    text_emb_PE : torch.Tensor or numpy.ndarray, (P, E)
        Text embeddings of the prompt set (normalised here).
    target : str, optional
        Target site (module docstring); default :func:`default_target`, the residual stream entering the
        last block (transformer towers) or the output of ``layer4`` (ResNet).
    score : {"cosine", "softmax"}, default "cosine"
        S_t: the cosine similarity, or the softmax over the P prompts of ``logit_scale`` x cosine.
    logit_scale : float, optional
        Multiplier of the cosine before the softmax (inverse temperature); None uses the model's
        learned ``logit_scale.exp()``.
    prompts : sequence of int, optional
        Indices of the prompts to map (default all P); the softmax always runs over all P.

    Returns
    -------
    GradCamResult
        Maps for the selected prompts, in their order.

    Raises
    ------
    ValueError
        If the vision tower is in training mode, inference mode is on, ``score`` is unknown, shapes
        disagree, ``prompts`` is empty or out of range, the target layer is unknown
        (:func:`resolve_target`), or every gradient at the target layer's spatial positions is
        exactly zero (the message names the layer and suggests the default).
    RuntimeError
        If the site's activations do not have the expected layout (batch-first (N, T, D) with the
        tower's prefix and patch tokens, (N, C, h, w) for a ResNet) or the site never ran.
    """
    if any(module.training for module in model.visual.modules()):
        raise ValueError("the vision tower is in training mode; call model.eval() before Grad-CAM")
    if torch.is_inference_mode_enabled():
        raise ValueError("Grad-CAM needs autograd; do not call it under torch.inference_mode()")
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; allowed: {', '.join(SCORES)}")
    if images_NCHW.ndim != 4:
        raise ValueError(f"images_NCHW must be (N, 3, H, W), got shape {tuple(images_NCHW.shape)}")
    text_PE = torch.as_tensor(text_emb_PE)
    if text_PE.ndim != 2:
        raise ValueError(f"text_emb_PE must be (P, E), got shape {tuple(text_PE.shape)}")
    n_prompts = text_PE.shape[0]
    prompts = list(range(n_prompts)) if prompts is None else [int(t) for t in prompts]
    bad = [t for t in prompts if not 0 <= t < n_prompts]
    if not prompts:
        raise ValueError("prompts must select at least one prompt")
    if bad:
        raise ValueError(f"prompt indices {bad} out of range for {n_prompts} prompts")
    layer = resolve_target(model, target)
    n_images = images_NCHW.shape[0]

    with torch.enable_grad(), capture_activation(model, layer) as capture:
        image_NE = model.encode_image(images_NCHW, normalize=True)
        if image_NE.shape[1] != text_PE.shape[1]:
            raise ValueError(
                f"text embeddings have width {text_PE.shape[1]}, the model's image embeddings {image_NE.shape[1]}"
            )
        text_PE = F.normalize(text_PE.to(device=image_NE.device, dtype=image_NE.dtype), dim=-1)
        cosine_NP = image_NE @ text_PE.T
        if score == "cosine":
            scores_NP = cosine_NP
        else:
            scale = model.logit_scale.exp() if logit_scale is None else logit_scale
            scores_NP = torch.softmax(scale * cosine_NP, dim=1)
        if capture.activation is None:
            raise RuntimeError(f"target layer {layer.name!r} did not run during encode_image")
        a_NhwC = _spatial(capture.activation, layer, n_images).detach()
        alphas, cams, any_gradient = [], [], False
        for t in prompts:
            (grad,) = torch.autograd.grad(scores_NP[:, t].sum(), capture.activation, retain_graph=True)
            grad_NhwC = _spatial(grad, layer, n_images)
            any_gradient = any_gradient or bool(torch.any(grad_NhwC != 0))
            alphas.append(grad_NhwC.mean(dim=(1, 2)))  # [N, C]
            cams.append(torch.einsum("nhwc,nc->nhw", a_NhwC, alphas[-1]))

    if not any_gradient:
        raise ValueError(
            f"every gradient of the scores at the spatial positions of target layer {layer.name!r} is exactly "
            "zero: this layer does not reach the image embedding there (e.g. the last block's MLP output "
            f"when the output is read from the class token); use the default {default_target(model)!r} or "
            "an earlier block's site, e.g. 'visual.blocks.-2.hook_mlp_out' for a ViT"
        )
    alpha_NPC = torch.stack(alphas, dim=1)
    cam_NPhw = F.relu(torch.stack(cams, dim=1))
    maps_NPHW = F.interpolate(cam_NPhw, size=tuple(images_NCHW.shape[-2:]), mode="bilinear", align_corners=False)
    return GradCamResult(
        maps_NPHW=_numpy(maps_NPHW),
        cam_NPhw=_numpy(cam_NPhw),
        alpha_NPC=_numpy(alpha_NPC),
        scores_NP=_numpy(scores_NP[:, prompts]),
        layer=layer.name,
        score=score,
    )


def energy_pointing_game(
    map_HW: np.ndarray,
    mask_HW: np.ndarray,
    target_ids: Sequence[int],
    distractor_ids: Sequence[int] = (),
) -> dict[str, float]:
    """Fractions of a saliency map's energy on the prompted object, distractors and background.

    The quantitative binding check of methods.md Sec. 4 (ours; an instance-mask version of the
    energy-based pointing game of Score-CAM, Wang et al. 2020): energy = sum of map values over a
    set of pixels, divided by the map's total.

    Parameters
    ----------
    map_HW : numpy.ndarray, float, (H, W)
        Non-negative map at the mask's resolution (e.g. ``GradCamResult.maps_NPHW[n, p]``).
    mask_HW : numpy.ndarray, integer, (H, W)
        Instance mask: object id per pixel, 0 = background (the Shapes dataset's uint8 masks).
    target_ids : sequence of int
        Ids of the object(s) the prompt names (at least one; each must occur in the mask).
    distractor_ids : sequence of int, default ()
        Ids of the distractor objects (each must occur in the mask; disjoint from the targets).

    Returns
    -------
    dict
        ``target``, ``distractor``, ``other`` (objects in neither list) and ``background``
        fractions, summing to 1 (all NaN when the map's total is 0), and ``total_energy`` (the
        map's sum, in the map's units).

    Raises
    ------
    ValueError
        If the shapes differ or are not 2-D, the map is negative or non-finite, ``target_ids`` is
        empty, an id is not positive or absent from the mask (the ids are named), or an id is both
        target and distractor.
    """
    map_HW = np.asarray(map_HW, dtype=np.float64)
    mask_HW = np.asarray(mask_HW)
    if map_HW.ndim != 2 or map_HW.shape != mask_HW.shape:
        raise ValueError(f"map_HW and mask_HW must be 2-D of one shape, got {map_HW.shape} and {mask_HW.shape}")
    if not np.all(np.isfinite(map_HW)) or np.any(map_HW < 0):
        raise ValueError("map_HW must be finite and non-negative")
    targets, distractors = {int(i) for i in target_ids}, {int(i) for i in distractor_ids}
    if not targets:
        raise ValueError("target_ids must name at least one object")
    if targets & distractors:
        raise ValueError(f"object ids {sorted(targets & distractors)} are both target and distractor")
    present = set(np.unique(mask_HW).tolist()) - {0}
    missing = sorted((targets | distractors) - present)
    if missing:
        raise ValueError(f"object ids {missing} do not occur in the mask (ids present: {sorted(present)})")
    total = float(map_HW.sum())
    in_target_HW = np.isin(mask_HW, list(targets))
    in_distractor_HW = np.isin(mask_HW, list(distractors))
    background_HW = mask_HW == 0
    other_HW = ~(in_target_HW | in_distractor_HW | background_HW)
    fractions = {
        name: float(map_HW[region].sum()) / total if total > 0 else float("nan")
        for name, region in (
            ("target", in_target_HW),
            ("distractor", in_distractor_HW),
            ("other", other_HW),
            ("background", background_HW),
        )
    }
    return {**fractions, "total_energy": total}


ENERGY_COLUMNS = ("target", "lure", "other", "background")


def pointing_row(map_HW: np.ndarray, mask_HW: np.ndarray, target: int, lure: int) -> dict:
    """Energy pointing game of one map (:func:`energy_pointing_game`).

    Parameters
    ----------
    map_HW : numpy.ndarray, float, (H, W)
        Non-negative Grad-CAM map at the mask's resolution.
    mask_HW : numpy.ndarray, uint8, (H, W)
        Instance mask (object id per pixel, 0 = background).
    target, lure : int
        Object ids of the prompt's target (the object with the prompt's shape) and of the lure
        (the object whose colour the image's swapped prompt names). The lure is the same object for
        all three prompt types of an image, so its share compares across them.

    Returns
    -------
    dict
        ``target``, ``lure``, ``other`` (the remaining objects) and ``background`` energy
        fractions, ``total_energy``, and ``hit``: 1.0 when the target holds more energy than every
        other object, 0.0 otherwise, NaN for an all-zero map.
    """
    game = energy_pointing_game(map_HW, mask_HW, [target], [lure])
    row = {
        "target": game["target"],
        "lure": game["distractor"],
        "other": game["other"],
        "background": game["background"],
    }
    row["total_energy"] = game["total_energy"]
    others = [int(i) for i in np.unique(mask_HW) if i not in (0, target)]
    if game["total_energy"] > 0:
        best_other = max((energy_pointing_game(map_HW, mask_HW, [i])["target"] for i in others), default=0.0)
        row["hit"] = float(row["target"] > best_other)
    else:
        row["hit"] = float("nan")
    return row


def summarise(pointing: pd.DataFrame) -> pd.DataFrame:
    """Mean energy fractions, hit rate and score per prompt type (``binding.GRADCAM_PROMPT_TYPES``
    order); NaN entries (all-zero maps) are left out of the means and counted in ``n_zero_maps``."""
    rows = []
    for prompt_type in binding.GRADCAM_PROMPT_TYPES:
        group = pointing[pointing["prompt_type"] == prompt_type]
        rows.append(
            {
                "prompt_type": prompt_type,
                "n_prompts": len(group),
                "n_zero_maps": int(group["hit"].isna().sum()),
                "score": group["score"].mean(),
                **{column: group[column].mean() for column in ENERGY_COLUMNS},
                "hit_rate": group["hit"].mean(),
            }
        )
    return pd.DataFrame(rows)
