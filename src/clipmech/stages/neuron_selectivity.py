"""Neuron selectivity (shapes paper, Algorithm 1) from an activation store: the stage of rule ``neuron_selectivity``."""

from __future__ import annotations

import numpy as np

from clipmech.analyses import selectivity as selectivity_analysis
from clipmech.data import concepts, datasets, shapes
from clipmech.stores import activations


def neuron_selectivity(
    *,
    store: str,
    dataset_dir: str,
    units: str,
    topk: str,
    null: str,
    selectivity: dict,
    seed: int,
    words: list[str] | None = None,
) -> None:
    """Write the unit table sorted by entropy, every unit's top-k images and the null entropies
    (``selectivity`` is the config's ``selectivity`` section).

    A Shapes dataset counts the objects with each of its 16 features (Algorithm 1's c_{n,f}); any other
    dataset counts its concepts, 0 or 1 per image (:func:`clipmech.data.concepts.concept_matrix`, methods.md
    Sec. 1.1; ``words`` are a captions dataset's configured concept words).
    """
    data = datasets.load(dataset_dir)
    if data.objects is not None:
        counts_NF, names = shapes.feature_counts(data.objects, data.n_images), shapes.FEATURES
    else:
        matrix = concepts.concept_matrix(data, words=words)
        counts_NF, names = matrix.present_NF.astype(np.float64), matrix.names
    table, topk_table, null_Z = selectivity_analysis.run(
        activations.open_store(store),
        counts_NF,
        selectivity["reduction"],
        selectivity["k"],
        selectivity["n_null"],
        seed,
        names,
    )
    selectivity_analysis.write(table, topk_table, null_Z, units, topk, null)
