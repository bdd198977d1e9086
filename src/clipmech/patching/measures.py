"""Recovery, Delta logit, bootstrap intervals and circuit sparsity (methods.md Sec. 8).

A pair is kept (:func:`kept_pairs`) when its clean run is right, m_clean > 0 (the correct caption
scores above the foil), and its corruption moves the metric by at least ``min_effect`` logits
(m_clean - m_corrupt >= min_effect). A pair whose clean run is wrong has no correct answer to
recover, and one the corruption barely moves makes R unbounded; both are left out of every mean, and
the tables record how many pairs pass each filter.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

from clipmech.patching.engine import SweepResult


def clean_right(result: SweepResult) -> np.ndarray:
    """Pairs whose clean run prefers the correct caption, m_clean > 0: bool, (Q,)."""
    return result.m_clean_Q > 0


def kept_pairs(result: SweepResult, min_effect: float) -> np.ndarray:
    """Pairs whose clean run is right (:func:`clean_right`) and whose corruption lowers the metric by at
    least ``min_effect``: bool, (Q,)."""
    return clean_right(result) & ((result.m_clean_Q - result.m_corrupt_Q) >= min_effect)


def recovery(result: SweepResult) -> np.ndarray:
    """R = (m_patched - m_corrupt) / (m_clean - m_corrupt) per pair and patch set: float64, (Q, K)."""
    effect_Q = result.m_clean_Q - result.m_corrupt_Q
    return (result.m_patched_QK - result.m_corrupt_Q[:, None]) / effect_Q[:, None]


def delta_logit(result: SweepResult) -> np.ndarray:
    """Delta logit = m_patched - m_base (the unpatched run the patch went into): float64, (Q, K)."""
    return result.m_patched_QK - result.m_base_Q[:, None]


def mean_ci(values_QK: np.ndarray, n_resamples: int, seed: int, level: float = 0.95):
    """Mean over pairs and its percentile-bootstrap interval, per column (``scipy.stats.bootstrap``).

    Parameters
    ----------
    values_QK : numpy.ndarray, float64, (Q, K)
    n_resamples : int
    seed : int
        Seeds ``numpy.random.default_rng`` for the resampling.

    Returns
    -------
    mean_K, low_K, high_K : numpy.ndarray, float64, (K,)
        NaN for every column when Q = 0; the interval is NaN when Q < 2.
    """
    n_pairs, n_cols = values_QK.shape
    if n_pairs == 0:
        nan = np.full(n_cols, np.nan)
        return nan, nan.copy(), nan.copy()
    mean = values_QK.mean(axis=0)
    if n_pairs < 2:
        return mean, np.full(n_cols, np.nan), np.full(n_cols, np.nan)
    ci = stats.bootstrap(
        (values_QK,),
        np.mean,
        axis=0,
        vectorized=True,
        n_resamples=n_resamples,
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    return mean, np.asarray(ci.low, dtype=np.float64), np.asarray(ci.high, dtype=np.float64)


def prefix_sizes(n_components: int, n_points: int) -> np.ndarray:
    """Sizes of the restored prefixes of a circuit curve: about ``n_points`` from 1 to all, int64.

    Every size up to ``n_points``; beyond, geometrically spaced sizes (unique) ending at ``n_components``.
    """
    if n_components <= n_points:
        return np.arange(1, n_components + 1)
    return np.unique(np.round(np.geomspace(1, n_components, n_points)).astype(np.int64))


def crossing(sizes_G: np.ndarray, r_G: np.ndarray, threshold: float, recovery_at: Callable[[int], float]) -> int | None:
    """The prefix size at which a recovery curve crosses ``threshold``, exact (not read off the grid).

    The grid curve brackets the crossing: the first grid size whose mean R reaches ``threshold``, and
    the grid size before it (0 before the first), whose mean R does not. Bisection on the prefix size
    inside that bracket, calling ``recovery_at`` at the midpoint, narrows it to two adjacent sizes k - 1
    and k with R(k - 1) < threshold <= R(k), and returns k. Where the mean R rises monotonically inside
    the bracket (restoring more of the clean run), k is the smallest prefix that reaches the threshold.

    Parameters
    ----------
    sizes_G : numpy.ndarray, int64, (G,)
        Increasing prefix sizes of the curve (:func:`prefix_sizes`).
    r_G : numpy.ndarray, float64, (G,)
        Mean R at each of them (NaN counts as below the threshold).
    threshold : float
    recovery_at : callable
        ``recovery_at(k) -> float``: the mean R of the prefix of size k, computed the way ``r_G`` was;
        called about log2 of the bracket's width times, never at a grid size.

    Returns
    -------
    int or None
        k; None when no grid size reaches the threshold.
    """
    reached = np.flatnonzero(r_G >= threshold)
    if not reached.size:
        return None
    first = reached[0]
    low, high = (int(sizes_G[first - 1]) if first else 0), int(sizes_G[first])
    while high - low > 1:
        middle = (low + high) // 2
        if recovery_at(middle) >= threshold:
            high = middle
        else:
            low = middle
    return high
