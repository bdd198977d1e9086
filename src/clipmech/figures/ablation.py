"""Mean-ablation curves (neuron-attention paper Fig. 1; rule ``ablate_components``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from clipmech.figures.style import save_figure

LEVEL_COLOURS = {"pair": "C0", "neuron": "C1", "head": "C2", "neuron_activation": "C3"}


LEVEL_LABELS = {"pair": "pairs", "neuron": "neurons", "head": "heads", "neuron_activation": "neuron activations"}


def ablation_curves(table: pd.DataFrame, chance: dict[str, float], title: str, path: str | Path) -> None:
    """Zero-shot accuracy vs fraction kept (rest mean-ablated), one panel per task (paper Fig. 1):
    one curve per level of :class:`clipmech.decomposition.components.AblationCurves` and the
    ``neuron_activation`` curve."""
    tasks = list(dict.fromkeys(table["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.3 * len(tasks), 3.3), squeeze=False, layout="constrained")
    for ax, task in zip(axes[0], tasks):
        for level, rows in table[table["task"] == task].groupby("level", sort=False):
            ax.plot(
                rows["fraction"],
                rows["accuracy"],
                marker="o",
                ms=3,
                color=LEVEL_COLOURS[level],
                label=LEVEL_LABELS[level],
            )
        ax.axhline(chance[task], color="0.5", ls=":", lw=1, label="chance")
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("fraction kept")
        ax.set_ylim(-0.02, 1.02)
    axes[0, 0].set_ylabel("zero-shot accuracy")
    axes[0, -1].legend(frameon=False, fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
