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
  (default 0.5 %; the exact quantile found streaming over the images, :func:`kth_smallest`); the concept's
  mask is the union of the masks of the objects with the concept (:class:`ConceptMasks`);
  IoU = sum_n |M_u,n & L_c,n| / sum_n |M_u,n | L_c,n|, intersections and unions summed over images.
- **Ground truth** of a unit (Table 1's role): its Algorithm 1 top feature, argmax of the affinity
  (:func:`clipmech.analyses.selectivity.affinity`) over its top-k images by image-level activation; none
  for a dead unit (:mod:`clipmech.analyses.dead`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from clipmech.analyses import dead, selectivity
from clipmech.data import shapes
from clipmech.miclip.units import UNIT_CHUNK, column_blocks

#: CLIP-Dissect's probability that the top-ranked image, and the one past the last, is in D_u.
P_START, P_END = 0.998, 0.97
#: CLIP-Dissect's floor inside the log.
MIN_PROB = 1e-7
#: Network Dissection's threshold search (:func:`kth_smallest`): histogram bins, and the most values of a unit
#: collected for the exact sort.
HIST_BINS, SELECT_CAP = 2048, 1 << 20
#: Integers to which float32 counts are exact (2^24): the most pixels of an image chunk.
EXACT_FLOAT32 = 1 << 24


def act_values(acts_NU, present_NF: np.ndarray, unit_chunk: int = UNIT_CHUNK) -> np.ndarray:
    """Mean image-level activation of every unit over the images with each concept, float64 (U, F); NaN
    for a concept no image has. ``acts_NU`` (N, U), a numpy or zarr array, is read ``unit_chunk`` units at a
    time (:func:`clipmech.miclip.units.column_blocks`)."""
    present = np.asarray(present_NF, dtype=np.float64)
    counts_F = present.sum(axis=0)
    sums_UF = np.empty((acts_NU.shape[1], present.shape[1]))
    for first, block_Nb in column_blocks(acts_NU, unit_chunk):
        sums_UF[first : first + block_Nb.shape[1]] = block_Nb.T @ present
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums_UF / counts_F[None, :]


def soft_wpmi(
    acts_NU, similarity_NC: np.ndarray, *, top_k: int, a: float, lam: float, unit_chunk: int = UNIT_CHUNK
) -> np.ndarray:
    """CLIP-Dissect's soft-WPMI of every unit with every concept (module docstring), float64 (U, C).

    Parameters
    ----------
    acts_NU : numpy.ndarray or zarr.Array, float, (N, U)
        Image-level unit activations, read ``unit_chunk`` units at a time
        (:func:`clipmech.miclip.units.column_blocks`).
    similarity_NC : numpy.ndarray, float, (N, C)
        The reference CLIP's cosine of every image with every concept's text.
    top_k : int
        K, clipped to N; ties of activation are broken towards the lower image index.
    a, lam : float
    unit_chunk : int

    Raises
    ------
    ValueError
        If N differs or top_k < 1.
    """
    similarity_NC = np.asarray(similarity_NC, dtype=np.float64)
    if acts_NU.shape[0] != similarity_NC.shape[0]:
        raise ValueError(f"soft_wpmi: {acts_NU.shape[0]} activation rows but {similarity_NC.shape[0]} similarity rows")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    k = min(top_k, acts_NU.shape[0])
    prob_NC = torch.softmax(torch.as_tensor(a * similarity_NC), dim=1)
    p_in_K = torch.as_tensor(P_START - np.arange(k) / k * (P_START - P_END))
    log_p_UC = torch.empty(acts_NU.shape[1], similarity_NC.shape[1], dtype=torch.float64)
    chunk = max(1, 2**24 // max(1, k * similarity_NC.shape[1]))
    for block_first, block_Nb in column_blocks(acts_NU, unit_chunk):
        order_Kb = torch.as_tensor(np.argsort(-block_Nb, axis=0, kind="stable")[:k])
        for first in range(0, block_Nb.shape[1], chunk):
            gathered_KBC = prob_NC[order_Kb[:, first : first + chunk]]
            terms = torch.log(1 + p_in_K[:, None, None] * (gathered_KBC - 1) + MIN_PROB)
            log_p_UC[block_first + first : block_first + first + gathered_KBC.shape[1]] = terms.sum(dim=0)
    log_prior_C = torch.logsumexp(log_p_UC, dim=0) - np.log(log_p_UC.shape[0])
    return (log_p_UC - lam * log_prior_C[None, :]).numpy()


def concept_masks(masks_NHW: np.ndarray, objects: pd.DataFrame, resolution: int, *, first_image: int = 0) -> np.ndarray:
    """Per image and concept, the union of the masks of the objects with that concept, at R x R
    (nearest pixel centres), bool (N, R, R, 16) (Network Dissection's concept masks, MiCLIP baseline,
    methods.md Sec. 9.6).

    Parameters
    ----------
    masks_NHW : numpy.ndarray, int, (N, H, W)
        Instance masks of images ``first_image`` .. ``first_image + N - 1``: object id per pixel, 0 background.
    objects : pandas.DataFrame
        The object table (image_id, object_id, shape, colour, position); rows of other images are left out.
    resolution : int
        R.
    first_image : int
        The image id of ``masks_NHW[0]`` (a chunk of the images, :class:`ConceptMasks`).
    """
    masks_NHW = np.asarray(masks_NHW)
    n, height, width = masks_NHW.shape
    image_ids = objects["image_id"].to_numpy() - first_image
    objects = objects[(image_ids >= 0) & (image_ids < n)]
    rows = ((np.arange(resolution) + 0.5) * height / resolution).astype(np.int64)
    cols = ((np.arange(resolution) + 0.5) * width / resolution).astype(np.int64)
    small_NRR = masks_NHW[:, rows][:, :, cols]
    index = {feature: f for f, feature in enumerate(shapes.FEATURES)}
    n_ids = int(small_NRR.max()) + 1 if small_NRR.size else 1
    n_ids = max(n_ids, int(objects["object_id"].max()) + 1 if len(objects) else 1)
    table_NOF = np.zeros((n, n_ids, len(shapes.FEATURES)), dtype=bool)
    for column in ("shape", "colour", "position"):
        table_NOF[
            objects["image_id"].to_numpy(dtype=np.int64) - first_image,
            objects["object_id"].to_numpy(dtype=np.int64),
            objects[column].map(index).to_numpy(dtype=np.int64),
        ] = True
    return table_NOF[np.arange(n)[:, None, None], small_NRR]


class ConceptMasks:
    """Network Dissection's concept masks (:func:`concept_masks`), a bool (N, R, R, 16) array computed lazily:
    ``concepts[first:stop]`` is that of images first .. stop - 1, what :func:`netdissect_iou` reads a chunk of
    images at a time. Holds the object table, sorted by image, and ``masks_NHW`` as given (an array or a lazy
    array-like indexed by ``[first:stop]``).

    Parameters
    ----------
    masks_NHW : numpy.ndarray or array-like, int, (N, H, W)
        Instance masks of images 0 .. N - 1.
    objects : pandas.DataFrame
        Their object table (image_id 0 .. N - 1, object_id, shape, colour, position).
    resolution : int
        R.
    """

    ndim = 4
    dtype = np.dtype(bool)

    def __init__(self, masks_NHW, objects: pd.DataFrame, resolution: int):
        self.masks_NHW, self.resolution = masks_NHW, int(resolution)
        self.objects = objects.sort_values("image_id", kind="stable")
        self.image_ids = self.objects["image_id"].to_numpy()
        self.shape = (masks_NHW.shape[0], self.resolution, self.resolution, len(shapes.FEATURES))

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError(f"ConceptMasks reads concepts[first:stop] only, not concepts[{key!r}]")
        first, stop, _ = key.indices(self.shape[0])
        stop = max(first, stop)
        lo, hi = np.searchsorted(self.image_ids, [first, stop])
        return concept_masks(self.masks_NHW[first:stop], self.objects.iloc[lo:hi], self.resolution, first_image=first)


def kth_smallest(
    chunks: Callable[[], Iterable[torch.Tensor]], rank: int, *, n_bins: int = HIST_BINS, cap: int = SELECT_CAP
) -> torch.Tensor:
    """The exact ``rank``-th smallest value (1-based, ties counted, as ``torch.kthvalue``) of each of B rows
    whose values come in chunks, float32 (B,), holding at most ``cap`` values of a row besides a chunk
    (Network Dissection's per-unit threshold over all images, :func:`netdissect_iou`).

    Passes over the chunks: the rows' minimum and maximum; then, while a row is unresolved, either its values
    in its current interval [lo, hi] are collected (when at most ``cap``) and sorted, or they are counted into
    ``n_bins`` bins of [lo, hi] (bin floor((v - lo) * n_bins / (hi - lo)) in float64, clamped: monotone in v,
    so the sorted values fill the bins in order) with each bin's minimum and maximum; the bin holding the
    rank becomes the next interval [its minimum, its maximum], which holds exactly that bin's values, and the
    rank drops by the count of the bins below. An interval of equal ends (all-equal values, or a bin of ties
    such as the zeros of ReLU maps) resolves at once. Each histogram pass leaves out lo or hi, so the
    interval holds fewer distinct values each pass; the result is exact whatever the chunking.

    Parameters
    ----------
    chunks : callable
        Returns an iterable of float32 (B, P_i) tensors, NaN-free; every call the same values of each row
        (in any order and chunking).
    rank : int
        1 <= rank <= the number of values of a row.
    n_bins, cap : int
        Histogram bins (>= 2) and the most values of a row collected for the sort (>= 1).

    Raises
    ------
    ValueError
        If the chunks hold no value, rank is out of range, n_bins < 2 or cap < 1.
    """
    if n_bins < 2 or cap < 1:
        raise ValueError(f"kth_smallest needs n_bins >= 2 and cap >= 1, got {n_bins} and {cap}")
    lo_B = hi_B = None
    n_values = 0
    for values_BP in chunks():
        if values_BP.shape[1] == 0:
            continue
        chunk_lo, chunk_hi = values_BP.amin(dim=1), values_BP.amax(dim=1)
        lo_B = chunk_lo if lo_B is None else torch.minimum(lo_B, chunk_lo)
        hi_B = chunk_hi if hi_B is None else torch.maximum(hi_B, chunk_hi)
        n_values += values_BP.shape[1]
    if lo_B is None:
        raise ValueError("kth_smallest: the chunks hold no value")
    if not 1 <= rank <= n_values:
        raise ValueError(f"kth_smallest: rank {rank} outside 1 .. {n_values}")
    n_rows = lo_B.shape[0]
    rank_B = torch.full((n_rows,), rank, dtype=torch.int64)
    count_B = torch.full((n_rows,), n_values, dtype=torch.int64)
    done_B = lo_B == hi_B
    result_B = torch.where(done_B, lo_B, torch.nan)
    while not bool(done_B.all()):
        open_rows = [int(b) for b in torch.nonzero(~done_B).flatten()]
        collect = {b: [] for b in open_rows if count_B[b] <= cap}
        counts_BK = torch.zeros(n_rows, n_bins, dtype=torch.int64)
        min_BK = torch.full((n_rows, n_bins), torch.inf)
        max_BK = torch.full((n_rows, n_bins), -torch.inf)
        scale_B = n_bins / (hi_B.double() - lo_B.double())
        for values_BP in chunks():
            for b in open_rows:
                row = values_BP[b]
                inside = row[(row >= lo_B[b]) & (row <= hi_B[b])]
                if b in collect:
                    collect[b].append(inside.clone())
                    continue
                bins = ((inside.double() - lo_B[b].double()) * scale_B[b]).floor().long().clamp_(0, n_bins - 1)
                counts_BK[b] += torch.bincount(bins, minlength=n_bins)
                min_BK[b].scatter_reduce_(0, bins, inside, "amin")
                max_BK[b].scatter_reduce_(0, bins, inside, "amax")
        for b in open_rows:
            if b in collect:
                result_B[b] = torch.cat(collect[b]).kthvalue(int(rank_B[b])).values
                done_B[b] = True
                continue
            below_K = counts_BK[b].cumsum(0)
            # the first bin whose cumulative count reaches the rank
            j = int(torch.searchsorted(below_K, rank_B[b : b + 1])[0])
            rank_B[b] -= below_K[j - 1] if j > 0 else 0
            count_B[b] = counts_BK[b, j]
            lo_B[b], hi_B[b] = min_BK[b, j], max_BK[b, j]
            if lo_B[b] == hi_B[b]:
                result_B[b], done_B[b] = lo_B[b], True
    return result_B


def netdissect_iou(
    maps_NUhw,
    concept_NRRF,
    *,
    quantile: float,
    unit_chunk: int = 8,
    image_chunk: int = 256,
    n_bins: int = HIST_BINS,
    cap: int = SELECT_CAP,
) -> np.ndarray:
    """Network Dissection's IoU of every unit with every concept (module docstring; MiCLIP baseline,
    methods.md Sec. 9.6), float64 (U, F), streamed over the images.

    A unit's maps, upsampled to R x R (``torch.nn.functional.interpolate``, bilinear, align_corners False,
    float32, per image: independent of the chunking), are "on" above its threshold: the exact ``rank``-th
    smallest of its N R^2 upsampled values, rank = N R^2 - max(1, ceil(quantile N R^2)) (-inf when rank < 1),
    found by :func:`kth_smallest` over chunks of ``image_chunk`` images, ``unit_chunk`` units at a time
    (three passes over the images usually, more for a unit with heavy ties in its threshold's bin). A last
    pass, image chunk by image chunk, counts per unit and concept the intersections, the on pixels and the
    concept areas, exactly (int64; a chunk's float32 counts stay below 2^24 pixels). Memory, not growing with
    N: a few float32 arrays of an image chunk's upsampled maps of a unit chunk (image_chunk x unit_chunk x R^2)
    and its concept masks (bool and float32 image_chunk x R^2 x F), up to 2 ``cap`` float32 values per unit of
    the unit chunk, (unit_chunk, n_bins) histograms with their bins' extremes, (U, F) counts and U thresholds.

    Parameters
    ----------
    maps_NUhw : numpy.ndarray or array-like, float, (N, U, h, w)
        Unit activation maps: an array, or any object with ``shape`` whose ``maps_NUhw[first:stop, a:b]`` is an
        array (:class:`clipmech.miclip.units.NeuronMaps`, :class:`clipmech.miclip.units.LatentMaps`). NaN-free.
    concept_NRRF : numpy.ndarray or array-like, bool, (N, R, R, F)
        Concept masks: an array or :class:`ConceptMasks`, read by ``concept_NRRF[first:stop]``.
    quantile : float
        The top fraction of a unit's upsampled values that is "on", in (0, 1).
    unit_chunk, image_chunk : int
        Units and images upsampled at a time (image chunks capped at 2^24 pixels, so float32 counts are exact).
    n_bins, cap : int
        Of :func:`kth_smallest`.

    Raises
    ------
    ValueError
        If quantile is not in (0, 1), N differs, a chunk is < 1 or R^2 exceeds 2^24.
    """
    if not 0 < quantile < 1:
        raise ValueError(f"netdissect quantile must lie in (0, 1), got {quantile}")
    n_images, n_units = maps_NUhw.shape[0], maps_NUhw.shape[1]
    if n_images != concept_NRRF.shape[0]:
        raise ValueError(f"netdissect_iou: {n_images} maps but {concept_NRRF.shape[0]} mask images")
    if unit_chunk < 1 or image_chunk < 1:
        raise ValueError(f"netdissect_iou: chunks must be >= 1, got {unit_chunk} units and {image_chunk} images")
    resolution, n_features = concept_NRRF.shape[1], concept_NRRF.shape[3]
    if resolution * resolution > EXACT_FLOAT32:
        raise ValueError(f"netdissect_iou: resolution {resolution} gives over 2^24 pixels an image")
    image_chunk = min(image_chunk, EXACT_FLOAT32 // (resolution * resolution))
    n_pixels = n_images * resolution * resolution
    rank = n_pixels - max(1, int(np.ceil(quantile * n_pixels)))  # the top n_pixels - rank values are on

    def upsampled(first: int, stop: int, unit_first: int, unit_stop: int) -> torch.Tensor:
        """The upsampled maps of images first .. stop - 1, units unit_first .. unit_stop - 1, (B, n R^2)."""
        maps = torch.as_tensor(np.asarray(maps_NUhw[first:stop, unit_first:unit_stop], dtype=np.float32))
        up_NBRR = F.interpolate(maps, size=(resolution, resolution), mode="bilinear", align_corners=False)
        return up_NBRR.permute(1, 0, 2, 3).reshape(maps.shape[1], -1)

    starts = range(0, n_images, image_chunk)
    threshold_U = torch.full((n_units,), -torch.inf)
    if rank >= 1:
        for unit_first in range(0, n_units, unit_chunk):
            unit_stop = min(unit_first + unit_chunk, n_units)
            threshold_U[unit_first:unit_stop] = kth_smallest(
                lambda a=unit_first, b=unit_stop: (upsampled(s, s + image_chunk, a, b) for s in starts),
                rank,
                n_bins=n_bins,
                cap=cap,
            )
    intersection_UF = torch.zeros(n_units, n_features, dtype=torch.int64)
    on_U = torch.zeros(n_units, dtype=torch.int64)
    label_area_F = torch.zeros(n_features, dtype=torch.int64)
    for first in starts:
        concepts = np.asarray(concept_NRRF[first : first + image_chunk], dtype=bool)
        labels_PF = torch.as_tensor(concepts.reshape(-1, n_features), dtype=torch.float32)
        label_area_F += torch.as_tensor(concepts.reshape(-1, n_features).sum(axis=0, dtype=np.int64))
        for unit_first in range(0, n_units, unit_chunk):
            unit_stop = min(unit_first + unit_chunk, n_units)
            on_BP = (
                upsampled(first, first + image_chunk, unit_first, unit_stop) > threshold_U[unit_first:unit_stop, None]
            )
            intersection_UF[unit_first:unit_stop] += (on_BP.float() @ labels_PF).long()
            on_U[unit_first:unit_stop] += on_BP.sum(dim=1)
    intersection_UF = intersection_UF.double()
    union_UF = on_U[:, None].double() + label_area_F[None, :].double() - intersection_UF
    return torch.where(union_UF > 0, intersection_UF / union_UF, 0.0).numpy()


def ground_truth(acts_NU, counts_NF: np.ndarray, k: int, unit_chunk: int = UNIT_CHUNK) -> np.ndarray:
    """Every unit's Algorithm 1 top feature: argmax of its affinity over its top-k images (ties: the lower
    feature index), int64 (U,); -1 for a dead unit (:func:`clipmech.analyses.dead.dead_units`: no ranking).
    ``acts_NU`` (N, U), a numpy or zarr array, is read ``unit_chunk`` units at a time
    (:func:`clipmech.miclip.units.column_blocks`)."""
    counts_NF = np.asarray(counts_NF, dtype=np.float64)
    k = min(k, acts_NU.shape[0])
    truth_U = np.empty(acts_NU.shape[1], dtype=np.int64)
    for first, block_Nb in column_blocks(acts_NU, unit_chunk):
        index_Kb = np.argsort(-block_Nb, axis=0, kind="stable")[:k]
        truth_b = np.argmax(selectivity.affinity(counts_NF, index_Kb), axis=1)
        truth_U[first : first + block_Nb.shape[1]] = np.where(dead.dead_units(block_Nb), -1, truth_b)
    return truth_U
