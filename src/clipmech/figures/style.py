"""What every figure shares: the Agg backend (set once, here), the attribute-type colours and :func:`save_figure`."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

TYPE_COLOURS = {"shape": "#4c72b0", "colour": "#dd8452", "position": "#55a868"}


def save_figure(fig, path: str | Path) -> None:
    """Write a figure as PNG (110 dpi, cropped to its content so no label is cut off, no
    software metadata so the bytes depend only on the data) and close it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.05, metadata={"Software": None})
    plt.close(fig)
