"""Figures of the neuron x attention-head decomposition (matplotlib, Agg). Each function writes one PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from clipmech import shapes  # noqa: E402
from clipmech.plots import save_figure  # noqa: E402

LEVEL_COLOURS = {"pair": "C0", "neuron": "C1", "head": "C2", "neuron_activation": "C3"}
LEVEL_LABELS = {"pair": "pairs", "neuron": "neurons", "head": "heads", "neuron_activation": "neuron activations"}
SEGMENTATION_COLOURS = np.array(
    [[255, 255, 255], [228, 26, 28], [55, 126, 184], [77, 175, 74], [152, 78, 163], [255, 127, 0], [166, 86, 40], [247, 129, 191]],
    dtype=np.uint8,
)


def component_norms(scores: dict[str, np.ndarray], rank_one: pd.DataFrame, title: str, path: str | Path) -> None:
    """Cumulative share of the summed mean norms vs fraction of components (sorted), per level,
    and the |cos| of the top pairs' first principal component with their directions."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9, 3.6))
    for level, score in scores.items():
        sorted_ = np.sort(np.ravel(score))[::-1]
        share = np.cumsum(sorted_) / sorted_.sum()
        ax.plot(np.arange(1, len(share) + 1) / len(share), share, color=LEVEL_COLOURS[level], label=f"{level}s ({len(share)})")
    ax.set_xlabel("fraction of components (by mean norm)")
    ax.set_ylabel("share of summed mean norm")
    ax.legend(frameon=False, fontsize=8)
    cos = rank_one["cos_pc_u"].dropna()
    bx.hist(cos, bins=np.linspace(min(0.99, cos.min()), 1.0, 30), color="C0")
    bx.set_xlabel("|cos(first PC, u)| of the top pairs")
    bx.set_ylabel("pairs")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def ablation_curves(table: pd.DataFrame, chance: dict[str, float], title: str, path: str | Path) -> None:
    """Zero-shot accuracy vs fraction kept (rest mean-ablated), one panel per task (paper Fig. 1):
    one curve per level of :func:`clipmech.component_analysis.ablation_curves` and the
    ``neuron_activation`` curve."""
    tasks = list(dict.fromkeys(table["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.3 * len(tasks), 3.3), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for level, rows in table[table["task"] == task].groupby("level", sort=False):
            ax.plot(rows["fraction"], rows["accuracy"], marker="o", ms=3, color=LEVEL_COLOURS[level], label=LEVEL_LABELS[level])
        ax.axhline(chance[task], color="0.5", ls=":", lw=1, label="chance")
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("fraction kept")
        ax.set_ylim(-0.02, 1.02)
    axes[0, 0].set_ylabel("zero-shot accuracy")
    axes[0, -1].legend(frameon=False, fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def sparse_accuracy(table: pd.DataFrame, title: str, path: str | Path) -> None:
    """Zero-shot accuracy vs m, the number of words per direction (paper Fig. 2), per task.

    Solid: m-sparse text directions; dashed: the same components with exact directions (pairs)
    or exact rank-1 PCs (neurons); dotted: the unablated model.
    """
    tasks = list(dict.fromkeys(table["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.3 * len(tasks), 3.3), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = table[table["task"] == task]
        for level in ("pair", "neuron"):
            sparse = rows[(rows["level"] == level) & (rows["directions"] == "sparse")]
            ax.plot(sparse["m"], sparse["accuracy"], marker="o", ms=3, color=LEVEL_COLOURS[level], label=f"{level}s")
            exact = rows[(rows["level"] == level) & (rows["directions"] == "exact")]["accuracy"]
            ax.axhline(float(exact.iloc[0]), color=LEVEL_COLOURS[level], ls="--", lw=1)
        ax.axhline(float(rows[rows["level"] == "model"]["accuracy"].iloc[0]), color="0.3", ls=":", lw=1, label="model")
        ax.set_xscale("log", base=2)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("m (words per direction)")
        ax.set_ylim(-0.02, 1.02)
    axes[0, 0].set_ylabel("zero-shot accuracy")
    axes[0, 0].legend(frameon=False, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def class_heatmaps(images: np.ndarray, logits_NKHW: np.ndarray, classes: Sequence[str], title: str, path: str | Path) -> None:
    """Per-class logit maps of one method on a few images (rows), classes in columns; one colour
    scale per image, so the classes of a row compare (the argmax picks the brightest)."""
    n, k = logits_NKHW.shape[:2]
    fig, axes = plt.subplots(n, k + 1, figsize=(1.5 * (k + 1), 1.5 * n + 0.5), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(images[i])
        low, high = float(logits_NKHW[i].min()), float(logits_NKHW[i].max())
        for c in range(k):
            axes[i, c + 1].imshow(logits_NKHW[i, c], cmap="magma", vmin=low, vmax=high)
            if i == 0:
                axes[i, c + 1].set_title(classes[c], fontsize=8)
    for ax in axes.ravel():
        ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
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
    fig, axes = plt.subplots(n * len(blocks), len(columns) + 1, figsize=(1.6 * (len(columns) + 1), 1.6 * n * len(blocks) + 0.9), squeeze=False)
    handles, names = [], []
    for b, block in enumerate(blocks):
        classes = block["classes"]
        rgb = [shapes.RGB.get(name) for name in classes]
        palette = np.array([(255, 255, 255), *rgb], dtype=np.uint8) if all(rgb) else SEGMENTATION_COLOURS[: len(classes) + 1]
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
        fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.04 if handles else 0, 1, 1))
    save_figure(fig, path)


def attention_sink(tokens: pd.DataFrame, registers: pd.DataFrame, grid: tuple[int, int], n_neurons: int, title: str, path: str | Path) -> None:
    """Mean attention of the query over the feature map (sink marked) and the top register neurons."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(8.5, 3.4))
    spatial = tokens[tokens["kind"] == "spatial"]
    grid_map = spatial["mean_attention"].to_numpy().reshape(grid)
    image = ax.imshow(grid_map, cmap="viridis")
    fig.colorbar(image, ax=ax, fraction=0.046)
    sink = tokens[tokens["is_sink"]].iloc[0]
    mean_token = float(tokens.loc[tokens["kind"] == "mean", "mean_attention"].iloc[0])
    if sink["kind"] == "spatial":
        ax.scatter([sink["col"]], [sink["row"]], marker="x", color="red", s=60)
    ax.set_title(f"mean attention (mean token {mean_token:.3f}); sink: token {int(sink['token'])}", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    top = registers.head(n_neurons)
    bx.bar(np.arange(len(top)), top["abs_change"], color="C3")
    bx.set_xticks(np.arange(len(top)), [str(n) for n in top["neuron"]], rotation=90, fontsize=7)
    bx.set_xlabel("neuron (zeroed)")
    bx.set_ylabel("mean |change of sink attention|")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def shift_monitoring(splits: pd.DataFrame, correlations: pd.DataFrame, title: str, path: str | Path) -> None:
    """True concept share and mean concept score per split, one panel per concept (paper Fig. 7)."""
    concepts = list(dict.fromkeys(splits["concept"]))
    fig, axes = plt.subplots(1, len(concepts), figsize=(3.6 * len(concepts), 3.2), squeeze=False)
    for ax, concept in zip(axes[0], concepts):
        rows = splits[splits["concept"] == concept]
        ax.plot(rows["split"], rows["true_share"], marker="o", color="0.3", label="true share")
        ax.set_xlabel("split")
        ax.set_ylabel("share of images")
        twin = ax.twinx()
        twin.errorbar(rows["split"], rows["mean_score"], yerr=rows["sd_score"], marker="s", color="C0", capsize=2, label="score")
        twin.set_ylabel("concept score", color="C0")
        corr = correlations[correlations["concept"] == concept].iloc[0]
        ax.set_title(f"{concept}: r_pb = {corr['point_biserial_r']:.2f}, split r = {corr['split_pearson_r']:.2f}", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
