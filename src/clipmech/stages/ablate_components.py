"""Mean-ablation curves (neuron-attention paper Fig. 1): the stage of rule ``ablate_components``."""

from __future__ import annotations

import logging

import pandas as pd

from clipmech.data import datasets, tables
from clipmech.decomposition import components
from clipmech.stages.embed_text import load_text
from clipmech.stores import attnpool as pool_store

log = logging.getLogger(__name__)


def ablate_components(
    *, store: str, dataset_dir: str, text_path: str, out: dict, ablation: dict, chunk_size: int
) -> None:
    """Zero-shot accuracy vs fraction of pairs, neurons and heads kept, the rest mean-ablated (paper Fig. 1).

    Contributions of pairs, neurons and heads are mean-ablated with the attention held fixed;
    the ``neuron_activation`` level mean-ablates the neurons' activations instead, so the
    attention is recomputed (:func:`clipmech.decomposition.components.activation_ablation_curve`).
    ``ablation`` is the config's ``decomposition.ablation`` section. ``out["table"]``: the curves;
    ``out["tasks"]``: each zero-shot task's number of classes (its chance level is one over it) and of
    evaluated images, what rule ``plot_ablation`` draws with the curves.
    """
    ds = pool_store.open_store(store)
    data = datasets.load(dataset_dir)
    pool_store.check_images(ds, data, store, dataset_dir)
    parts = pool_store.parts(ds)
    tasks = components.zero_shot_tasks(data, load_text(text_path))
    evaluated, _ = components.evaluated_images(tasks)
    # One pass over the store: the scalars of all images, their mean tokens, and the evaluated images' tokens.
    read = pool_store.scan(ds, chunk_size, evaluated)
    s_NHC, y_NE = read.s_NHC, read.y_NE
    scores = components.component_scores(s_NHC, parts.u_HCE)
    table = components.ablation_curves(
        s_NHC, parts.u_HCE, parts.bias_E, scores, ablation["fractions"], tasks, chunk_size
    )
    activation = components.activation_ablation_curve(
        read.x_NTC, read.token_mean_TC, parts.weights, scores["neuron"], ablation["fractions"], tasks
    )
    table = pd.concat([table, activation], ignore_index=True)
    model_acc = {task.name: components.zero_shot_accuracy(y_NE, task) for task in tasks}
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
