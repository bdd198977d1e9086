"""Training-free semantic segmentation from the neuron x attention-head decomposition.

methods.md Sec. 5 (Segmentation; neuron-attention paper Sec. 5.1, Eq. 6, Tables 3-4). For class c
with text embedding z_c and spatial token t (feature-map location), with a_t[n] the raw
activation of neuron n (x_t minus the positional embedding) and

    M_c^h[t] = < alpha_{h,t} W_c^h W_v^h x_t , z_c >   (per-head, per-token similarity map),

and the top-k pairs (n_i, h_i) of class c by cos(u_{n,h}, z_c), the class logits are

- ``pairs`` (Eq. 6, "both multiplied"):  L_c[t] = sum_i a_t[n_i] M_c^{h_i}[t];
- ``neurons`` ("neuron maps only"):      L_c[t] = sum_i a_t[n_i];
- ``heads`` ("head maps only"):          L_c[t] = sum_i M_c^{h_i}[t], i.e. each head's map weighted
  by the number of the class's top pairs through it (with all H x C pairs selected this is C
  times the paper's aggregated map sum_h M_c^h);
- ``maskclip`` (MaskCLIP baseline): cos(W_c (W_v a_t + b_v) + b_c, z_c), the value-projected dense
  features without query-key attention and without positional embedding.

Maps are upsampled bilinearly (align_corners False, as mmseg) to the label size and argmaxed over
classes; mIoU comes from one confusion matrix accumulated over the dataset
(:mod:`clipmech.decomposition.miou`).

Two protocols: Shapes (ground truth from the instance masks and the object table: background +
6 colours, background + 5 shapes), and PASCAL Context-59 (a dataset of kind ``pascal_context``, its
images and label masks read through its manifest: :func:`clipmech.data.natural.list_pascal_context`)
with the reference slide inference (see :func:`slide_windows`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from clipmech.decomposition import pool
from clipmech.decomposition.miou import confusion_matrix

METHODS = ("pairs", "heads", "neurons", "maskclip")


def pair_weights(heads_Kk: np.ndarray, neurons_Kk: np.ndarray, n_heads: int, n_neurons: int) -> np.ndarray:
    """Selection counts W[c, h, n] of the top-k pairs of each class (a pair counts once per class).

    Parameters
    ----------
    heads_Kk, neurons_Kk : ndarray of int, shape (K, k)
        The pairs of each class (:func:`clipmech.decomposition.text.top_pairs_by_text`).
    n_heads, n_neurons : int
        H and C.

    Returns
    -------
    ndarray, shape (K, H, C), float64
    """
    w_KHC = np.zeros((heads_Kk.shape[0], n_heads, n_neurons))
    for c in range(heads_Kk.shape[0]):
        np.add.at(w_KHC[c], (heads_Kk[c], neurons_Kk[c]), 1.0)
    return w_KHC


def token_logits(
    x_NTC: np.ndarray,
    alpha_NHT: np.ndarray,
    weights: pool.AttnPoolWeights,
    u_HCE: np.ndarray,
    bias_E: np.ndarray,
    z_KE: np.ndarray,
    w_KHC: np.ndarray,
    method: str,
) -> np.ndarray:
    """Class logits at the spatial tokens for one method (see the module docstring).

    Parameters
    ----------
    x_NTC : ndarray, shape (N, T, C)
        Tokens, positional embedding included (token 0 = mean token).
    alpha_NHT : ndarray, shape (N, H, T)
    weights : AttnPoolWeights
    u_HCE : ndarray, shape (H, C, E)
    bias_E : ndarray, shape (E,)
    z_KE : ndarray, shape (K, E)
        Class text embeddings (normalised here).
    w_KHC : ndarray, shape (K, H, C)
        Top-k pair selection (:func:`pair_weights`); used by every method but ``maskclip``.
    method : {"pairs", "heads", "neurons", "maskclip"}

    Returns
    -------
    ndarray, shape (N, K, T - 1)
        Logits per class at spatial tokens 1..T-1 (row-major feature-map order).

    Raises
    ------
    ValueError
        For an unknown method.
    """
    if method not in METHODS:
        raise ValueError(f"unknown segmentation method {method!r}; valid methods are: {', '.join(METHODS)}")
    z_KE = z_KE / np.linalg.norm(z_KE, axis=1, keepdims=True)
    a_NSC = (x_NTC - weights.positional_embedding[None])[:, 1:]  # raw activations, spatial tokens
    if method == "maskclip":
        dense_NSE = a_NSC @ u_HCE.sum(axis=0) + bias_E  # W_c (W_v a + b_v) + b_c
        dense_NSE /= np.linalg.norm(dense_NSE, axis=-1, keepdims=True)
        return np.swapaxes(dense_NSE @ z_KE.T, 1, 2)
    if method == "neurons":
        return np.einsum("nsc,khc->nks", a_NSC, w_KHC, optimize=True)
    m_NHSK = pool.token_head_maps(x_NTC, alpha_NHT, u_HCE, z_KE)[:, :, 1:]  # M_c^h[t]
    if method == "heads":
        return np.einsum("kh,nhsk->nks", w_KHC.sum(axis=2), m_NHSK, optimize=True)
    selected_NKHS = np.einsum("nsc,khc->nkhs", a_NSC, w_KHC, optimize=True)  # sum_i over pairs of head h
    return np.einsum("nkhs,nhsk->nks", selected_NKHS, m_NHSK, optimize=True)


def upsample(logits_NKS: np.ndarray, grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Token logits to pixel logits, bilinear with align_corners False (mmseg's resize).

    Parameters
    ----------
    logits_NKS : ndarray, shape (N, K, rows * cols)
        Per-class logits at the spatial tokens, row-major.
    grid : tuple of int
        (rows, cols).
    size : tuple of int
        (height, width) of the output.

    Returns
    -------
    ndarray, shape (N, K, height, width)
    """
    n, k, _ = logits_NKS.shape
    maps = torch.from_numpy(np.ascontiguousarray(logits_NKS).reshape(n, k, *grid))
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False).numpy()


