"""Neuron selectivity (shapes paper, Algorithm 1) from an activation store: the stage of rule ``neuron_selectivity``."""

from __future__ import annotations

from clipmech.analyses import selectivity
from clipmech.data import datasets, shapes
from clipmech.stores import activations


def neuron_selectivity(
    *, store: str, dataset_dir: str, units: str, topk: str, null: str, params: dict, seed: int
) -> None:
    """Write the unit table sorted by entropy, every unit's top-k images and the null entropies."""
    data = datasets.load(dataset_dir)
    counts = shapes.feature_counts(data.objects, data.n_images)
    table, topk_table, null_Z = selectivity.run(
        activations.open_store(store), counts, params["reduction"], params["k"], params["n_null"], seed
    )
    selectivity.write(table, topk_table, null_Z, units, topk, null)
