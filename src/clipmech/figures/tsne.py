"""t-SNE maps of image embeddings (rules ``plot_tsne_shapes`` and ``plot_tsne_cifar10``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from clipmech.data.shapes import COLOURS, RGB, SHAPES
from clipmech.figures.style import save_figure

SHAPE_MARKERS = {"circle": "o", "triangle": "^", "square": "s", "pentagon": "p", "hexagon": "h"}


def tsne_shapes(xy_N2: np.ndarray, labels: pd.DataFrame, title: str, path: str | Path) -> None:
    """t-SNE map of the Shapes images in three panels: coloured by the colour and by the shape of
    single-object images (other images in light grey), and by object count (all images)."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), layout="constrained")
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
