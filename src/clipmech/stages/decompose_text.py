"""OMP text decomposition of the neuron-head directions (neuron-attention paper Fig. 2): the stage of rule ``decompose_text``."""

from __future__ import annotations

import logging

import numpy as np
import torch

from clipmech.data import datasets, tables
from clipmech.decomposition import components, pool
from clipmech.decomposition import text as text_decomposition
from clipmech.models import loading
from clipmech.stages.embed_text import load_text
from clipmech.stages.zero_shot_classifier import load_weights
from clipmech.stores import attnpool as pool_store

log = logging.getLogger(__name__)


def decompose_text(
    *,
    store: str,
    dataset_dir: str,
    text_path: str,
    out: dict,
    text: dict,
    pc_top_k: int,
    chunk_size: int,
    device: str,
    threads: int,
    classifier: str | None = None,
    classifier_spec: dict | None = None,
) -> None:
    """OMP text decomposition of neuron-head directions and the sparse-direction accuracy (paper Fig. 2).

    Coded directions: the top ``keep_fraction`` pairs by mean norm and the top ``n_class_pairs``
    pairs of every zero-shot class by cos(u, prompt). ``out["words"]``: the coded kept pairs
    (sorted by mean norm) with their first words; ``out["class_pairs"]``: each class's pairs
    with words; ``out["accuracy"]``: zero-shot accuracy with the kept pairs' directions replaced
    by their m-sparse approximations (rest mean-ablated), against the neuron baseline (kept
    neurons reduced to their first PC, itself replaced by its m-sparse approximation), what rule
    ``plot_sparse_accuracy`` draws. ``text`` is the config's ``decomposition.text`` section.

    The zero-shot tasks (:func:`clipmech.decomposition.components.dataset_tasks`, methods.md Sec. 5.2): the
    attribute tasks of a Shapes dataset, prompts from ``text_path``; or the one task ``class`` of a
    natural-image dataset with classes, over its zero-shot classifier ``classifier`` (rule
    ``zero_shot_classifier``, checked against ``classifier_spec``:
    :func:`clipmech.stages.zero_shot_classifier.load_weights`). The dictionary is always the words of
    ``text_path``.
    """
    torch.set_num_threads(threads)
    torch_device = loading.resolve_device(device)
    ds = pool_store.open_store(store)
    data = datasets.load(dataset_dir)
    pool_store.check_images(ds, data, store, dataset_dir)
    parts = pool_store.parts(ds)
    text_data = load_text(text_path)
    words, dictionary_AE = text_data["words"].tolist(), text_data["word_embeddings"]
    tasks = components.dataset_tasks(data, text_data, load_weights(classifier, classifier_spec, data))
    if max(text["m_values"]) > text["n_components"]:
        raise ValueError(f"m_values {text['m_values']} must not exceed n_components={text['n_components']}")
    # Three passes over the store, one chunk in memory: the mean norms, the kept neurons' top images, the curves.
    sums = components.ScoreSums(parts.u_HCE)
    for _, s_NHC in pool_store.iter_scalars(ds, chunk_size):
        sums.add(s_NHC)
    scores = sums.scores()
    keep_HC = pool.top_fraction_mask(scores["pair"], text["keep_fraction"])
    pairs = text_decomposition.decompose_pairs(
        parts.u_HCE, scores["pair"], keep_HC, tasks, dictionary_AE, words, params=text, device=torch_device
    )
    tables.write_table(pairs["words"], out["words"])
    tables.write_table(pairs["class_pairs"], out["class_pairs"])
    keep_C = pool.top_fraction_mask(scores["neuron"], text["keep_fraction"])
    top = components.top_contributions(
        ((batch.images.start, s_NHC) for batch, s_NHC in pool_store.iter_scalars(ds, chunk_size)),
        parts.u_HCE, [], [], np.flatnonzero(keep_C), pc_top_k,
    )  # fmt: skip
    v_KE, _ = top.neuron_directions()
    evaluated, local = components.evaluated_images(tasks)
    accuracy = text_decomposition.sparse_accuracy(
        ((batch.images.start, s_NHC, batch.y_NE) for batch, s_NHC in pool_store.iter_scalars(ds, chunk_size, evaluated)),
        parts.u_HCE, parts.bias_E, local, sums.s_mean(), keep_HC, pairs, keep_C, v_KE, dictionary_AE,
        params=text, device=torch_device,
    )  # fmt: skip
    tables.write_table(accuracy, out["accuracy"])
    log.info("sparse-direction accuracy:\n%s", accuracy.to_string())
