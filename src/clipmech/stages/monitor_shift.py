"""Distribution-shift monitoring (neuron-attention paper Sec. 5.2): the stage of rule ``monitor_shift``."""

from __future__ import annotations

import logging

import numpy as np

from clipmech.data import datasets, shapes, shift, tables
from clipmech.decomposition import components, monitoring, pool
from clipmech.figures import shift as shift_figures
from clipmech.stores import attnpool as pool_store

log = logging.getLogger(__name__)


def monitor_shift(
    *, store: str, splits_dir: str, text_path: str, out: dict, params: dict, chunk_size: int, label: str
) -> None:
    """Concept scores of the top pairs of each concept across the splits, and their correlations (paper Sec. 5.2)."""
    ds = pool_store.open_store(store)
    data = datasets.load(splits_dir)
    pool_store.check_images(ds, data, store, splits_dir)
    spec = shift.load_spec(splits_dir)
    parts = pool_store.parts(ds)
    s_NHC, y_NE = pool_store.pair_scalars(ds, chunk_size)
    text = np.load(text_path)
    scores = np.zeros((data.n_images, len(spec.concepts)))
    for f, concept in enumerate(spec.concepts):
        task = "colour" if concept in shapes.COLOURS else "shape"
        classes, z_KE = components.task_text(text, task)
        heads, neurons, _ = pool.top_pairs_by_text(parts.u_HCE, z_KE[[classes.index(concept)]], params["top_k"])
        scores[:, f] = monitoring.concept_scores(s_NHC, parts.u_HCE, y_NE, heads[0], neurons[0])
    present = shift.presence(data.objects, spec.concepts, data.n_images)
    splits, correlations = monitoring.shift_tables(spec, scores, present)
    tables.write_table(splits, out["splits"])
    tables.write_table(correlations, out["correlations"])
    log.info("shift monitoring:\n%s\n%s", splits.to_string(), correlations.to_string())
    shift_figures.shift_monitoring(
        splits, correlations, f"{label}: concept scores of the top {params['top_k']} pairs", out["figure"]
    )
