"""Draw the evaluation of one MiCLIP unit set: the stage of rule ``plot_miclip``."""

from __future__ import annotations

import pandas as pd

from clipmech.figures import miclip as miclip_figures


def plot_miclip(*, delta_acc: str, description_accuracy: str, out: dict, kind: str, tau: int, label: str) -> None:
    """Delta Acc of the top-``tau`` units per concept (``out["delta_figure"]``) and the description accuracy
    of MiCLIP and its baselines (``out["description_figure"]``), from the tables ``delta_acc`` and
    ``description_accuracy`` of rule ``evaluate_miclip``."""
    miclip_figures.delta_bars(
        pd.read_csv(delta_acc, sep="\t"),
        f"{label}: Delta Acc of the top-{int(tau)} {kind} per concept",
        out["delta_figure"],
    )
    miclip_figures.description_bars(
        pd.read_csv(description_accuracy, sep="\t"), f"{label}: {kind} descriptions", out["description_figure"]
    )
