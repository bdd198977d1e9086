"""Distribution-shift monitoring: concept scores against the true concept share (rule ``monitor_shift``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from clipmech.figures.style import save_figure


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