def predict_with_background(logits_NKHW: np.ndarray, threshold: float) -> np.ndarray:
    """Per-pixel class with a background decision: 0 = background, k + 1 = class k.

    The logits of each image are min-max normalised jointly over classes and pixels (one affine
    map per image, so the argmax is unchanged); pixels whose highest normalised logit is below
    ``threshold`` are background (the CAM-style background threshold; the methods' logits have
    different scales, so the threshold acts on the normalised maps).

    Returns
    -------
    ndarray of int64, shape (N, H, W)
    """
    low = logits_NKHW.min(axis=(1, 2, 3), keepdims=True)
    span = logits_NKHW.max(axis=(1, 2, 3), keepdims=True) - low
    normalised = (logits_NKHW - low) / np.where(span > 0, span, 1.0)
    pred = normalised.argmax(axis=1) + 1
    pred[normalised.max(axis=1) < threshold] = 0
    return pred


def shapes_ground_truth(
    masks_NHW: np.ndarray, objects: pd.DataFrame, images: np.ndarray, attribute: str, classes: Sequence[str]
) -> np.ndarray:
    """Semantic labels of Shapes images from the instance masks: 0 background, k + 1 class k.

    Parameters
    ----------
    masks_NHW : ndarray of uint8
        Instance masks of the whole dataset (object id per pixel, 0 = background).
    objects : pandas.DataFrame
        The object table (image_id, object_id and the attribute column).
    images : ndarray of int
        Images to label.
    attribute : {"colour", "shape"}
        Column of the object table giving the class.
    classes : sequence of str
        Class names in label order.

    Returns
    -------
    ndarray of int64, shape (len(images), H, W)
    """
    index = {name: k + 1 for k, name in enumerate(classes)}
    out = np.zeros((len(images), *masks_NHW.shape[1:]), dtype=np.int64)
    for i, image in enumerate(images):
        lookup = np.zeros(256, dtype=np.int64)
        rows = objects[objects["image_id"] == image]
        lookup[rows["object_id"].to_numpy()] = rows[attribute].map(index).to_numpy()
        out[i] = lookup[np.asarray(masks_NHW[image])]
    return out


def shapes_confusions(
    pred_NHW: np.ndarray, logits_NKHW: np.ndarray, gt_NHW: np.ndarray, ignore_index: int = 255
) -> dict[str, np.ndarray]:
    """Confusion matrices of one batch: with background scored, and on object pixels only.

    ``with_background`` scores the thresholded prediction on all pixels over the K + 1 labels;
    ``objects_only`` ignores background pixels (like mmseg's ``reduce_zero_label``) and scores the
    argmax of the logits over the K object classes, which needs no background threshold.

    Parameters
    ----------
    pred_NHW : ndarray of int
        Predictions with background (:func:`predict_with_background`).
    logits_NKHW : ndarray, shape (N, K, H, W)
        The pixel logits ``pred_NHW`` was thresholded from (:func:`upsample`).
    gt_NHW : ndarray of int
        0 background, k + 1 class k.
    ignore_index : int
        Label of pixels left out of both matrices.

    Returns
    -------
    dict
        ``with_background`` (K+1, K+1) and ``objects_only`` (K+1, K+1; background row and column
        empty), int64.
    """
    n_classes = logits_NKHW.shape[1]
    objects_gt = np.where(gt_NHW == 0, ignore_index, gt_NHW)
    return {
        "with_background": confusion_matrix(pred_NHW, gt_NHW, n_classes + 1, ignore_index),
        "objects_only": confusion_matrix(logits_NKHW.argmax(axis=1) + 1, objects_gt, n_classes + 1, ignore_index),
    }


