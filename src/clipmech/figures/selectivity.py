"""Neuron-selectivity figures (shapes paper, Algorithm 1; rule ``plot_selectivity``): entropy per layer against the null, top images with affinities, patch heatmaps."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from clipmech.data.shapes import FEATURE_TYPES, FEATURES
from clipmech.figures.style import TYPE_COLOURS, save_figure


def entropy_by_layer(units: pd.DataFrame, null_Z: np.ndarray, path: str | Path) -> None:
    """Entropy distribution of the units of every layer against the random-subset null band.

    The hatched red band spans the null's 5th-95th percentiles (drawn above the violins, so it
    stays visible where it overlaps them) and the dashed line its 1st percentile; the dotted line
    is the maximum ln 16. The legend sits right of the axes, clear of the data.
    """
    layers = np.sort(units["layer"].unique())
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(layers) + 2) + 1.8, 3.8), layout="constrained")
    data = [units.loc[units["layer"] == layer, "entropy"].to_numpy() for layer in layers]
    ax.violinplot(data, positions=np.arange(len(layers)), showmedians=True, widths=0.8)
    low, high = np.percentile(null_Z, [5, 95])
    ax.axhspan(
        low, high, facecolor="C3", alpha=0.25, edgecolor="C3", hatch="///", lw=0.8, zorder=3, label="null 5-95 %"
    )
    ax.axhline(np.percentile(null_Z, 1), color="C3", ls="--", lw=1, zorder=3, label="null 1 %")
    ax.axhline(np.log(len(FEATURES)), color="0.3", ls=":", lw=1, zorder=3, label=f"maximum ln {len(FEATURES)}")
    ax.set_xticks(np.arange(len(layers)), [str(layer) for layer in layers])
    ax.set_xlabel("layer")
    ax.set_ylabel("entropy of top-k affinities (nats)")
    ax.set_title(
        f"Entropy of the feature affinities of {len(units)} units per layer vs a random-subset null ({len(null_Z)} draws)",
        fontsize=9,
    )
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    save_figure(fig, path)


def top_images_with_affinity(
    units: pd.DataFrame, topk: pd.DataFrame, images_NHW3: np.ndarray, n_units: int, n_images: int, path: str | Path
) -> None:
    """For the lowest-entropy units: their top-activating images (rank order, framed) and their
    feature-affinity bars, one row per unit (the shapes paper's poster figure)."""
    n_units = min(n_units, len(units))
    cols = min(n_images, 8)
    rows = int(np.ceil(n_images / cols))
    fig = plt.figure(figsize=(cols * 0.9 + 5.5, n_units * max(2.6, rows * 1.0 + 0.9)), layout="constrained")
    for subfig, (_, unit) in zip(np.atleast_1d(fig.subfigures(n_units, 1)), units.head(n_units).iterrows()):
        grid = subfig.add_gridspec(rows, cols + 6)
        ranked = topk[(topk["layer"] == unit["layer"]) & (topk["neuron"] == unit["neuron"])].sort_values("rank")
        for i, image in enumerate(ranked["image"].to_numpy()[:n_images]):
            ax = subfig.add_subplot(grid[i // cols, i % cols])
            ax.imshow(images_NHW3[image])
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("0.6")
        ax = subfig.add_subplot(grid[:, cols + 1 :])
        values = unit[[f"a_{feature}" for feature in FEATURES]].to_numpy(dtype=float)
        ax.bar(np.arange(len(FEATURES)), values, color=[TYPE_COLOURS[t] for t in FEATURE_TYPES])
        ax.set_xticks(np.arange(len(FEATURES)), FEATURES, rotation=90, fontsize=6)
        ax.set_ylim(0, max(0.3, float(np.max(values)) * 1.1))
        ax.set_ylabel("affinity", fontsize=7)
        ax.tick_params(axis="y", labelsize=6)
        subfig.suptitle(
            f"layer {unit['layer']} neuron {unit['neuron']}: entropy {unit['entropy']:.2f} nats, "
            f"top features {unit['top1']}, {unit['top2']}, {unit['top3']}",
            fontsize=8,
        )
    save_figure(fig, path)


def patch_heatmaps(
    images_with: np.ndarray,
    maps_with: np.ndarray,
    images_without: np.ndarray,
    maps_without: np.ndarray,
    title: str,
    path: str | Path,
) -> None:
    """Patch-wise activation of one unit overlaid on images with and without its features.

    ``maps_*`` are (n, rows, cols) patch grids; one colour scale is shared by all panels so high
    (red/yellow) and low (blue) activations compare across images.
    """
    images = list(images_with) + list(images_without)
    maps = list(maps_with) + list(maps_without)
    labels = ["with"] * len(images_with) + ["without"] * len(images_without)
    vmin, vmax = float(np.min(maps)), float(np.max(maps))
    fig, axes = plt.subplots(
        2, len(images), figsize=(1.6 * len(images) + 0.8, 3.6), squeeze=False, layout="constrained"
    )
    for i, (image, patch_map, label) in enumerate(zip(images, maps, labels)):
        axes[0, i].imshow(image)
        axes[0, i].set_title(label, fontsize=8)
        size = image.shape[0]
        axes[1, i].imshow(image, alpha=0.35)
        im = axes[1, i].imshow(patch_map, cmap="jet", vmin=vmin, vmax=vmax, alpha=0.65, extent=(0, size, size, 0))
        for ax in axes[:, i]:
            ax.set_axis_off()
    fig.colorbar(im, ax=axes[1, :].tolist(), fraction=0.02, pad=0.01).set_label("activation (shared scale)", fontsize=7)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
