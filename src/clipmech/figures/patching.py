"""Concept-selectivity and intervention figures (methods.md Secs. 8.5-8.6; rules ``plot_concepts`` and
``plot_interventions``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from clipmech.data.shapes import FEATURE_TYPES, FEATURES
from clipmech.figures.style import TYPE_COLOURS, save_figure

TOWER_TITLES = {"visual": "vision tower", "text": "text tower"}


def _layer_label(site: str, layer: int) -> str:
    return "pool" if ".attnpool." in site else str(layer)


def auroc_by_layer(
    table: pd.DataFrame, threshold: float, title: str, path: str | Path, n_concepts: int | None = None
) -> None:
    """Per tower a panel: per layer (site), the box plot of every unit's best AUROC over the concepts,
    the threshold line, and above each box the number of units at or above it (selective for some concept).

    Parameters
    ----------
    table : pandas.DataFrame
        AUROC rows (:data:`clipmech.patching.concepts.AUROC_COLUMNS`), or any rows with ``tower, site,
        layer, unit, auroc`` (each unit's best, :func:`clipmech.stages.plot_concepts.best_aurocs`); units
        whose AUROC is NaN for every concept are left out.
    threshold : float
    title : str
    path : str or pathlib.Path
    n_concepts : int, optional
        The concepts the best AUROC is over, for the axis label; default the table's distinct ``concept``.
    """
    if n_concepts is None:
        n_concepts = table["concept"].nunique()
    best = table.groupby(["tower", "site", "layer", "unit"], sort=False)["auroc"].max().dropna().reset_index()
    towers = [t for t in TOWER_TITLES if t in set(table["tower"])]
    n_sites = [best.loc[best["tower"] == t, "site"].nunique() for t in towers]
    fig, axes = plt.subplots(
        1,
        len(towers),
        figsize=(sum(max(2.5, 0.45 * n + 1.2) for n in n_sites), 3.6),
        squeeze=False,
        layout="constrained",
        width_ratios=[max(2.5, 0.45 * n + 1.2) for n in n_sites],
    )
    for ax, tower_name in zip(axes[0], towers):
        rows = best[best["tower"] == tower_name]
        sites = list(dict.fromkeys(rows["site"]))
        data = [rows.loc[rows["site"] == site, "auroc"].to_numpy() for site in sites]
        labels = [_layer_label(site, int(rows.loc[rows["site"] == site, "layer"].iloc[0])) for site in sites]
        ax.boxplot(data, positions=np.arange(len(sites)), widths=0.6, flierprops={"markersize": 2})
        ax.axhline(threshold, color="C3", ls="--", lw=1)
        for x, values in enumerate(data):
            ax.text(x, 1.01, str(int(np.sum(values >= threshold))), ha="center", va="bottom", fontsize=7, color="C3")
        ax.set_xticks(np.arange(len(sites)), labels)
        ax.set_ylim(0.0, 1.08)
        ax.set_xlabel("layer")
        ax.set_title(f"{TOWER_TITLES[tower_name]}: {len(rows)} units", fontsize=9)
    axes[0, 0].set_ylabel(f"best AUROC over {n_concepts} concepts")
    fig.suptitle(f"{title} (red: units with AUROC >= {threshold:g})", fontsize=9)
    save_figure(fig, path)


def intervention_effects(table: pd.DataFrame, title: str, path: str | Path) -> None:
    """Per scale a panel: per concept, the mean change in cosine similarity to its own text (filled,
    coloured by concept type) and to the unrelated concepts' texts (open grey), with 95 % CIs.

    Parameters
    ----------
    table : pandas.DataFrame
        Rows of :func:`clipmech.patching.interventions.concept_interventions`.
    title : str
    path : str or pathlib.Path
    """
    scales = list(dict.fromkeys(table["scale"]))
    fig, axes = plt.subplots(
        1, max(1, len(scales)), figsize=(5.2 * max(1, len(scales)), 3.6), squeeze=False, layout="constrained"
    )
    colour_of = dict(zip(FEATURES, FEATURE_TYPES))
    for ax, scale in zip(axes[0], scales):
        rows = table[table["scale"] == scale].set_index("concept").reindex(list(FEATURES))
        x = np.arange(len(FEATURES))
        for offset, column, style in ((-0.15, "d_cos_target", "target"), (0.15, "d_cos_unrelated", "unrelated")):
            mean = rows[column].to_numpy(dtype=float)
            err = np.abs(np.stack([mean - rows[f"{column}_low"], rows[f"{column}_high"] - mean]).astype(float))
            colours = [TYPE_COLOURS[colour_of[f]] for f in FEATURES] if style == "target" else ["0.5"] * len(FEATURES)
            ax.errorbar(x + offset, mean, yerr=np.nan_to_num(err), fmt="none", ecolor=colours, elinewidth=1)
            ax.scatter(
                x + offset,
                mean,
                s=18,
                c=colours if style == "target" else "white",
                edgecolors=colours,
                label="concept's text" if style == "target" else "unrelated concepts' texts",
                zorder=3,
            )
        ax.axhline(0.0, color="0.3", lw=0.8)
        ax.set_xticks(x, FEATURES, rotation=90, fontsize=7)
        ax.set_ylabel("mean change in cosine similarity")
        ax.set_title(f"units scaled x{scale:g}", fontsize=9)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, frameon=False, fontsize=7, loc="outside lower center", ncols=2)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
