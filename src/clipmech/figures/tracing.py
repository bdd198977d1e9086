"""Causal-tracing figures: recovery maps, head maps and circuit-sparsity curves (methods.md Sec. 8; rule
``plot_patching``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from clipmech.figures.style import save_figure

#: Families drawn as layer x position maps, in column order.
MAP_FAMILIES = ("resid_pre", "attn_out", "mlp_out", "pool_token")


def _grid(table: pd.DataFrame, row: str, column: str) -> tuple[np.ndarray, list, list]:
    """Mean recovery as a (rows, columns) array over the row and column labels (a missing label: '-')."""
    labels = table.assign(_r=table[row].fillna(-1).astype(int), _c=table[column].fillna(-1).astype(int))
    rows, cols = sorted(labels["_r"].unique()), sorted(labels["_c"].unique())
    grid = np.full((len(rows), len(cols)), np.nan)
    for r_value, c_value, value in zip(labels["_r"], labels["_c"], labels["recovery"]):
        grid[rows.index(r_value), cols.index(c_value)] = value
    return grid, ["pool" if r < 0 else r for r in rows], ["all" if c < 0 else c for c in cols]


def _heatmap(ax, grid: np.ndarray, rows: list, cols: list, title: str, xlabel: str, ylabel: str):
    image = ax.imshow(grid, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xlabel(xlabel, fontsize=7)
    ax.set_ylabel(ylabel, fontsize=7)
    ax.set_yticks(range(len(rows)), [str(r) for r in rows], fontsize=6)
    step = max(1, len(cols) // 12)
    ax.set_xticks(range(0, len(cols), step), [str(c) for c in cols[::step]], fontsize=6)
    return image


def recovery_maps(recovery: pd.DataFrame, tower: str, title: str, path: str | Path) -> None:
    """Layer x token position maps of denoising recovery R, a row per corruption, a column per family
    (the ROME picture; token 0 is the class / mean token, text tokens from start of text).

    Parameters
    ----------
    recovery : pandas.DataFrame
        ``recovery.tsv`` of rule ``patch_components``.
    tower : {"visual", "text"}
    """
    table = recovery[(recovery["tower"] == tower) & (recovery["direction"] == "denoising")]
    families = [f for f in MAP_FAMILIES if f in set(table["family"])]
    corruptions = list(dict.fromkeys(table["corruption"]))
    if not families or not corruptions:
        raise ValueError(f"recovery table has no denoising position components of the {tower} tower")
    fig, axes = plt.subplots(
        len(corruptions), len(families), figsize=(3.6 * len(families), 1.6 + 1.2 * len(corruptions)),
        squeeze=False, layout="constrained",
    )  # fmt: skip
    for i, corruption in enumerate(corruptions):
        for j, family in enumerate(families):
            part = table[(table["corruption"] == corruption) & (table["family"] == family)]
            grid, rows, cols = _grid(part, "layer", "position")
            n_pairs = int(part["n_pairs"].iloc[0]) if len(part) else 0
            image = _heatmap(
                axes[i, j], grid, rows, cols, f"{corruption}: {family} (n = {n_pairs})", "token position", "layer"
            )
    fig.colorbar(image, ax=axes, shrink=0.6, label="recovery R")
    fig.suptitle(f"{title}: {tower} tower, denoising recovery", fontsize=10)
    save_figure(fig, path)


def head_maps(recovery: pd.DataFrame, title: str, path: str | Path) -> None:
    """Layer x head maps of denoising recovery R of every tower (rows) and corruption (columns); the
    CLIP-ResNet attention-pool heads form one row labelled 'pool'."""
    table = recovery[recovery["family"].isin(["head", "pool_head"]) & (recovery["direction"] == "denoising")]
    towers = list(dict.fromkeys(table["tower"]))
    corruptions = list(dict.fromkeys(table["corruption"]))
    if not towers:
        raise ValueError("recovery table has no denoising head components")
    fig, axes = plt.subplots(
        len(towers), len(corruptions), figsize=(2.2 * len(corruptions) + 1, 1.6 + 1.4 * len(towers)),
        squeeze=False, layout="constrained",
    )  # fmt: skip
    for i, tower in enumerate(towers):
        for j, corruption in enumerate(corruptions):
            part = table[(table["tower"] == tower) & (table["corruption"] == corruption)]
            grid, rows, cols = _grid(part, "layer", "head")
            image = _heatmap(axes[i, j], grid, rows, cols, f"{tower}: {corruption}", "head", "layer")
    fig.colorbar(image, ax=axes, shrink=0.6, label="recovery R")
    fig.suptitle(f"{title}: heads, denoising recovery", fontsize=10)
    save_figure(fig, path)


def circuit_curves(circuit: pd.DataFrame, threshold: float, title: str, path: str | Path) -> None:
    """Recovery of the greedy (solid) and random (dashed) prefixes against the fraction of the circuit's
    components (attention heads and MLPs) restored, per tower (panels) and corruption (colours), with the
    threshold line."""
    towers = list(dict.fromkeys(circuit["tower"]))
    fig, axes = plt.subplots(1, len(towers), figsize=(4.2 * len(towers), 3.4), squeeze=False, layout="constrained")
    for ax, tower in zip(axes[0], towers):
        part = circuit[circuit["tower"] == tower]
        for c, corruption in enumerate(dict.fromkeys(part["corruption"])):
            for order, style in (("greedy", "-"), ("random", "--")):
                curve = part[(part["corruption"] == corruption) & (part["order"] == order)]
                if len(curve):
                    ax.plot(curve["fraction"], curve["recovery"], style, color=f"C{c}",
                            label=corruption if order == "greedy" else None, lw=1.2)  # fmt: skip
        ax.axhline(threshold, color="0.5", lw=0.8, ls=":")
        if part["recovery"].notna().any():
            ax.set_xscale("log")
        else:
            ax.text(0.5, 0.5, "no pair kept", transform=ax.transAxes, ha="center", fontsize=8)
        ax.set_xlabel("fraction of heads and MLPs restored", fontsize=8)
        ax.set_ylabel("recovery R", fontsize=8)
        ax.set_title(f"{tower} tower (dashed: random order)", fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6)
    fig.suptitle(f"{title}: circuit sparsity", fontsize=10)
    save_figure(fig, path)
