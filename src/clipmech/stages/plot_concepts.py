"""Draw the concept AUROCs and the concept interventions (methods.md Sec. 8): the stage of rule ``plot_concepts``."""

from __future__ import annotations

import pandas as pd

from clipmech.figures import patching as patching_figures


def plot_concepts(*, auroc: str, interventions: str, out: dict, concepts: dict, label: str) -> None:
    """The AUROC of every unit per layer (``out["auroc_figure"]``, :func:`clipmech.figures.patching.auroc_by_layer`)
    from the table of rule ``concept_auroc``, and the effects of scaling the top units
    (``out["interventions_figure"]``, :func:`clipmech.figures.patching.intervention_effects`) from the table of
    rule ``intervene_concepts``. ``concepts``: ``threshold``, ``n_units``."""
    patching_figures.auroc_by_layer(
        pd.read_csv(auroc, sep="\t"), concepts["threshold"], f"{label}: concept AUROC per unit", out["auroc_figure"]
    )
    patching_figures.intervention_effects(
        pd.read_csv(interventions, sep="\t"),
        f"{label}: top-{concepts['n_units']} concept units scaled on images with the concept",
        out["interventions_figure"],
    )
