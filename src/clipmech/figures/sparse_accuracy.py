"""Zero-shot accuracy with m-sparse text directions (neuron-attention paper Fig. 2; rule ``decompose_text``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.lines import Line2D

from clipmech.figures.ablation import LEVEL_COLOURS
from clipmech.figures.style import save_figure


def sparse_accuracy(table: pd.DataFrame, title: str, path: str | Path) -> None:
    """Zero-shot accuracy vs m, the number of words per direction (paper Fig. 2), per task.

    Solid: m-sparse text directions; dashed: the same components with exact directions (pairs)
    or exact rank-1 PCs (neurons); dotted: the unablated model.
    """
    tasks = list(dict.fromkeys(table["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.3 * len(tasks), 3.3), squeeze=False, layout="constrained")
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
    handles, _ = axes[0, 0].get_legend_handles_labels()
    handles += [
        Line2D([], [], color="0.3", lw=1.5, marker="o", ms=3, label="m-sparse directions"),
        Line2D([], [], color="0.3", ls="--", lw=1, label="exact directions / rank-1 PCs"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False, fontsize=8)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
