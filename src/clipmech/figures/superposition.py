"""Superposition vs separability scatter plots (methods.md Sec. 3; rule ``plot_superposition``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from clipmech.figures.style import TYPE_COLOURS, save_figure

SCORE_LABELS = {
    "S_ratio": "S (ratio: fraction of units with a_f1 + a_f2 > threshold)",
    "S_joint": "S (joint: mean min(a_f1, a_f2))",
}


SEPARABILITY_LABELS = {
    "D": "centroid distance D",
    "M": "misclassification rate M",
}


def _row(correlations: pd.DataFrame, pair_type: str, score: str, separability: str, method: str) -> pd.Series:
    return correlations[
        (correlations["pair_type"] == pair_type)
        & (correlations["score"] == score)
        & (correlations["separability"] == separability)
        & (correlations["method"] == method)
    ].iloc[0]


def format_statistic(row: pd.Series, symbol: str) -> str:
    """A correlation with its bootstrap CI and p-value for a legend, saying why a part is undefined.

    Parameters
    ----------
    row : pandas.Series
        A row of :func:`clipmech.analyses.superposition.correlation_table` (``statistic``,
        ``ci_low``, ``ci_high``, ``p_value``, ``n_pairs``).
    symbol : str
        The statistic's name, e.g. ``"rho"``.

    Returns
    -------
    str
        ``"rho = 0.26 [-0.57, 0.87], p = 0.47"``; without a statistic ``"rho undefined (score
        constant)"`` (or ``"(fewer than 3 pairs)"``); with a statistic but no CI (the score is
        constant in most bootstrap resamples) ``"rho = 0.37, no CI (score constant in
        resamples), p = 0.17"``.
    """
    if not np.isfinite(row["statistic"]):
        return f"{symbol} undefined ({'fewer than 3 pairs' if row['n_pairs'] < 3 else 'score constant'})"
    if not (np.isfinite(row["ci_low"]) and np.isfinite(row["ci_high"])):
        return f"{symbol} = {row['statistic']:.2f}, no CI (score constant in resamples), p = {row['p_value']:.2g}"
    return f"{symbol} = {row['statistic']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}], p = {row['p_value']:.2g}"


def _fit_line(ax, x: pd.Series, y: pd.Series, label: str, **style) -> None:
    """Least-squares line over the x range; when x is constant or has < 2 points, only its legend entry."""
    if len(x) >= 2 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        xs = np.linspace(x.min(), x.max(), 50)
        ax.plot(xs, slope * xs + intercept, label=label, **style)
    else:
        ax.plot([], [], label=label, **style)


def superposition_scatter(
    pairs: pd.DataFrame,
    correlations: pd.DataFrame,
    separability: str,
    variance_kept: float,
    title: str,
    path: str | Path,
) -> None:
    """Superposition score against separability, one panel per score and embedding space.

    The poster's "higher superposition -> embeddings closer" (``separability="D"``) and "-> more
    misclassification" (``"M"``) plots: one point per feature pair (coloured by pair type), a
    least-squares line over all pairs with the pooled Pearson / Spearman statistics and bootstrap
    CIs in the legend, and a dashed line per pair type with its within-type Spearman rho.

    Parameters
    ----------
    pairs : pandas.DataFrame
        The pair table (:func:`clipmech.analyses.superposition.superposition_pair_table`).
    correlations : pandas.DataFrame
        Its correlations pooled and per type (:func:`clipmech.analyses.superposition.correlation_by_type`).
    separability : {"D", "M"}
    variance_kept : float
        The PCA's kept variance fraction, for the axis labels.
    """
    scores = ("S_ratio", "S_joint")
    spaces = {"full": "full embedding", "pca": f"PCA, {variance_kept:.0%} of variance"}
    fig, axes = plt.subplots(len(spaces), len(scores), figsize=(11, 9), squeeze=False, layout="constrained")
    for r, (space, space_label) in enumerate(spaces.items()):
        column = f"{separability}_{space}"
        for c, score in enumerate(scores):
            ax = axes[r, c]
            ok = pairs[np.isfinite(pairs[score]) & np.isfinite(pairs[column])]
            for kind, group in ok.groupby("type", sort=False):
                colour = TYPE_COLOURS.get(kind, "0.4")
                ax.scatter(group[score], group[column], s=22, color=colour, label=f"{kind} pairs ({len(group)})")
                rho = format_statistic(_row(correlations, kind, score, column, "spearman"), "rho")
                _fit_line(ax, group[score], group[column], f"within {kind}: {rho}", color=colour, ls="--", lw=1)
            pooled = [
                format_statistic(_row(correlations, "all", score, column, method), symbol)
                for method, symbol in (("pearson", "Pearson r"), ("spearman", "Spearman rho"))
            ]
            _fit_line(ax, ok[score], ok[column], f"all {len(ok)} pairs: " + "\n".join(pooled), color="k", lw=1.2)
            ax.set_xlabel(SCORE_LABELS[score], fontsize=8)
            ax.set_ylabel(f"{SEPARABILITY_LABELS[separability]} ({space_label})", fontsize=8)
            ax.legend(fontsize=6, frameon=False, loc="best")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
