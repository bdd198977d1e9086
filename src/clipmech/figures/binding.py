"""Binding-benchmark accuracy per object count (rule ``plot_binding``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from clipmech.figures.style import save_figure


def binding_accuracy(accuracy: pd.DataFrame, title: str, path: str | Path) -> None:
    """Binding accuracy per task against object count, with confidence intervals and chance 0.5.

    ``accuracy`` is the table of :func:`clipmech.analyses.binding.accuracy_by_count`; its all-count rows
    are shown as bars at the right.
    """
    per_count = accuracy[accuracy["n_objects"].astype(str) != "all"]
    overall = accuracy[accuracy["n_objects"].astype(str) == "all"]
    tasks = list(dict.fromkeys(accuracy["task"]))
    fig, (ax, bar_ax) = plt.subplots(
        1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [3, 2]}, layout="constrained"
    )
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
    save_figure(fig, path)
