"""Attention sink and register neurons (neuron-attention paper A.5-A.6; rule ``find_registers``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from clipmech.figures.style import save_figure


def attention_sink(
    tokens: pd.DataFrame, registers: pd.DataFrame, grid: tuple[int, int], n_neurons: int, title: str, path: str | Path
) -> None:
    """Mean attention of the query over the feature map (sink marked) and the top register neurons."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(8.5, 3.4), layout="constrained")
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
    save_figure(fig, path)
