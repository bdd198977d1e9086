"""MiCLIP figures (methods.md Sec. 9): encoder training curves (MiCLIP Fig. 7's role), Delta Acc per method
(Table 2 as bars) and description accuracy per method (Table 1 as bars)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from clipmech.figures.style import save_figure


def training_curves(log: pd.DataFrame, title: str, path: str | Path) -> None:
    """Loss per step, mean +- sd over seeds, one colour per loss variant: the training batches' loss
    (solid) and the held-out loss (dashed).

    Parameters
    ----------
    log : pandas.DataFrame
        Columns ``loss`` (variant), ``seed``, ``step``, ``train``, ``heldout`` (nats).
    """
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for i, (loss, group) in enumerate(log.groupby("loss", sort=False)):
        for column, style in (("train", "-"), ("heldout", "--")):
            stats = group.groupby("step")[column].agg(["mean", "std"]).fillna(0.0)
            label = f"{loss}, {'held out' if column == 'heldout' else 'training'} ({group['seed'].nunique()} seeds)"
            ax.plot(stats.index, stats["mean"], color=f"C{i}", ls=style, lw=1.2, label=label)
            ax.fill_between(
                stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"], color=f"C{i}", alpha=0.2
            )
    ax.set_xlabel("step")
    ax.set_ylabel("alignment loss (nats)")
    ax.legend(frameon=False, fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def delta_bars(table: pd.DataFrame, title: str, path: str | Path) -> None:
    """Delta Acc (percentage points), mean +- sd over seeds, per method; one panel per intervention and beta.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`clipmech.miclip.tables.delta_table` rows.
    """
    panels = list(table.groupby(["intervention", "beta"], sort=False))
    if not panels:  # a natural-image dataset: no interventions run (methods.md Sec. 9.8)
        fig, ax = plt.subplots(figsize=(4.5, 2.0))
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            "no interventions on this dataset\n(natural images: methods.md Sec. 9.8)",
            ha="center",
            va="center",
        )
        fig.suptitle(title, fontsize=10)
        save_figure(fig, path)
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), squeeze=False)
    for ax, ((intervention, beta), block) in zip(axes[0], panels):
        x = np.arange(len(block))
        ax.bar(x, block["delta_acc_mean"], yerr=block["delta_acc_sd"], color=[f"C{i}" for i in x], capsize=3)
        ax.axhline(0, color="0.3", lw=0.8)
        ax.set_xticks(x, block["method"], rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{intervention} beta = {beta:g} ({block['effect'].iloc[0]})", fontsize=9)
    axes[0][0].set_ylabel("Delta Acc (percentage points)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def description_bars(summary: pd.DataFrame, title: str, path: str | Path) -> None:
    """Top-1 description accuracy and CLIP scores (Shapes concepts, words) per method, mean +- sd over seeds.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`clipmech.miclip.tables.summarise_descriptions` rows.
    """
    columns = [
        ("accuracy", "top-1 accuracy"),
        ("clip_score_shapes", "CLIP score, concepts"),
        ("clip_score_words", "CLIP score, words"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
    x = np.arange(len(summary))
    for ax, (column, label) in zip(axes, columns):
        ax.bar(
            x,
            summary[f"{column}_mean"].fillna(0.0),
            yerr=summary[f"{column}_sd"].fillna(0.0),
            color=[f"C{i}" for i in x],
            capsize=3,
        )
        ax.set_xticks(x, summary["method"], rotation=60, ha="right", fontsize=7)
        ax.set_title(label, fontsize=9)
    axes[0].set_ylim(0, 1)
    fig.suptitle(f"{title} (units: {int(summary['n_units'].iloc[0])}; missing bars: not applicable)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
