"""Training curves of a top-k SAE (rule ``plot_sae_training``; methods.md Sec. 7)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from clipmech.figures.style import save_figure


def training_curves(log: pd.DataFrame, title: str, path: str | Path) -> None:
    """FVU (log scale, raw and a moving average over 2 % of the steps), L0 and the dead fraction per
    training step, against the tokens seen.

    Parameters
    ----------
    log : pandas.DataFrame
        The per-step log of :func:`clipmech.sae.train.train_sae` (columns ``tokens``, ``fvu``, ``l0``,
        ``dead_fraction``).
    title : str
    path : path
        The PNG written.
    """
    tokens = log["tokens"]
    window = max(1, len(log) // 50)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    fvu_ax, l0_ax, dead_ax = axes
    fvu_ax.plot(tokens, log["fvu"], color="0.75", lw=0.6, label="batch")
    fvu_ax.plot(
        tokens, log["fvu"].rolling(window, min_periods=1).mean(), color="C0", lw=1.5, label=f"{window}-step mean"
    )
    fvu_ax.set_yscale("log")
    fvu_ax.set_ylabel("FVU")
    fvu_ax.legend(frameon=False, fontsize=8)
    l0_ax.plot(tokens, log["l0"], color="C1", lw=1)
    l0_ax.set_ylabel("L0 (active latents per token)")
    l0_ax.set_ylim(bottom=0)
    dead_ax.plot(tokens, log["dead_fraction"], color="C3", lw=1)
    dead_ax.set_ylabel("dead fraction")
    dead_ax.set_ylim(0, max(0.05, float(log["dead_fraction"].max()) * 1.1))
    for ax in axes:
        ax.set_xlabel("training tokens")
    final = log.iloc[-max(1, len(log) // 10) :]
    fig.suptitle(
        f"{title}: final FVU {final['fvu'].mean():.3f}, L0 {final['l0'].mean():.1f}, "
        f"dead {log['dead_fraction'].iloc[-1]:.3f}",
        fontsize=10,
    )
    fig.tight_layout()
    save_figure(fig, path)
