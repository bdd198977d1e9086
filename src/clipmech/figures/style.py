"""What every figure shares: the Agg backend (set once, here), the attribute-type colours and :func:`save_figure`."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from clipmech import artefacts

TYPE_COLOURS = {"shape": "#4c72b0", "colour": "#dd8452", "position": "#55a868"}


def save_figure(fig, path: str | Path) -> None:
    """Write a figure as PNG (110 dpi, cropped to its content so no label is cut off, no
    software metadata so the bytes depend only on the data) and close it; published whole by rename
    (clipmech.artefacts.write)."""
    try:
        artefacts.write(
            path,
            lambda fh: fig.savefig(
                fh, format="png", dpi=110, bbox_inches="tight", pad_inches=0.05, metadata={"Software": None}
            ),
            rule=None,
            record=False,
        )
    finally:
        plt.close(fig)
