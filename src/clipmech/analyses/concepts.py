"""Concepts of Shapes and how well a unit's activation predicts them (methods.md Secs. 7, 8; causal-tracing
paper Sec. 3.4): presence of the 16 concepts per image, caption and patch, and each unit's AUROC and AP.

Concepts are the 16 Shapes features (:data:`clipmech.data.shapes.FEATURES`: 5 shapes, 6 colours, 5
positions). The ground truth comes from the object table and the instance masks:

- image level (:func:`image_presence`, :func:`presence`): an image has a concept when one of its objects has it;
- caption level (:func:`caption_presence`): a caption (:func:`clipmech.data.shapes.caption`) has a colour or
  shape concept when the word occurs and a position concept when the position's phrase occurs, which for a
  caption of an image's objects in table order is the image's presence;
- patch level (:func:`patch_presence`): a patch has a concept when its pixel square overlaps the mask of an
  object with that concept.

AUROC of unit u for concept f (:func:`auroc`) is P(a_pos > a_neg) + 0.5 P(a_pos = a_neg) over the inputs with
and without the concept, the Mann-Whitney U statistic divided by n_pos n_neg; :func:`blocked_auroc` computes it a
block of units at a time from an (N, U) array held on disk, exactly; AP (:func:`average_precision`)
is ``sklearn.metrics.average_precision_score``'s, for all units at once. Both are NaN for a concept that no input, or every input, has.
Used by the concept selectivity of :mod:`clipmech.patching.concepts`, the SAE alignment of
:mod:`clipmech.sae.alignment` and the MiCLIP evaluation of :mod:`clipmech.miclip.evaluation`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse
from scipy import stats

from clipmech.data import shapes


def image_presence(objects: pd.DataFrame, n_images: int) -> np.ndarray:
    """Which images hold each concept: ``present_NF[i, f]`` when an object of image i has ``FEATURES[f]``.

    Returns
    -------
    present_NF : numpy.ndarray, bool, (N, 16)
    """
    return shapes.feature_counts(objects, n_images) > 0


def presence(objects: pd.DataFrame, n_dataset: int, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image-level presence (N, 16) bool and object counts (N, 16) float64 of the given dataset images."""
    images = np.asarray(images, dtype=np.int64)
    return image_presence(objects, n_dataset)[images], shapes.feature_counts(objects, n_dataset)[images]


def caption_presence(captions: Sequence[str]) -> np.ndarray:
    """Which captions hold each concept: the shape or colour word among the caption's words, or the
    position's phrase (:data:`clipmech.data.shapes.POSITION_PHRASES`) in the caption.

    Returns
    -------
    present_NF : numpy.ndarray, bool, (N, 16)
    """
    present = np.zeros((len(captions), len(shapes.FEATURES)), dtype=bool)
    for n, text in enumerate(captions):
        words = set(text.split())
        for f, (feature, kind) in enumerate(zip(shapes.FEATURES, shapes.FEATURE_TYPES)):
            present[n, f] = shapes.POSITION_PHRASES[feature] in text if kind == "position" else feature in words
    return present


def patch_bounds(image_size: int, n_cells: int) -> np.ndarray:
    """First pixel of each of ``n_cells`` patch squares along one axis: floor(i S / n), int64 (n_cells,)."""
    return (np.arange(n_cells) * image_size) // n_cells


