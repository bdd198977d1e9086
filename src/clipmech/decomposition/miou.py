"""Semantic-segmentation scoring: mIoU from a dataset-wide confusion matrix, as mmseg does.

methods.md Sec. 5 (Segmentation; neuron-attention paper Sec. 5.1, Table 3): predictions are
scored by mean IoU over classes from one confusion matrix accumulated over the whole dataset.
The conventions follow mmsegmentation's ``IoUMetric``: pixels whose ground truth is
``ignore_index`` (255) are dropped; IoU_k = |pred = gt = k| / (|pred = k| + |gt = k| - |both|);
a class absent from both ground truth and prediction over the dataset has IoU NaN and is left
out of the mean (``nanmean``); a class predicted but never present has IoU 0 and counts. For
datasets evaluated with mmseg's ``reduce_zero_label`` (e.g. PASCAL Context-59, where label 0 is
background and is not scored) apply :func:`reduce_zero_label` to the ground truth first.
"""

from __future__ import annotations

import numpy as np

__all__ = ["confusion_matrix", "reduce_zero_label", "iou_from_confusion", "mean_iou"]


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, n_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Confusion matrix of one prediction against its ground truth (mmseg conventions).

    Sum the matrices of all images to accumulate over a dataset (methods.md Sec. 5,
    Segmentation). Counted with one ``np.bincount`` over ``gt * n_classes + pred``.

    Parameters
    ----------
    pred : ndarray of int, any shape
        Predicted class per pixel, in [0, n_classes).
    gt : ndarray of int, same shape as ``pred``
        Ground-truth class per pixel, in [0, n_classes) or ``ignore_index``.
    n_classes : int
        Number of scored classes K.
    ignore_index : int
        Ground-truth value of pixels that are not scored (their prediction is not checked).

    Returns
    -------
    ndarray of int64, shape (K, K)
        ``cm[i, j]`` = number of scored pixels with ground truth i predicted as j.

    Raises
    ------
    ValueError
        If the shapes differ, ``n_classes`` < 1, the arrays are not integer, or a scored pixel
        has a prediction or ground truth outside [0, n_classes).
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred has shape {pred.shape} but gt has shape {gt.shape}; they must match")
    if n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes}")
    for name, arr in (("pred", pred), ("gt", gt)):
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    scored = gt != ignore_index
    gt_s = gt[scored].astype(np.int64)
    pred_s = pred[scored].astype(np.int64)
    for name, arr in (("gt", gt_s), ("pred", pred_s)):
        if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
            raise ValueError(
                f"{name} has labels outside [0, {n_classes}) on scored pixels (range [{arr.min()}, {arr.max()}]); "
                f"allowed: 0..{n_classes - 1}" + (f" or ignore_index={ignore_index} in gt" if name == "gt" else "")
            )
    return np.bincount(gt_s * n_classes + pred_s, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def reduce_zero_label(gt: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """mmseg's ``reduce_zero_label``: label 0 (background) -> ignore, label k -> k - 1.

    Pixels already equal to ``ignore_index`` stay ``ignore_index``. Used for datasets whose
    label 0 is an unscored background (PASCAL Context-59, ADE20K) (methods.md Sec. 5,
    "background handled as in mmseg").

    Parameters
    ----------
    gt : ndarray of int, any shape
    ignore_index : int

    Returns
    -------
    ndarray of int64, shape of ``gt``

    Raises
    ------
    ValueError
        If ``gt`` is not an integer array.
    """
    gt = np.asarray(gt)
    if not np.issubdtype(gt.dtype, np.integer):
        raise ValueError(f"gt must hold integer class labels, got dtype {gt.dtype}")
    out = gt.astype(np.int64) - 1
    out[(gt == 0) | (gt == ignore_index)] = ignore_index
    return out


def iou_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class IoU from a (dataset-accumulated) confusion matrix.

    IoU_k = cm[k, k] / (sum_j cm[k, j] + sum_i cm[i, k] - cm[k, k]) (mmseg ``IoUMetric``;
    methods.md Sec. 5, Segmentation).

    Parameters
    ----------
    cm : ndarray, shape (K, K)
        Rows ground truth, columns prediction, from :func:`confusion_matrix`.

    Returns
    -------
    ndarray of float64, shape (K,)
        NaN for classes absent from both ground truth and prediction.

    Raises
    ------
    ValueError
        If ``cm`` is not square 2-D or has negative entries.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square (K, K) matrix, got shape {cm.shape}")
    if (cm < 0).any():
        raise ValueError("cm has negative counts")
    intersect = np.diag(cm).astype(np.float64)
    union = cm.sum(axis=1) + cm.sum(axis=0) - intersect
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersect / union, np.nan)


def mean_iou(cm: np.ndarray) -> float:
    """Mean IoU over the classes present in ground truth or prediction (mmseg's ``nanmean``).

    Parameters
    ----------
    cm : ndarray, shape (K, K)
        Dataset-accumulated confusion matrix.

    Returns
    -------
    float
        mIoU in [0, 1] (multiply by 100 for the percentages the papers report).

    Raises
    ------
    ValueError
        If no class occurs at all (an empty confusion matrix), or ``cm`` is malformed.
    """
    iou = iou_from_confusion(cm)
    if np.isnan(iou).all():
        raise ValueError("cm counts no pixels: no class occurs in ground truth or prediction, mIoU is undefined")
    return float(np.nanmean(iou))
