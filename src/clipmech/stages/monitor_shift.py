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
    """
    ds = pool_store.open_store(store)
    data = datasets.load(dataset_dir)
    pool_store.check_images(ds, data, store, dataset_dir)
    spec = shift_data.load_spec(dataset_dir)
    parts = pool_store.parts(ds)
    s_NHC, y_NE = pool_store.pair_scalars(ds, chunk_size)
    text = load_text(text_path)
    scores = np.zeros((data.n_images, len(spec.concepts)))
    for f, concept in enumerate(spec.concepts):
        task = "colour" if concept in shapes.COLOURS else "shape"
        classes, z_KE = components.task_text(text, task)
        heads, neurons, _ = pool.top_pairs_by_text(parts.u_HCE, z_KE[[classes.index(concept)]], shift["top_k"])
        scores[:, f] = monitoring.concept_scores(s_NHC, parts.u_HCE, y_NE, heads[0], neurons[0])
    present = shift_data.presence(data.objects, spec.concepts, data.n_images)
    splits, correlations = monitoring.shift_tables(spec, scores, present)
    tables.write_table(splits, out["splits"])
    tables.write_table(correlations, out["correlations"])
    log.info("shift monitoring:\n%s\n%s", splits.to_string(), correlations.to_string())