def patch_presence(
    masks_NHW: np.ndarray, objects: pd.DataFrame, images: np.ndarray, grid: tuple[int, int]
) -> np.ndarray:
    """Which patches of each image hold each concept: an object with the concept covers a pixel of the patch.

    The patch grid covers the whole (square) image: patch (r, c) of a ``grid_rows`` x ``grid_cols`` grid is
    the pixel square rows [floor(r S / rows), floor((r + 1) S / rows)), likewise for columns, S the image size
    (the model's resize of a square image is a uniform scaling, so its patches map to these squares).

    Parameters
    ----------
    masks_NHW : numpy.ndarray, uint8, (N_dataset, S, S)
        Instance masks (object id per pixel, 0 = background).
    objects : pandas.DataFrame
        The object table (image_id, object_id, shape, colour, position).
    images : numpy.ndarray, int, (N,)
        The images to take, positions in the dataset.
    grid : (int, int)
        ``grid_rows``, ``grid_cols`` of the store's attributes.

    Returns
    -------
    present_NSF : numpy.ndarray, bool, (N, rows x cols, 16)
        Patches in raster order, as the patch tokens are.

    Raises
    ------
    ValueError
        If the masks are not square or the grid is finer than the image.
    """
    size = masks_NHW.shape[1]
    if masks_NHW.shape[2] != size:
        raise ValueError(f"patch presence needs square masks, got {masks_NHW.shape[1:]}")
    rows, cols = grid
    if rows > size or cols > size:
        raise ValueError(f"patch grid {rows} x {cols} is finer than the {size} px image")
    row_starts, col_starts = patch_bounds(size, rows), patch_bounds(size, cols)
    feature = {name: f for f, name in enumerate(shapes.FEATURES)}
    present = np.zeros((len(images), rows * cols, len(shapes.FEATURES)), dtype=bool)
    by_image = objects.groupby("image_id")
    for n, image in enumerate(np.asarray(images, dtype=np.int64)):
        if image not in by_image.groups:
            continue
        mask_HW = np.asarray(masks_NHW[image])
        for row in by_image.get_group(image).itertuples(index=False):
            pixels = (mask_HW == row.object_id).astype(np.int64)
            covered = np.add.reduceat(np.add.reduceat(pixels, row_starts, axis=0), col_starts, axis=1) > 0
            for name in (row.shape, row.colour, row.position):
                present[n, :, feature[name]] |= covered.reshape(-1)
    return present


