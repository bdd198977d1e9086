"""Neuron selectivity (shapes paper, Algorithm 1) from an activation store: the stage of rule ``neuron_selectivity``."""

from __future__ import annotations

from clipmech.analyses import selectivity as selectivity_analysis
from clipmech.data import datasets, shapes
from clipmech.stores import activations


def neuron_selectivity(
    *, store: str, dataset_dir: str, units: str, topk: str, null: str, selectivity: dict, seed: int
) -> None:
    """Write the unit table sorted by entropy, every unit's top-k images and the null entropies
    (``selectivity`` is the config's ``selectivity`` section)."""
    data = datasets.load(dataset_dir)
    counts = shapes.feature_counts(data.objects, data.n_images)
    table, topk_table, null_Z = selectivity_analysis.run(
        activations.open_store(store),
        counts,
        selectivity["reduction"],
        selectivity["k"],
        selectivity["n_null"],
        seed,
    )
    selectivity_analysis.write(table, topk_table, null_Z, units, topk, null)
