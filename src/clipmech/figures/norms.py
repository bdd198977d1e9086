"""Contribution norms of the neuron x head decomposition (methods.md Sec. 5; rule ``decompose_attnpool``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from clipmech.figures.ablation import LEVEL_COLOURS
from clipmech.figures.style import save_figure


def cos_bins(cos: np.ndarray, n_bins: int = 29) -> np.ndarray:
    """Histogram edges for |cos| values near 1: from min(0.99, smallest) to max(1, largest).

    The upper edge includes the largest value, so |cos| a rounding error above 1 (1 + 4e-16 for a
    pair whose PC equals its direction) stays in the last bin.

    Parameters
    ----------
    cos : ndarray
        The finite values to bin (at least one).
    n_bins : int

    Returns
    -------
    ndarray, shape (n_bins + 1,)
    """
    return np.linspace(min(0.99, float(np.min(cos))), max(1.0, float(np.max(cos))), n_bins + 1)


def component_norms(scores: dict[str, np.ndarray], rank_one: pd.DataFrame, title: str, path: str | Path) -> None:
    """Cumulative share of the summed mean norms vs fraction of components (sorted), per level,
    and the |cos| of the top pairs' first principal component with their directions."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
    for level, score in scores.items():
        sorted_ = np.sort(np.ravel(score))[::-1]
        share = np.cumsum(sorted_) / sorted_.sum()
        ax.plot(
            np.arange(1, len(share) + 1) / len(share),
            share,
            color=LEVEL_COLOURS[level],
            label=f"{level}s ({len(share)})",
        )
    ax.set_xlabel("fraction of components (by mean norm)")
    ax.set_ylabel("share of summed mean norm")
    ax.legend(frameon=False, fontsize=8)
    cos = rank_one["cos_pc_u"].dropna()
    bx.hist(cos, bins=cos_bins(cos.to_numpy()), color="C0")
    bx.set_xlabel("|cos(first PC, u)| of the top pairs")
    bx.set_ylabel("pairs")
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
