"""Draw superposition against separability (methods.md Sec. 3): the stage of rule ``plot_superposition``."""

from __future__ import annotations

import pandas as pd

from clipmech.figures import superposition as superposition_figures


def plot_superposition(*, pairs: str, correlations: str, out: dict, superposition: dict, label: str) -> None:
    """The two scatter figures of methods.md Sec. 3, superposition against centroid distance
    (``out["distance"]``) and against misclassification (``out["misclassification"]``;
    :func:`clipmech.figures.superposition.superposition_scatter`), from the pair and correlation tables of
    rule ``superposition_separability``. ``superposition``: ``variance_kept``, ``threshold``."""
    pairs_table = pd.read_csv(pairs, sep="\t")
    correlations_table = pd.read_csv(correlations, sep="\t")
    n_units = int(pairs_table["n_units"].iloc[0])
    for key, separability, claim in (
        ("distance", "D", "embeddings closer"),
        ("misclassification", "M", "more misclassification"),
    ):
        superposition_figures.superposition_scatter(
            pairs_table,
            correlations_table,
            separability,
            superposition["variance_kept"],
            f"{label}: higher superposition -> {claim}? ({n_units} lowest-entropy units, "
            f"threshold {superposition['threshold']})",
            out[key],
        )
