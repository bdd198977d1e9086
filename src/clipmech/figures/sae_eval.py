"""Figures of the SAE evaluation (methods.md Sec. 7; rule ``evaluate_sae``): the firing-frequency histogram and
the top images of the most selective latents with their patch heatmaps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from clipmech.figures.style import save_figure


def firing_histogram(
    histogram: dict, dense_threshold: float, title: str, path: str | Path, title_colour: str = "black"
) -> None:
    """Latents per log10 firing-frequency bin (:func:`clipmech.sae.evaluate.frequency_histogram`), the dense
    threshold as a dashed line and the number of dead latents (never firing, outside the bins) in the legend;
    ``title_colour`` marks a warning (a diverged SAE)."""
    edges = np.asarray(histogram["log10_edges"])
    counts = np.asarray(histogram["counts"])
    fig, ax = plt.subplots(figsize=(5.5, 3.2), layout="constrained")
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="C0", edgecolor="white", lw=0.5)
    ax.axvline(np.log10(dense_threshold), color="C3", ls="--", lw=1, label=f"dense: > {dense_threshold:g} of tokens")
    ax.plot([], [], " ", label=f"dead (never fire): {histogram['n_dead']}")
    ax.set_xlabel(f"log10 firing frequency (on {histogram['n_tokens']} tokens)")
    ax.set_ylabel("latents")
    ax.set_title(title, fontsize=9, color=title_colour)
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    save_figure(fig, path)


def top_latent_images(
    images_LKHW3: np.ndarray,
    maps_LKhw: np.ndarray | None,
    row_titles: Sequence[str],
    title: str,
    path: str | Path,
    title_colour: str = "black",
) -> None:
    """One row per latent: its top images, each with the latent's patch activation overlaid where it fires
    (> 0; colour scale per latent, from 0 to its maximum over the row); without maps (class-token SAEs) the
    images alone.

    Parameters
    ----------
    images_LKHW3 : numpy.ndarray, uint8, (L, K, H, W, 3)
        K top images of each of L latents (L may be 0: the figure then says that no latent qualifies).
    maps_LKhw : numpy.ndarray, float, (L, K, rows, cols), optional
    row_titles : sequence of str, (L,)
    title : str
    path : path
    title_colour : str
        The title's colour: a warning (a diverged SAE) in red.
    """
    n_rows, n_cols = images_LKHW3.shape[:2]
    if n_rows == 0:
        fig, ax = plt.subplots(figsize=(5, 1.5))
        ax.text(0.5, 0.5, "no latent fires on the evaluated images", ha="center", va="center")
        ax.set_axis_off()
        fig.suptitle(title, fontsize=9, color=title_colour)
        save_figure(fig, path)
        return
    fig = plt.figure(figsize=(1.5 * n_cols + 0.8, 1.75 * n_rows + 0.4), layout="constrained")
    for r, subfig in enumerate(np.atleast_1d(fig.subfigures(n_rows, 1))):
        axes = np.atleast_1d(subfig.subplots(1, n_cols))
        vmax = float(np.max(maps_LKhw[r])) if maps_LKhw is not None else 0.0
        for c, ax in enumerate(axes):
            image = images_LKHW3[r, c]
            ax.imshow(image)
            if maps_LKhw is not None:
                size = image.shape[0]
                firing = np.ma.masked_less_equal(maps_LKhw[r, c], 0.0)
                shown = ax.imshow(firing, cmap="viridis", vmin=0.0, vmax=vmax, alpha=0.7, extent=(0, size, size, 0))
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_color("0.6")
        if maps_LKhw is not None:
            subfig.colorbar(shown, ax=axes.tolist(), fraction=0.02, pad=0.01).ax.tick_params(labelsize=6)
        subfig.suptitle(row_titles[r], fontsize=8)
    fig.suptitle(title, fontsize=9, color=title_colour)
    save_figure(fig, path)
