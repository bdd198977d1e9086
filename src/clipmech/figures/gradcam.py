"""Grad-CAM example rows of correct and failed bindings (methods.md Sec. 4; rule ``plot_gradcam``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from clipmech.figures.style import save_figure


def gradcam_rows(
    images_NHW3: np.ndarray,
    maps_NPHW: np.ndarray,
    prompts_NP: list[list[str]],
    scores_NP: np.ndarray,
    failed_N: np.ndarray,
    title: str,
    path: str | Path,
) -> None:
    """Rows of images, each with its Grad-CAM maps for several prompts (the poster's figure).

    Parameters
    ----------
    images_NHW3 : numpy.ndarray, uint8, (N, H, W, 3)
    maps_NPHW : numpy.ndarray, float, (N, P, H, W)
        Maps at the image resolution; each map is scaled to its own maximum.
    prompts_NP : list of lists of str
        Column titles per row.
    scores_NP : numpy.ndarray, (N, P)
        S_t of every prompt, printed under its title.
    failed_N : numpy.ndarray, bool, (N,)
        Whether the row's image prefers the swapped binding; the row label says so.
    """
    n_rows, n_prompts = maps_NPHW.shape[:2]
    fig, axes = plt.subplots(
        n_rows, n_prompts + 1, figsize=(2.1 * (n_prompts + 1), 2.3 * n_rows), squeeze=False, layout="constrained"
    )
    for n in range(n_rows):
        axes[n, 0].imshow(images_NHW3[n])
        axes[n, 0].set_title(
            "binding failed" if failed_N[n] else "binding correct", fontsize=8, color="C3" if failed_N[n] else "C2"
        )
        for p in range(n_prompts):
            ax = axes[n, p + 1]
            ax.imshow(images_NHW3[n])
            peak = float(maps_NPHW[n, p].max())
            ax.imshow(maps_NPHW[n, p] / peak if peak > 0 else maps_NPHW[n, p], cmap="jet", alpha=0.5, vmin=0, vmax=1)
            ax.set_title(f'"{prompts_NP[n][p]}"\nS = {scores_NP[n, p]:.3f}', fontsize=7)
        for ax in axes[n]:
            ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)
