"""The baselines of MiCLIP, on the same units (methods.md Sec. 9; MiCLIP App. D.1), and the ground truth.

- **Act-Values**: the score of unit u for concept c is u's mean image-level activation over the images
  that contain c (:func:`act_values`); localisation takes the units of largest mean, description the
  concepts whose images give the largest mean.
- **CLIP-Dissect** (Oikarinen & Weng 2023), soft-WPMI (:func:`soft_wpmi`): with P = softmax over
  concepts of a x S, S the reference CLIP's image x concept cosine matrix, and D_u the top-K images of
  unit u, each in D_u with probability p_r falling linearly from 0.998 (rank 0) to 0.97 (rank K, not
  reached), log p(c | D_u) = sum_r log(1 - p_r (1 - P[x_r, c]) + 1e-7) (the probability that an image
  of D_u has concept c, as a soft product); log p(c) = log mean_u p(c | D_u); score = log p(c | D_u)
  - lambda log p(c). Defaults K = 100, a = 10, lambda = 1.
- **Network Dissection** (Bau et al. 2017), IoU (:func:`netdissect_iou`): a unit's maps upsampled
  bilinearly to R x R, thresholded at the top ``quantile`` of all its upsampled values over the dataset
  (default 0.5 %); the concept's mask is the union of the masks of the objects with the concept;
  IoU = sum_n |M_u,n & L_c,n| / sum_n |M_u,n | L_c,n|, intersections and unions summed over images.
- **Ground truth** of a unit (Table 1's role): its Algorithm 1 top feature, argmax of the affinity
  (:func:`clipmech.analyses.selectivity.affinity`) over its top-k images by image-level activation; none
  for a dead unit (:mod:`clipmech.analyses.dead`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from clipmech.analyses import dead, selectivity
from clipmech.data import shapes

#: CLIP-Dissect's probability that the top-ranked image, and the one past the last, is in D_u.
P_START, P_END = 0.998, 0.97
#: CLIP-Dissect's floor inside the log.
MIN_PROB = 1e-7


def act_values(acts_NU: np.ndarray, present_NF: np.ndarray) -> np.ndarray:
    """Mean image-level activation of every unit over the images with each concept, float64 (U, F); NaN
    for a concept no image has."""
    acts_NU = np.asarray(acts_NU, dtype=np.float64)
    present = np.asarray(present_NF, dtype=np.float64)
    counts_F = present.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (acts_NU.T @ present) / counts_F[None, :]


def soft_wpmi(acts_NU: np.ndarray, similarity_NC: np.ndarray, *, top_k: int, a: float, lam: float) -> np.ndarray:
    """CLIP-Dissect's soft-WPMI of every unit with every concept (module docstring), float64 (U, C).

    Parameters
    ----------
    acts_NU : numpy.ndarray, float, (N, U)
        Image-level unit activations.
    similarity_NC : numpy.ndarray, float, (N, C)
        The reference CLIP's cosine of every image with every concept's text.
    top_k : int
        K, clipped to N; ties of activation are broken towards the lower image index.
    a, lam : float

    Raises
    ------
    ValueError
        If N differs or top_k < 1.
    """
    acts_NU = np.asarray(acts_NU, dtype=np.float64)
    similarity_NC = np.asarray(similarity_NC, dtype=np.float64)
    if acts_NU.shape[0] != similarity_NC.shape[0]:
        raise ValueError(f"soft_wpmi: {acts_NU.shape[0]} activation rows but {similarity_NC.shape[0]} similarity rows")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    k = min(top_k, acts_NU.shape[0])
    prob_NC = torch.softmax(torch.as_tensor(a * similarity_NC), dim=1)
    order_KU = torch.as_tensor(np.argsort(-acts_NU, axis=0, kind="stable")[:k])
    p_in_K = torch.as_tensor(P_START - np.arange(k) / k * (P_START - P_END))
    log_p_UC = torch.empty(acts_NU.shape[1], similarity_NC.shape[1], dtype=torch.float64)
    chunk = max(1, 2**24 // max(1, k * similarity_NC.shape[1]))
    for first in range(0, acts_NU.shape[1], chunk):
        gathered_KBC = prob_NC[order_KU[:, first : first + chunk]]
        terms = torch.log(1 + p_in_K[:, None, None] * (gathered_KBC - 1) + MIN_PROB)
        log_p_UC[first : first + chunk] = terms.sum(dim=0)
    log_prior_C = torch.logsumexp(log_p_UC, dim=0) - np.log(log_p_UC.shape[0])
    return (log_p_UC - lam * log_prior_C[None, :]).numpy()


def concept_masks(masks_NHW: np.ndarray, objects: pd.DataFrame, resolution: int) -> np.ndarray:
    """Per image and concept, the union of the masks of the objects with that concept, at R x R
    (nearest pixel centres), bool (N, R, R, 16).

    Parameters
    ----------
    masks_NHW : numpy.ndarray, int, (N, H, W)
        Instance masks: object id per pixel, 0 background.
    objects : pandas.DataFrame
        The object table (image_id, object_id, shape, colour, position).
    resolution : int
    """
    masks_NHW = np.asarray(masks_NHW)
    n, height, width = masks_NHW.shape
    rows = ((np.arange(resolution) + 0.5) * height / resolution).astype(np.int64)
    cols = ((np.arange(resolution) + 0.5) * width / resolution).astype(np.int64)
    small_NRR = masks_NHW[:, rows][:, :, cols]
    index = {feature: f for f, feature in enumerate(shapes.FEATURES)}
    n_ids = int(small_NRR.max()) + 1 if small_NRR.size else 1
    n_ids = max(n_ids, int(objects["object_id"].max()) + 1 if len(objects) else 1)
    table_NOF = np.zeros((n, n_ids, len(shapes.FEATURES)), dtype=bool)
    for column in ("shape", "colour", "position"):
        table_NOF[
            objects["image_id"].to_numpy(), objects["object_id"].to_numpy(), objects[column].map(index).to_numpy()
        ] = True
    return table_NOF[np.arange(n)[:, None, None], small_NRR]


def netdissect_iou(maps_NUhw: np.ndarray, concept_NRRF: np.ndarray, *, quantile: float, chunk: int = 8) -> np.ndarray:
    """Network Dissection's IoU of every unit with every concept (module docstring), float64 (U, F).

    Parameters
    ----------
    maps_NUhw : numpy.ndarray or array-like, float, (N, U, h, w)
        Unit activation maps: an array, or any object with ``shape`` whose ``maps_NUhw[:, first:stop]`` is
        an array (SAE latents' maps read from their codes, :class:`clipmech.miclip.units.LatentMaps`); read
        ``chunk`` units at a time.
    concept_NRRF : numpy.ndarray, bool, (N, R, R, F)
        Concept masks (:func:`concept_masks`).
    quantile : float
        The top fraction of a unit's upsampled values that is "on", in (0, 1).
    chunk : int
        Units upsampled at a time.

    Raises
    ------
    ValueError
        If quantile is not in (0, 1) or N differs.
    """
    if not 0 < quantile < 1:
        raise ValueError(f"netdissect quantile must lie in (0, 1), got {quantile}")
    if maps_NUhw.shape[0] != concept_NRRF.shape[0]:
        raise ValueError(f"netdissect_iou: {maps_NUhw.shape[0]} maps but {concept_NRRF.shape[0]} mask images")
    resolution, n_features = concept_NRRF.shape[1], concept_NRRF.shape[3]
    labels_PF = torch.as_tensor(concept_NRRF.reshape(-1, n_features), dtype=torch.float32)
    label_area_F = labels_PF.sum(dim=0).double()
    n_pixels = labels_PF.shape[0]
    rank = n_pixels - max(1, int(np.ceil(quantile * n_pixels)))  # the top n_pixels - rank values are on
    iou_UF = np.zeros((maps_NUhw.shape[1], n_features))
    for first in range(0, maps_NUhw.shape[1], chunk):
        maps = torch.as_tensor(np.asarray(maps_NUhw[:, first : first + chunk], dtype=np.float32))
        up_NBRR = F.interpolate(maps, size=(resolution, resolution), mode="bilinear", align_corners=False)
        values_BP = up_NBRR.permute(1, 0, 2, 3).reshape(maps.shape[1], -1)
        if rank >= 1:
            threshold_B = values_BP.kthvalue(rank, dim=1).values
        else:
            threshold_B = torch.full((values_BP.shape[0],), -torch.inf)
        on_BP = (values_BP > threshold_B[:, None]).float()
        intersection_BF = (on_BP @ labels_PF).double()
        union_BF = on_BP.sum(dim=1, keepdim=True).double() + label_area_F[None, :] - intersection_BF
        iou_UF[first : first + chunk] = torch.where(union_BF > 0, intersection_BF / union_BF, 0.0).numpy()
    return iou_UF


def ground_truth(acts_NU: np.ndarray, counts_NF: np.ndarray, k: int) -> np.ndarray:
    """Every unit's Algorithm 1 top feature: argmax of its affinity over its top-k images (ties: the lower
    feature index), int64 (U,); -1 for a dead unit (:func:`clipmech.analyses.dead.dead_units`: no ranking)."""
    acts_NU = np.asarray(acts_NU, dtype=np.float64)
    k = min(k, acts_NU.shape[0])
    index_KU = np.argsort(-acts_NU, axis=0, kind="stable")[:k]
    truth_U = np.argmax(selectivity.affinity(np.asarray(counts_NF, dtype=np.float64), index_KU), axis=1)
    return np.where(dead.dead_units(acts_NU), -1, truth_U).astype(np.int64)
