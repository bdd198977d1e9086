"""Draw the distribution-shift monitoring (neuron-attention paper Sec. 5.2): the stage of rule ``plot_shift``."""

from __future__ import annotations

import pandas as pd

from clipmech.figures import shift as shift_figures


def plot_shift(*, splits: str, correlations: str, out: dict, top_k: int, label: str) -> None:
    """True concept share and mean concept score per split (``out["figure"]``,
    :func:`clipmech.figures.shift.shift_monitoring`) from the tables of rule ``monitor_shift``; ``top_k`` is
    the config's ``decomposition.shift.top_k`` (the pairs per concept), for the title."""
    shift_figures.shift_monitoring(
        pd.read_csv(splits, sep="\t"),
        pd.read_csv(correlations, sep="\t"),
        f"{label}: concept scores of the top {top_k} pairs",
        out["figure"],
    )
