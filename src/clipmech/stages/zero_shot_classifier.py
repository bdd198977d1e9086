"""Build the zero-shot classifier of one model over one dataset's classes: the stage of rule
``zero_shot_classifier`` (methods.md Sec. 1.2)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from clipmech.data import datasets
from clipmech.models import loading, zeroshot

log = logging.getLogger(__name__)


def zero_shot_classifier(
    *, model: loading.ModelSpec, dataset_dir: str | Path, classifier: str | Path, zeroshot_params: dict, threads: int
) -> None:
    """Write ``classifier`` (:func:`clipmech.models.zeroshot.save_classifier`): the (E, K) weights over the
    dataset's classes (``classes.tsv``), with the templates of ``zeroshot_params`` (the config's ``zeroshot``
    section) and the provenance a reader checks."""
    torch.set_num_threads(threads)
    dataset = datasets.load(dataset_dir)
    classnames, templates, provenance = zeroshot.dataset_classifier(model, dataset, zeroshot_params["templates"])
    device = loading.resolve_device("auto")
    net, _ = loading.load_model(model, device)
    tokenizer = loading.load_tokenizer(model)
    with torch.inference_mode():
        weights_EK = zeroshot.classifier(
            net, tokenizer, classnames, templates, device=device, batch_size=zeroshot_params["batch_size"]
        )
    zeroshot.save_classifier(classifier, weights_EK, provenance)
    log.info("%s: %d classes x %d templates -> %s", model.name, len(classnames), len(templates), classifier)


def load_weights(
    classifier: str | None, classifier_spec: dict | None, dataset: datasets.ImageDataset
) -> np.ndarray | None:
    """The (E, K) float32 weights this rule wrote to ``classifier`` for ``dataset``, checked against the provenance
    ``classifier_spec`` implies (``model``: the model's entry as rules pass it; ``templates``: the config's
    ``zeroshot.templates``; :func:`clipmech.models.zeroshot.load_dataset_classifier`); None without a classifier.

    Raises
    ------
    ValueError
        If ``classifier`` comes without ``classifier_spec``; or as
        :func:`clipmech.models.zeroshot.load_dataset_classifier`.
    """
    if classifier is None:
        return None
    if classifier_spec is None:
        raise ValueError(f"classifier {classifier} is given without classifier_spec (its model and templates)")
    model = loading.ModelSpec(**classifier_spec["model"])
    return zeroshot.load_dataset_classifier(classifier, model, dataset, classifier_spec["templates"]).numpy()