# --------------------------------------------------------------------------------------------
# PASCAL Context-59 (mmseg test protocol)
# --------------------------------------------------------------------------------------------


def rescale_size(height: int, width: int, scale: tuple[int, int]) -> tuple[int, int]:
    """Size after mmcv's keep-ratio ``Resize(scale=(long, short))``: the largest size that fits.

    factor = min(long / max(h, w), short / min(h, w)); new side = int(side * factor + 0.5).

    Parameters
    ----------
    height, width : int
    scale : tuple of int
        The two bounds in either order (mmseg writes (2048, 384)).

    Returns
    -------
    tuple of int
        (new height, new width).
    """
    long_side, short_side = max(scale), min(scale)
    factor = min(long_side / max(height, width), short_side / min(height, width))
    return int(height * factor + 0.5), int(width * factor + 0.5)


def slide_windows(height: int, width: int, crop: int, stride: int) -> list[tuple[int, int, int, int]]:
    """Crop boxes (y1, y2, x1, x2) of mmseg's ``slide_inference`` for an image of this size.

    Grids of ceil((side - crop) / stride) + 1 windows per axis; the last windows are shifted back
    to end at the border; an image smaller than the crop gives one window covering it.

    Raises
    ------
    ValueError
        If ``crop`` or ``stride`` is not positive.
    """
    if crop < 1 or stride < 1:
        raise ValueError(f"crop and stride must be positive, got crop={crop}, stride={stride}")
    rows = max(height - crop + stride - 1, 0) // stride + 1
    cols = max(width - crop + stride - 1, 0) // stride + 1
    boxes = []
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * stride + crop, height), min(c * stride + crop, width)
            boxes.append((max(y2 - crop, 0), y2, max(x2 - crop, 0), x2))
    return boxes


def slide_logits(
    image_3HW: torch.Tensor, crop: int, stride: int, crop_logits: Callable[[torch.Tensor], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Average the logits of overlapping crops over the image (mmseg ``slide_inference``).

    Parameters
    ----------
    image_3HW : torch.Tensor
        Normalised image at the inference size.
    crop, stride : int
    crop_logits : callable
        Maps a crop (3, crop, crop) to logits {name: (K, crop, crop)} (e.g. one entry per
        method). A window that the image does not fill (an image smaller than the crop) is
        padded with zeros at the bottom and right, as mmseg pads, and the padding's logits are
        dropped.

    Returns
    -------
    dict of str to ndarray, shape (K, H, W), float64
    """
    _, height, width = image_3HW.shape
    totals: dict[str, np.ndarray] = {}
    count = np.zeros((height, width))
    for y1, y2, x1, x2 in slide_windows(height, width, crop, stride):
        patch = image_3HW[:, y1:y2, x1:x2]
        padded = F.pad(patch, (0, crop - patch.shape[2], 0, crop - patch.shape[1]))
        for name, logits_KSS in crop_logits(padded).items():
            if name not in totals:
                totals[name] = np.zeros((logits_KSS.shape[0], height, width))
            totals[name][:, y1:y2, x1:x2] += logits_KSS[:, : y2 - y1, : x2 - x1]
        count[y1:y2, x1:x2] += 1
    return {name: total / count for name, total in totals.items()}


def read_label_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """Read a PASCAL Context label mask (the manifest's ``mask``; 0..59, 0 = background).

    Parameters
    ----------
    path : pathlib.Path
    shape : tuple of int
        (height, width) of the image it labels.

    Returns
    -------
    ndarray of uint8, shape (H, W)

    Raises
    ------
    ValueError
        If the mask's size differs from the image's (the message names the file and both shapes).
    """
    with Image.open(path) as image:
        label = np.asarray(image, dtype=np.uint8)
    if label.shape != tuple(shape):
        raise ValueError(f"label mask {path} has shape {label.shape} but its image has {tuple(shape)}")
    return label


#: The Shapes attributes segmented (position is a location, not a region class).
SEGMENTED_TASKS = ("colour", "shape")
