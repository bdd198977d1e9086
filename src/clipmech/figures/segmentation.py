"""Segmentation heatmaps and predicted masks (methods.md Sec. 5; rule ``plot_segmentation``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from clipmech.data import shapes
from clipmech.figures.style import save_figure

SEGMENTATION_COLOURS = np.array(
    [
        [255, 255, 255],
        [228, 26, 28],
        [55, 126, 184],
        [77, 175, 74],
        [152, 78, 163],
        [255, 127, 0],
        [166, 86, 40],
        [247, 129, 191],
    ],
    dtype=np.uint8,
)


def class_heatmaps(
    images: np.ndarray, logits_NKHW: np.ndarray, classes: Sequence[str], title: str, path: str | Path
) -> None:
    """Per-class logit maps of one method on a few images (rows), classes in columns; one colour
    scale per image, so the classes of a row compare (the argmax picks the brightest), with a
    colour bar per row labelled with the logit."""
    n, k = logits_NKHW.shape[:2]
    fig, axes = plt.subplots(
        n, k + 1, figsize=(1.5 * (k + 1) + 0.9, 1.5 * n + 0.5), squeeze=False, layout="constrained"
    )
    for i in range(n):
        axes[i, 0].imshow(images[i])
        low, high = float(logits_NKHW[i].min()), float(logits_NKHW[i].max())
        for c in range(k):
            im = axes[i, c + 1].imshow(logits_NKHW[i, c], cmap="magma", vmin=low, vmax=high)
            if i == 0:
                axes[i, c + 1].set_title(classes[c], fontsize=8)
        bar = fig.colorbar(im, ax=axes[i, 1:].tolist(), fraction=0.03, pad=0.01)
        bar.set_label("class logit", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def predicted_masks(images: np.ndarray, blocks: Sequence[dict], title: str, path: str | Path) -> None:
    """Images, ground truth and each method's predicted labels, one block of rows per task.

    Each block is a dict with ``task``, ``classes``, ``gt`` (n, H, W) and ``preds`` {method:
    (n, H, W)}. Background (0) is white; colour classes are drawn in their own colour, other
    classes from a fixed palette listed in the figure's legend.
    """
    n = len(images)
    methods = list(blocks[0]["preds"])
    columns = ["ground truth", *methods]
    fig, axes = plt.subplots(
        n * len(blocks),
        len(columns) + 1,
        figsize=(1.6 * (len(columns) + 1), 1.6 * n * len(blocks) + 0.9),
        squeeze=False,
        layout="constrained",
    )
    handles, names = [], []
    for b, block in enumerate(blocks):
        classes = block["classes"]
        rgb = [shapes.RGB.get(name) for name in classes]
        palette = (
            np.array([(255, 255, 255), *rgb], dtype=np.uint8) if all(rgb) else SEGMENTATION_COLOURS[: len(classes) + 1]
        )
        if not all(rgb):
            handles += [plt.Rectangle((0, 0), 1, 1, color=palette[k + 1] / 255) for k in range(len(classes))]
            names += list(classes)
        for i in range(n):
            row = axes[b * n + i]
            row[0].imshow(images[i])
            for j, labels in enumerate([block["gt"], *(block["preds"][m] for m in methods)]):
                row[j + 1].imshow(palette[labels[i]])
        axes[b * n, 0].set_title(f"{block['task']} task", fontsize=8)
        for j, name in enumerate(columns):
            axes[b * n, j + 1].set_title(name, fontsize=8)
    for ax in axes.ravel():
        ax.set_axis_off()
    if handles:
        fig.legend(handles, names, loc="outside lower center", ncol=len(names), fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
