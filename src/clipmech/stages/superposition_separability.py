"""Superposition vs separability (methods.md Sec. 3): the stage of rule ``superposition_separability``."""

from __future__ import annotations

import logging

import numpy as np

from clipmech.analyses import selectivity
from clipmech.analyses import superposition as superposition_analysis
from clipmech.data import datasets, shapes, tables
from clipmech.stores import activations

log = logging.getLogger(__name__)


def superposition_separability(
    *, units: str, store: str, dataset_dir: str, out: dict, superposition: dict, seed: int
) -> None:
    """Pair table and correlation table (pooled and within each pair type,
    :func:`clipmech.analyses.superposition.correlation_by_type`) of methods.md Sec. 3; rule
    ``plot_superposition`` draws them.

    ``out`` maps ``pairs`` and ``correlations`` to paths; ``superposition`` is the config's ``superposition`` section. The hold-out splits (``cv: holdout``)
    and the bootstrap draw from two independent streams of ``seed``. The embeddings are read a store chunk at a
    time, and with the default ``cv: loo`` and ``pca_fit: all`` only a chunk is held
    (:func:`clipmech.analyses.superposition.streamed_separability_table`).
    """
    affinity_UF = selectivity.read_affinities(units)
    if superposition["n_units"] > len(affinity_UF):
        log.warning(
            "superposition.n_units = %d but the model has %d units: using all of them",
            superposition["n_units"],
            len(affinity_UF),
        )
    data = datasets.load(dataset_dir)
    embedding = activations.open_store(store)["embedding"]
    if embedding.sizes["image"] != data.n_images:
        raise ValueError(
            f"store {store} holds {embedding.sizes['image']} embeddings but dataset {dataset_dir} has "
            f"{data.n_images} images"
        )
    sizes = embedding.chunks[0] if embedding.chunks else (data.n_images,)
    starts = np.cumsum((0, *sizes))

    def emb_NE():
        return (embedding.isel(image=slice(a, b)).values for a, b in zip(starts[:-1], starts[1:]))

    split_rng, bootstrap_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    pairs = superposition_analysis.superposition_pair_table(
        affinity_UF,
        emb_NE,
        shapes.feature_counts(data.objects, data.n_images),
        n_units=superposition["n_units"],
        threshold=superposition["threshold"],
        cross_type=superposition["cross_type"],
        variance_kept=superposition["variance_kept"],
        pca_fit=superposition["pca_fit"],
        cv=superposition["cv"],
        test_fraction=superposition["test_fraction"],
        min_images=superposition["min_images"],
        rng=split_rng,
    )
    correlations = superposition_analysis.correlation_by_type(
        pairs,
        bootstrap_rng,
        confidence_level=superposition["confidence_level"],
        n_resamples=superposition["n_resamples"],
        bootstrap_method=superposition["bootstrap_method"],
    )
    for key, table in (("pairs", pairs), ("correlations", correlations)):
        tables.write_table(table, out[key])
    log.info(
        "%d of %d pairs measurable; correlations:\n%s",
        (pairs["status"] == "ok").sum(),
        len(pairs),
        correlations.to_string(),
    )
