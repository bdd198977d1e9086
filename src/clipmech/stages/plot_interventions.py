"""Draw the concept interventions (methods.md Sec. 8.6): the stage of rule ``plot_interventions``."""

from __future__ import annotations

import pandas as pd

from clipmech.figures import patching as patching_figures


def plot_interventions(*, interventions: str, out: dict, n_units: int, label: str) -> None:
    """The effects of scaling the top ``n_units`` units of each concept (``out["interventions_figure"]``,
    :func:`clipmech.figures.patching.intervention_effects`) from the table of rule ``intervene_concepts``."""
    patching_figures.intervention_effects(
        pd.read_csv(interventions, sep="\t"),
        f"{label}: top-{n_units} concept units scaled on images with the concept",
        out["interventions_figure"],
    )
