"""Distribution-shift monitoring (neuron-attention paper Sec. 5.2; methods.md Sec. 5): a concept's score is the norm of its top pairs' contributions over the norm of the output, correlated with the concept's presence by the point-biserial r."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from clipmech.data import shift


def concept_scores(
    s_NHC: np.ndarray, u_HCE: np.ndarray, y_NE: np.ndarray, heads_k: np.ndarray, neurons_k: np.ndarray
) -> np.ndarray:
    """||sum of the chosen pairs' contributions|| / ||y|| per image (paper Sec. 5.2).

    An image's score depends on its own scalars and output only, so the images may come in chunks
    (rule ``monitor_shift`` streams over the store).

    Parameters
    ----------
    s_NHC : ndarray, shape (N, H, C)
    u_HCE : ndarray, shape (H, C, E)
    y_NE : ndarray, shape (N, E)
        The attention-pool outputs.
    heads_k, neurons_k : ndarray of int, shape (k,)
        The concept's top pairs.

    Returns
    -------
    ndarray, shape (N,)
    """
    heads_k, neurons_k = np.asarray(heads_k, dtype=np.intp), np.asarray(neurons_k, dtype=np.intp)
    summed_NE = s_NHC[:, heads_k, neurons_k] @ u_HCE[heads_k, neurons_k]
    return np.linalg.norm(summed_NE, axis=1) / np.linalg.norm(y_NE, axis=1)


def shift_tables(
    spec: shift.ShiftSpec, scores_NF: np.ndarray, present_NF: np.ndarray
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-split true shares and mean scores, and the correlations of each concept.

    Parameters
    ----------
    spec : shift.ShiftSpec
    scores_NF : ndarray, shape (N, F)
        :func:`concept_scores` of every image for each concept.
    present_NF : ndarray of bool, shape (N, F)
        Concept presence per image (:func:`presence`).

    Returns
    -------
    splits : pandas.DataFrame
        split, concept, true_share, measured_share (fraction of the split's images containing
        the concept, from ``present_NF``), mean_score, sd_score.
    correlations : pandas.DataFrame
        concept, point_biserial_r, point_biserial_p (presence vs score over all images),
        split_pearson_r, split_pearson_p (split mean score vs true share).
    """
    n = spec.n_per_split
    split_N = np.arange(len(scores_NF)) // n
    split_rows, corr_rows = [], []
    for f, concept in enumerate(spec.concepts):
        means = []
        for s, row in enumerate(spec.shares):
            in_split = split_N == s
            means.append(scores_NF[in_split, f].mean())
            split_rows.append(
                {
                    "split": s,
                    "concept": concept,
                    "true_share": row[f],
                    "measured_share": float(present_NF[in_split, f].mean()),
                    "mean_score": float(means[-1]),
                    "sd_score": float(scores_NF[in_split, f].std(ddof=1)) if in_split.sum() > 1 else np.nan,
                }
            )
        pb = stats.pointbiserialr(present_NF[:, f].astype(float), scores_NF[:, f])
        shares = np.array([row[f] for row in spec.shares])
        pearson = stats.pearsonr(shares, means) if np.ptp(shares) > 0 else None
        corr_rows.append(
            {
                "concept": concept,
                "point_biserial_r": float(pb.statistic),
                "point_biserial_p": float(pb.pvalue),
                "split_pearson_r": float(pearson.statistic) if pearson else np.nan,
                "split_pearson_p": float(pearson.pvalue) if pearson else np.nan,
            }
        )
    return pd.DataFrame(split_rows), pd.DataFrame(corr_rows)