def auroc(acts_NU: np.ndarray, present_NF: np.ndarray) -> np.ndarray:
    """AUROC of every unit for every concept: P(a_pos > a_neg) + 0.5 P(a_pos = a_neg) (methods.md Sec. 8).

    Computed from mid-ranks (``scipy.stats.rankdata``, ties averaged) as the Mann-Whitney U statistic of
    the positives, U = R_pos - n_pos (n_pos + 1) / 2, divided by n_pos n_neg.

    Parameters
    ----------
    acts_NU : numpy.ndarray, float, (N, U)
        Unit activations per input.
    present_NF : numpy.ndarray, bool, (N, F)
        Whether input n has concept f.

    Returns
    -------
    auroc_UF : numpy.ndarray, float64, (U, F)
        In [0, 1]; NaN for a concept that no input, or every input, has.

    Raises
    ------
    ValueError
        If the arrays are not 2-D with the same N, or an activation is not finite (the message names the units).
    """
    acts_NU = np.asarray(acts_NU, dtype=np.float64)
    present_NF = np.asarray(present_NF, dtype=bool)
    if acts_NU.ndim != 2 or present_NF.ndim != 2 or acts_NU.shape[0] != present_NF.shape[0]:
        raise ValueError(
            f"auroc needs acts (N, U) and presence (N, F) with the same N, got {acts_NU.shape} and {present_NF.shape}"
        )
    bad = np.flatnonzero(~np.isfinite(acts_NU).all(axis=0))
    if bad.size:
        raise ValueError(f"auroc: units {bad[:10].tolist()} (of {bad.size}) have non-finite activations")
    ranks_NU = stats.rankdata(acts_NU, axis=0)
    n_pos_F = present_NF.sum(axis=0).astype(np.float64)
    n_neg_F = present_NF.shape[0] - n_pos_F
    u_UF = ranks_NU.T @ present_NF.astype(np.float64) - n_pos_F * (n_pos_F + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        auroc_UF = u_UF / (n_pos_F * n_neg_F)
    auroc_UF[:, (n_pos_F == 0) | (n_neg_F == 0)] = np.nan
    return auroc_UF


#: Activations :func:`blocked_auroc` ranks at once (rows x units of a block), bounding its memory whatever N.
BLOCK_VALUES = 1 << 21


def block_units(n_inputs: int, block_values: int = BLOCK_VALUES) -> int:
    """Units per block of :func:`blocked_auroc` over ``n_inputs`` inputs: max(1, block_values // n_inputs).

    Raises
    ------
    ValueError
        If ``block_values`` is below 1.
    """
    if block_values < 1:
        raise ValueError(f"blocked_auroc: block_values must be >= 1, got {block_values}")
    return max(1, block_values // max(1, n_inputs))


def blocked_auroc(acts_NU, present_NF: np.ndarray, rows: np.ndarray | None = None, block_values: int = BLOCK_VALUES):
    """:func:`auroc` of an (N, U) array that need not fit in memory, read a block of units (columns) at a time.

    Each unit's AUROC depends on its own column only, and the rank sums are sums of half-integers, exact in
    float64, so the result equals :func:`auroc` of the whole array bit for bit. Memory holds one block of
    about ``block_values`` activations (at least one column of N rows), in float64 with its ranks.

    Parameters
    ----------
    acts_NU : array-like, float, (N_stored, U)
        Anything indexed as ``acts_NU[:, start:stop]`` into a numpy array: a ``zarr.Array`` on disk, a numpy array.
    present_NF : numpy.ndarray, bool, (N, F)
        Whether input n has concept f.
    rows : numpy.ndarray, int, (N,), optional
        The stored row of each input (inputs that share a row, as images sharing a text, repeat it); default
        every stored row once, in order (N = N_stored).
    block_values : int
        Activations per block; the block has :func:`block_units` units. An array on disk reads fastest when
        its chunks are that many units wide.

    Returns
    -------
    auroc_UF : numpy.ndarray, float64, (U, F)
        As :func:`auroc`.

    Raises
    ------
    ValueError
        As :func:`auroc` (a non-finite activation: the message names the offending units of the first block
        holding one, by their column in ``acts_NU``); if ``block_values`` is below 1.
    """
    n_inputs = present_NF.shape[0] if rows is None else len(rows)
    n_units = acts_NU.shape[1]
    width = block_units(n_inputs, block_values)
    parts = []
    for start in range(0, n_units, width):
        block_NU = np.asarray(acts_NU[:, start : start + width], dtype=np.float64)
        bad = start + np.flatnonzero(~np.isfinite(block_NU).all(axis=0))
        if bad.size:
            raise ValueError(
                f"auroc: units {bad[:10].tolist()} (of {bad.size} in their block) have non-finite activations"
            )
        parts.append(auroc(block_NU if rows is None else block_NU[rows], present_NF))
    if not parts:
        return auroc(np.empty((n_inputs, 0)), present_NF)
    return np.concatenate(parts)


def sparse_auroc(acts_NU, present_NF: np.ndarray) -> np.ndarray:
    """:func:`auroc` of the columns of a sparse matrix, from its stored entries alone (no dense copy).

    The entries a column does not store are its zeros, one tie group of mid-rank n_neg + (z + 1) / 2 (n_neg
    of its stored values below 0, z its zeros); a stored value v has its mid-rank among the stored values,
    plus z when v > 0. The rank sums of the positives then follow from products of the sparse matrix with
    the presence. The ranks are half-integers and their sums exact in float64, so the result equals
    :func:`auroc` of the dense matrix.

    Parameters
    ----------
    acts_NU : scipy.sparse matrix, float, (N, U)
        Unit activations per input.
    present_NF : numpy.ndarray, bool, (N, F)

    Returns
    -------
    auroc_UF : numpy.ndarray, float64, (U, F)
        NaN for a concept that no input, or every input, has.

    Raises
    ------
    ValueError
        If the shapes disagree on N, or a stored activation is not finite (the message names the units).
    """
    matrix = scipy.sparse.csc_matrix(acts_NU, dtype=np.float64, copy=True)
    present_NF = np.asarray(present_NF, dtype=bool)
    if present_NF.ndim != 2 or matrix.shape[0] != present_NF.shape[0]:
        raise ValueError(
            f"auroc needs acts (N, U) and presence (N, F) with the same N, got {matrix.shape} and {present_NF.shape}"
        )
    matrix.eliminate_zeros()
    n_inputs, n_units = matrix.shape
    column_E = np.repeat(np.arange(n_units), np.diff(matrix.indptr))
    bad = np.unique(column_E[~np.isfinite(matrix.data)])
    if bad.size:
        raise ValueError(f"auroc: units {bad[:10].tolist()} (of {bad.size}) have non-finite activations")
    # Mid-ranks among each column's stored values: sort by (column, value), tie groups of equal pairs.
    order = np.lexsort((matrix.data, column_E))
    value, column = matrix.data[order], column_E[order]
    new_group = np.ones(value.size, dtype=bool)
    new_group[1:] = (value[1:] != value[:-1]) | (column[1:] != column[:-1])
    group = np.cumsum(new_group) - 1
    first = np.flatnonzero(new_group)
    last = np.append(first[1:], value.size) - 1
    rank = (first[group] + last[group]) / 2.0 + 1.0 - matrix.indptr[column]  # 1-based, within the column
    zeros_U = n_inputs - np.diff(matrix.indptr)
    negative_U = np.bincount(column_E[matrix.data < 0], minlength=n_units)
    ranks = matrix.copy()
    ranks.data[order] = rank + np.where(value > 0, zeros_U[column], 0)
    pattern = matrix.copy()
    pattern.data[:] = 1.0
    present = present_NF.astype(np.float64)
    n_pos_F = present.sum(axis=0)
    n_neg_F = n_inputs - n_pos_F
    zero_rank_U = negative_U + (zeros_U + 1) / 2.0
    stored_pos_UF = np.asarray(pattern.T @ present)
    rank_sum_UF = np.asarray(ranks.T @ present) + (n_pos_F[None, :] - stored_pos_UF) * zero_rank_U[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        auroc_UF = (rank_sum_UF - n_pos_F * (n_pos_F + 1) / 2) / (n_pos_F * n_neg_F)
    auroc_UF[:, (n_pos_F == 0) | (n_neg_F == 0)] = np.nan
    return auroc_UF


def average_precision(acts_NU: np.ndarray, present_NF: np.ndarray) -> np.ndarray:
    """AP of every unit for every concept (methods.md Sec. 7.4), ``sklearn.metrics.average_precision_score``'s
    definition computed for all units at once.

    AP = sum over the distinct thresholds t, from the highest, of (R_t - R_prev) P_t, with precision P_t and
    recall R_t of "activation >= t" (R_prev = 0 before the first threshold): inputs tied in activation enter
    together. Equivalently, the mean over the positives of the precision at the last input of their tie
    group, which is what is computed: each unit's activations are sorted once (descending), and per concept
    the cumulative positives give the precision at every position.

    Parameters
    ----------
    acts_NU : numpy.ndarray, float, (N, U)
        Unit activations per input (compared in float64).
    present_NF : numpy.ndarray, bool, (N, F)
        Whether input n has concept f.

    Returns
    -------
    ap_UF : numpy.ndarray, float64, (U, F)
        In [0, 1], equal to scikit-learn's up to float64 rounding; NaN for a concept that no input, or every
        input, has.

    Raises
    ------
    ValueError
        If the arrays are not 2-D with the same N, or an activation is not finite (the message names the units).
    """
    acts_NU = np.asarray(acts_NU, dtype=np.float64)
    present_NF = np.asarray(present_NF, dtype=bool)
    if acts_NU.ndim != 2 or present_NF.ndim != 2 or acts_NU.shape[0] != present_NF.shape[0]:
        raise ValueError(
            f"average_precision needs acts (N, U) and presence (N, F) with the same N, got {acts_NU.shape} and "
            f"{present_NF.shape}"
        )
    bad = np.flatnonzero(~np.isfinite(acts_NU).all(axis=0))
    if bad.size:
        raise ValueError(f"average_precision: units {bad[:10].tolist()} (of {bad.size}) have non-finite activations")
    n_inputs, n_units = acts_NU.shape
    ap_UF = np.full((n_units, present_NF.shape[1]), np.nan)
    n_pos_F = present_NF.sum(axis=0)
    defined = np.flatnonzero((n_pos_F > 0) & (n_pos_F < n_inputs))
    if defined.size == 0 or n_units == 0:
        return ap_UF
    order_NU = np.argsort(-acts_NU, axis=0, kind="stable")
    sorted_NU = np.take_along_axis(acts_NU, order_NU, axis=0)
    # Position (0-based) of the last input of each input's tie group, in sorted order.
    position_N1 = np.arange(n_inputs)[:, None]
    last_NU = np.where(np.vstack([sorted_NU[1:] != sorted_NU[:-1], np.ones((1, n_units), bool)]), position_N1, n_inputs)
    last_NU = np.minimum.accumulate(last_NU[::-1], axis=0)[::-1]
    for f in defined:
        positive_NU = present_NF[order_NU, f]
        true_pos_NU = np.cumsum(positive_NU, axis=0)
        precision_NU = np.take_along_axis(true_pos_NU, last_NU, axis=0) / (last_NU + 1.0)
        ap_UF[:, f] = np.where(positive_NU, precision_NU, 0.0).sum(axis=0) / n_pos_F[f]
    return ap_UF
