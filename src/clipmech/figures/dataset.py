"""The dataset preview: example images per object count (rule ``plot_dataset``)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from clipmech.figures.style import save_figure


def dataset_preview(images_NHW3: np.ndarray, objects: pd.DataFrame, path: str | Path, n: int = 10) -> None:
    """A row of example images per object count, each image framed so white backgrounds keep their edges."""
    counts = sorted(objects["n_objects"].unique())
    per_count = max(1, n // len(counts))
    fig, axes = plt.subplots(len(counts), per_count, figsize=(1.4 * per_count, 1.5 * len(counts)), squeeze=False)
    for r, count in enumerate(counts):
        image_ids = objects.loc[objects["n_objects"] == count, "image_id"].unique()[:per_count]
        for c in range(per_count):
            ax = axes[r, c]
            if c < len(image_ids):
                ax.imshow(images_NHW3[image_ids[c]])
                ax.set_xticks([])
                ax.set_yticks([])
                for spine in ax.spines.values():
                    spine.set_color("0.5")
                    spine.set_linewidth(0.8)
                if c == 0:
                    ax.set_title(f"{count} object{'s' if count > 1 else ''}", fontsize=8, loc="left")
            else:
                ax.set_axis_off()
    save_figure(fig, path)
