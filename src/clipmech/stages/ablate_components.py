"""Mean-ablation curves (neuron-attention paper Fig. 1): the stage of rule ``ablate_components``."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from clipmech.data import datasets, tables
from clipmech.decomposition import components
from clipmech.stages.embed_text import load_text
from clipmech.stages.zero_shot_classifier import load_weights
from clipmech.stores import attnpool as pool_store

log = logging.getLogger(__name__)


def ablate_components(
    *,
    store: str,
    dataset_dir: str,
    out: dict,
    ablation: dict,
    chunk_size: int,
    text_path: str | None = None,
    classifier: str | None = None,
    classifier_spec: dict | None = None,
) -> None:
    """Zero-shot accuracy vs fraction of pairs, neurons and heads kept, the rest mean-ablated (paper Fig. 1).

    Contributions of pairs, neurons and heads are mean-ablated with the attention held fixed
    (:class:`clipmech.decomposition.components.AblationCurves`); the ``neuron_activation`` level
    mean-ablates the neurons' activations instead, so the attention is recomputed
    (:class:`clipmech.decomposition.components.ActivationAblationCurve`). ``ablation`` is the config's
    ``decomposition.ablation`` section. ``out["table"]``: the curves; ``out["tasks"]``: each zero-shot
    task's number of classes (its chance level is one over it) and of evaluated images, what rule
    ``plot_ablation`` draws with the curves.

    The tasks (:func:`clipmech.decomposition.components.dataset_tasks`, methods.md Sec. 5.2): on a Shapes
    dataset the attribute tasks with the prompt embeddings ``text_path`` (rule ``embed_text``); on a
    natural-image dataset with classes the one task ``class``, top-1 over its classes with its zero-shot
    classifier ``classifier`` (rule ``zero_shot_classifier``), checked against the provenance that
    ``classifier_spec`` (``model``, a model entry, and ``templates``, the config's ``zeroshot.templates``)
    implies.

    Streams over the store in chunks of ``chunk_size`` images, in two passes: all images for the
    ranking scores, mean scalars and mean tokens (the reference of the ablations), then the M evaluated
    images for the ablated outputs' zero-shot counts. Memory does not grow with the number of images
    beyond per-image indices: the directions and neuron Gram matrix (H x C x E, C x H x H floats), the
    mean tokens (T x C), the keep masks (at most 3 x F x H x C bools for F fractions) and one chunk's
    tokens, attention, scalars and outputs.
    """
    ds = pool_store.open_store(store)
    data = datasets.load(dataset_dir)
    pool_store.check_images(ds, data, store, dataset_dir)
    parts = pool_store.parts(ds)
    tasks = components.dataset_tasks(
        data, None if text_path is None else load_text(text_path), load_weights(classifier, classifier_spec, data)
    )
    evaluated, local = components.evaluated_images(tasks)
    # Pass 1, all images: ranking scores, mean scalars and mean tokens.
    sums = components.ScoreSums(parts.u_HCE)
    token_sum_TC = np.zeros((ds.sizes["token"], ds.sizes["neuron"]))
    for batch, s_NHC in pool_store.iter_scalars(ds, chunk_size):
        sums.add(s_NHC)
        token_sum_TC += batch.x_NTC.sum(axis=0)
    scores, fractions = sums.scores(), ablation["fractions"]
    curves = components.AblationCurves(parts.u_HCE, parts.bias_E, scores, sums.s_mean(), fractions, local, chunk_size)
    activation = components.ActivationAblationCurve(
        token_sum_TC / sums.n_images, parts.weights, scores["neuron"], fractions, local
    )
    model = components.ZeroShotCounts(local)
    # Pass 2, the evaluated images (batch.images indexes into `evaluated`, as the local tasks' images do).
    for batch, s_NHC in pool_store.iter_scalars(ds, chunk_size, images=evaluated):
        curves.add(batch.images.start, s_NHC)
        activation.add(batch.images.start, batch.x_NTC)
        model.add(batch.images.start, batch.y_NE)
    table = pd.concat([curves.table(), activation.table()], ignore_index=True)
    model_acc = model.accuracy()
    table["model_accuracy"] = table["task"].map(model_acc)
    tables.write_table(table, out["table"])
    log.info("unablated accuracy: %s", model_acc)
    tasks_table = pd.DataFrame(
        {
            "task": [task.name for task in tasks],
            "n_classes": [len(task.classes) for task in tasks],
            "n_images": [len(task.images) for task in tasks],
        }
    )
    tables.write_table(tasks_table, out["tasks"])
