"""The training loss curve with the zero-shot metrics (rule ``plot_training``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from clipmech.figures.style import save_figure


def loss_curve(losses: pd.DataFrame, metrics: dict, path: str | Path) -> None:
    """Training loss per step (raw and a 50-step moving average) with the zero-shot metrics."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(losses["step"], losses["loss"], color="0.75", lw=0.6, label="InfoNCE loss")
    smooth = losses["loss"].rolling(50, min_periods=1).mean()
    ax.plot(losses["step"], smooth, color="C0", lw=1.5, label="50-step mean")
    zs = metrics["zero_shot"]
    ax.set_title(
        f"{metrics['model']}: colour {zs['colour']:.2f}, shape {zs['shape']:.2f}, "
        f"position {zs['position']:.2f}, binding {zs['binding_colour_swap']:.2f}",
        fontsize=9,
    )
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(frameon=False)
    save_figure(fig, path)
