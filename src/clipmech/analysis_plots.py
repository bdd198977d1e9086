"""Figures of the binding-failure analyses: superposition vs separability, the binding benchmark,
Grad-CAM rows and t-SNE maps (matplotlib, Agg backend). Each function writes one PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from clipmech.plots import TYPE_COLOURS, save_figure  # noqa: E402
from clipmech.shapes import COLOURS, RGB, SHAPES  # noqa: E402

SCORE_LABELS = {
    "S_ratio": "S (ratio: fraction of units with a_f1 + a_f2 > threshold)",
    "S_joint": "S (joint: mean min(a_f1, a_f2))",
}
SEPARABILITY_LABELS = {
    "D": "centroid distance D",
    "M": "misclassification rate M",
}
SHAPE_MARKERS = {"circle": "o", "triangle": "^", "square": "s", "pentagon": "p", "hexagon": "h"}


def _row(correlations: pd.DataFrame, pair_type: str, score: str, separability: str, method: str) -> pd.Series:
    return correlations[
        (correlations["pair_type"] == pair_type)
        & (correlations["score"] == score)
        & (correlations["separability"] == separability)
        & (correlations["method"] == method)
    ].iloc[0]


def _statistic(row: pd.Series, symbol: str) -> str:
    return f"{symbol} = {row['statistic']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}], p = {row['p_value']:.2g}"


def _fit_line(ax, x: pd.Series, y: pd.Series, label: str, **style) -> None:
    """Least-squares line over the x range (nothing when x is constant or has < 2 points)."""
    if len(x) >= 2 and np.ptp(x) > 0:
        slope, intercept = np.polyfit(x, y, 1)
        xs = np.linspace(x.min(), x.max(), 50)
        ax.plot(xs, slope * xs + intercept, label=label, **style)


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
        The pair table (:func:`clipmech.superposition.superposition_pair_table`).
    correlations : pandas.DataFrame
        Its correlations pooled and per type (:func:`clipmech.superposition.correlation_by_type`).
    separability : {"D", "M"}
    variance_kept : float
        The PCA's kept variance fraction, for the axis labels.
    """
    scores = ("S_ratio", "S_joint")
    spaces = {"full": "full embedding", "pca": f"PCA, {variance_kept:.0%} of variance"}
    fig, axes = plt.subplots(len(spaces), len(scores), figsize=(11, 9), squeeze=False)
    for r, (space, space_label) in enumerate(spaces.items()):
        column = f"{separability}_{space}"
        for c, score in enumerate(scores):
            ax = axes[r, c]
            ok = pairs[np.isfinite(pairs[score]) & np.isfinite(pairs[column])]
            for kind, group in ok.groupby("type", sort=False):
                colour = TYPE_COLOURS.get(kind, "0.4")
                ax.scatter(group[score], group[column], s=22, color=colour, label=f"{kind} pairs ({len(group)})")
                rho = _statistic(_row(correlations, kind, score, column, "spearman"), "rho")
                _fit_line(ax, group[score], group[column], f"within {kind}: {rho}", color=colour, ls="--", lw=1)
            pooled = [
                _statistic(_row(correlations, "all", score, column, method), symbol)
                for method, symbol in (("pearson", "Pearson r"), ("spearman", "Spearman rho"))
            ]
            _fit_line(ax, ok[score], ok[column], f"all {len(ok)} pairs: " + "\n".join(pooled), color="k", lw=1.2)
            ax.set_xlabel(SCORE_LABELS[score], fontsize=8)
            ax.set_ylabel(f"{SEPARABILITY_LABELS[separability]} ({space_label})", fontsize=8)
            ax.legend(fontsize=6, frameon=False, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def binding_accuracy(accuracy: pd.DataFrame, title: str, path: str | Path) -> None:
    """Binding accuracy per task against object count, with confidence intervals and chance 0.5.

    ``accuracy`` is the table of :func:`clipmech.binding.accuracy_by_count`; its all-count rows
    are shown as bars at the right.
    """
    per_count = accuracy[accuracy["n_objects"].astype(str) != "all"]
    overall = accuracy[accuracy["n_objects"].astype(str) == "all"]
    tasks = list(dict.fromkeys(accuracy["task"]))
    fig, (ax, bar_ax) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    for t, task in enumerate(tasks):
        rows = per_count[per_count["task"] == task]
        counts = rows["n_objects"].astype(int).to_numpy()
        yerr = np.vstack([rows["accuracy"] - rows["ci_low"], rows["ci_high"] - rows["accuracy"]])
        ax.errorbar(
            counts + 0.06 * (t - len(tasks) / 2),
            rows["accuracy"],
            yerr=yerr,
            marker="o",
            ms=4,
            capsize=2,
            label=task,
            color=f"C{t}",
        )
        row = overall[overall["task"] == task].iloc[0]
        bar_ax.bar(
            t,
            row["accuracy"],
            color=f"C{t}",
            yerr=[[row["accuracy"] - row["ci_low"]], [row["ci_high"] - row["accuracy"]]],
            capsize=3,
        )
    for axis in (ax, bar_ax):
        axis.axhline(0.5, color="0.5", ls="--", lw=1)
        axis.set_ylim(0, 1.02)
    ax.set_xlabel("objects in the image")
    ax.set_ylabel("accuracy (true description preferred)")
    ax.set_xticks(sorted(per_count["n_objects"].astype(int).unique()))
    ax.legend(fontsize=7, frameon=False)
    bar_ax.set_xticks(np.arange(len(tasks)), tasks, rotation=30, ha="right", fontsize=8)
    bar_ax.set_title("all counts", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def gradcam_rows(
    images_NHW3: np.ndarray,
    maps_NPHW: np.ndarray,
    prompts_NP: list[list[str]],
    scores_NP: np.ndarray,
    failed_N: np.ndarray,
    title: str,
    path: str | Path,
) -> None:
    """Rows of images, each with its Grad-CAM maps for several prompts (the poster's figure).

    Parameters
    ----------
    images_NHW3 : numpy.ndarray, uint8, (N, H, W, 3)
    maps_NPHW : numpy.ndarray, float, (N, P, H, W)
        Maps at the image resolution; each map is scaled to its own maximum.
    prompts_NP : list of lists of str
        Column titles per row.
    scores_NP : numpy.ndarray, (N, P)
        S_t of every prompt, printed under its title.
    failed_N : numpy.ndarray, bool, (N,)
        Whether the row's image prefers the swapped binding; the row label says so.
    """
    n_rows, n_prompts = maps_NPHW.shape[:2]
    fig, axes = plt.subplots(n_rows, n_prompts + 1, figsize=(2.1 * (n_prompts + 1), 2.3 * n_rows), squeeze=False)
    for n in range(n_rows):
        axes[n, 0].imshow(images_NHW3[n])
        axes[n, 0].set_title(
            "binding failed" if failed_N[n] else "binding correct", fontsize=8, color="C3" if failed_N[n] else "C2"
        )
        for p in range(n_prompts):
            ax = axes[n, p + 1]
            ax.imshow(images_NHW3[n])
            peak = float(maps_NPHW[n, p].max())
            ax.imshow(maps_NPHW[n, p] / peak if peak > 0 else maps_NPHW[n, p], cmap="jet", alpha=0.5, vmin=0, vmax=1)
            ax.set_title(f'"{prompts_NP[n][p]}"\nS = {scores_NP[n, p]:.3f}', fontsize=7)
        for ax in axes[n]:
            ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def tsne_shapes(xy_N2: np.ndarray, labels: pd.DataFrame, title: str, path: str | Path) -> None:
    """t-SNE map of the Shapes images in three panels: coloured by the colour and by the shape of
    single-object images (other images in light grey), and by object count (all images)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    single = labels["n_objects"].to_numpy() == 1
    for ax in axes[:2]:
        ax.scatter(*xy_N2[~single].T, s=6, color="0.85", label="2+ objects")
    for colour in COLOURS:
        keep = single & (labels["colour"].to_numpy() == colour)
        axes[0].scatter(*xy_N2[keep].T, s=18, color=np.array(RGB[colour]) / 255, edgecolor="0.3", lw=0.3, label=colour)
    for s, shape in enumerate(SHAPES):
        keep = single & (labels["shape"].to_numpy() == shape)
        axes[1].scatter(*xy_N2[keep].T, s=18, color=f"C{s}", marker=SHAPE_MARKERS[shape], label=shape)
    counts = labels["n_objects"].to_numpy()
    for c, count in enumerate(np.unique(counts)):
        axes[2].scatter(
            *xy_N2[counts == count].T,
            s=10,
            color=plt.cm.viridis(c / max(1, len(np.unique(counts)) - 1)),
            label=f"{count}",
        )
    for ax, heading in zip(
        axes, ("colour (single-object images)", "shape (single-object images)", "objects per image")
    ):
        ax.set_title(heading, fontsize=9)
        ax.legend(fontsize=7, frameon=False, markerscale=1.2, loc="best")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def tsne_classes(xy_N2: np.ndarray, labels_N: np.ndarray, classes: list[str], title: str, path: str | Path) -> None:
    """t-SNE map coloured by class (the shapes paper's Fig. 1 on CIFAR-10)."""
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    for c, name in enumerate(classes):
        ax.scatter(*xy_N2[labels_N == c].T, s=6, color=plt.cm.tab10(c % 10), label=name)
    ax.legend(fontsize=7, frameon=False, markerscale=2, loc="center left", bbox_to_anchor=(1, 0.5))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    save_figure(fig, path)
