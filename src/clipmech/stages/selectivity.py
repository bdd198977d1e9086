"""Selectivity stage: Algorithm 1 of the shapes paper on every unit of an activation store."""

from __future__ import annotations

from clipmech import datasets, extract, selectivity, shapes


def neuron_selectivity(store: str, dataset_dir: str, units: str, topk: str, null: str, params: dict, seed: int) -> None:
    """Write the unit table sorted by entropy, every unit's top-k images and the null entropies."""
    data = datasets.load(dataset_dir)
    counts = shapes.feature_counts(data.objects, data.n_images)
    table, topk_table, null_D = selectivity.run(
        extract.open_store(store), counts, params["reduction"], params["k"], params["n_null"], seed
    )
    selectivity.write(table, topk_table, null_D, units, topk, null)
