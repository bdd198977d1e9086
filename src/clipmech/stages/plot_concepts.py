"""Draw the concept AUROCs (methods.md Sec. 8.5): the stage of rule ``plot_concepts``."""

from __future__ import annotations

import pandas as pd

from clipmech.figures import patching as patching_figures

#: Rows of the AUROC table read at a time: a natural-image dataset's table has one row per unit and concept.
CHUNK_ROWS = 1_000_000
#: The columns that identify a unit of the AUROC table.
UNIT_COLUMNS = ["tower", "site", "layer", "unit"]


def best_aurocs(auroc: str, chunk_rows: int = CHUNK_ROWS) -> tuple[pd.DataFrame, int]:
    """Each unit's best AUROC over the concepts of the table of rule ``concept_auroc``, read ``chunk_rows`` rows
    at a time, so that memory does not grow with the number of concepts.

    Returns
    -------
    best : pandas.DataFrame
        One row per unit with a defined AUROC, in table order: ``tower, site, layer, unit, auroc`` (the maximum
        over the concepts, NaN ignored).
    n_concepts : int
        The distinct concepts of the table.
    """
    parts, concepts = [], set()
    for chunk in pd.read_csv(auroc, sep="\t", usecols=[*UNIT_COLUMNS, "concept", "auroc"], chunksize=chunk_rows):
        concepts.update(chunk["concept"].unique())
        parts.append(chunk.groupby(UNIT_COLUMNS, sort=False)["auroc"].max())
    best = pd.concat(parts).groupby(level=UNIT_COLUMNS, sort=False).max().dropna().reset_index()
    return best, len(concepts)


def plot_concepts(*, auroc: str, out: dict, threshold: float, label: str) -> None:
    """The best AUROC of every unit per layer (``out["auroc_figure"]``,
    :func:`clipmech.figures.patching.auroc_by_layer`) from the table of rule ``concept_auroc``, of any dataset
    with concepts (:func:`best_aurocs`)."""
    best, n_concepts = best_aurocs(auroc)
    patching_figures.auroc_by_layer(
        best, threshold, f"{label}: concept AUROC per unit", out["auroc_figure"], n_concepts=n_concepts
    )
