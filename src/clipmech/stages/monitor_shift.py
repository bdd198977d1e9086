"""Distribution-shift monitoring (neuron-attention paper Sec. 5.2): the stage of rule ``monitor_shift``."""

from __future__ import annotations

import logging

import numpy as np

from clipmech.data import datasets, shapes, tables
from clipmech.data import shift as shift_data
from clipmech.decomposition import components, monitoring, pool
from clipmech.stages.embed_text import load_text
from clipmech.stores import attnpool as pool_store

log = logging.getLogger(__name__)


def monitor_shift(*, store: str, dataset_dir: str, text_path: str, out: dict, shift: dict, chunk_size: int) -> None:
    """Concept scores of the top pairs of each concept across the splits, and their correlations (paper Sec. 5.2).

    ``dataset_dir`` is a dataset of kind ``shift``; ``shift`` is the config's ``decomposition.shift`` section.
    ``out["splits"]`` and ``out["correlations"]`` are what rule ``plot_shift`` draws.

    Streams over the store in chunks of ``chunk_size`` images: memory does not grow with the number of
    images N beyond the per-image scores and presence (N x F for F concepts), besides the directions
    (H x C x E floats) and one chunk's tokens, attention, scalars and outputs.
    """
    ds = pool_store.open_store(store)
    data = datasets.load(dataset_dir)
    pool_store.check_images(ds, data, store, dataset_dir)
    spec = shift_data.load_spec(dataset_dir)
    parts = pool_store.parts(ds)
    text = load_text(text_path)
    # A concept's top pairs depend on the directions only: chosen once, before the pass over the images.
    top_pairs = []
    for concept in spec.concepts:
        classes, z_KE = components.task_text(text, "colour" if concept in shapes.COLOURS else "shape")
        heads, neurons, _ = pool.top_pairs_by_text(parts.u_HCE, z_KE[[classes.index(concept)]], shift["top_k"])
        top_pairs.append((heads[0], neurons[0]))
    scores_NF = np.zeros((data.n_images, len(spec.concepts)))
    for batch, s_NHC in pool_store.iter_scalars(ds, chunk_size):
        for f, (heads, neurons) in enumerate(top_pairs):
            scores_NF[batch.images, f] = monitoring.concept_scores(s_NHC, parts.u_HCE, batch.y_NE, heads, neurons)
    present = shift_data.presence(data.objects, spec.concepts, data.n_images)
    splits, correlations = monitoring.shift_tables(spec, scores_NF, present)
    tables.write_table(splits, out["splits"])
    tables.write_table(correlations, out["correlations"])
    log.info("shift monitoring:\n%s\n%s", splits.to_string(), correlations.to_string())
