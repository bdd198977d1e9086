"""Distribution-shift monitoring: concept scores against the true concept share (rule ``monitor_shift``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from clipmech.figures.style import save_figure


def shift_monitoring(splits: pd.DataFrame, correlations: pd.DataFrame, title: str, path: str | Path) -> None:
    """True concept share and mean concept score per split, one panel per concept (paper Fig. 7)."""
    concepts = list(dict.fromkeys(splits["concept"]))
    fig, axes = plt.subplots(1, len(concepts), figsize=(3.6 * len(concepts), 3.2), squeeze=False, layout="constrained")
    for ax, concept in zip(axes[0], concepts):
        rows = splits[splits["concept"] == concept]
        ax.plot(rows["split"], rows["true_share"], marker="o", color="0.3", label="true concept share")
        ax.set_xlabel("split")
        ax.set_xticks(rows["split"])
        ax.set_ylabel("share of images")
        twin = ax.twinx()
        twin.errorbar(
            rows["split"],
            rows["mean_score"],
            yerr=rows["sd_score"],
            marker="s",
            color="C0",
            capsize=3,
            elinewidth=0.8,
            alpha=0.85,
            label="mean concept score ± 1 SD over images",
        )
        twin.set_ylabel("concept score", color="C0")
        twin.tick_params(axis="y", colors="C0")
        corr = correlations[correlations["concept"] == concept].iloc[0]
        ax.set_title(
            f"{concept}: r_pb = {corr['point_biserial_r']:.2f}, split r = {corr['split_pearson_r']:.2f}", fontsize=8
        )
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]  # the same in every panel
    fig.legend(handles=handles, loc="outside lower center", ncol=2, frameon=False, fontsize=8)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
