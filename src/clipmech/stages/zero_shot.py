"""Zero-shot classification of one natural-image dataset by one model: the stage of rule ``zero_shot``
(methods.md Sec. 1.2)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from clipmech.data import datasets, loader
from clipmech.data.tables import write_table
from clipmech.models import loading, zeroshot

log = logging.getLogger(__name__)

#: The top-k accuracies reported.
TOPK = (1, 5)


def zero_shot(
    *,
    model: loading.ModelSpec,
    dataset: str,
    dataset_dir: str | Path,
    classifier: str | Path,
    accuracy: str | Path,
    per_class: str | Path,
    zeroshot_params: dict,
    threads: int,
) -> None:
    """Classify every image of a dataset with its cached classifier and write the accuracies.

    Images stream through :func:`clipmech.data.loader.image_loader` (``threads`` decoding workers, the
    model's own eval transform); per image only its top-5 classes are kept, so memory is N x 5 integers.

    ``dataset`` is the dataset's config name. Writes ``accuracy`` (one row: model, dataset, n, n_unlabelled, top1, top5, n_classes,
    n_templates) and ``per_class`` (per class: index, class_id, name, n, top1, top5).

    Raises
    ------
    ValueError
        If the cached classifier was built from other classes, templates or weights
        (:func:`clipmech.models.zeroshot.load_classifier`), or the dataset has no classes.
    """
    data = datasets.load(dataset_dir)
    classnames, templates, provenance = zeroshot.dataset_classifier(model, data, zeroshot_params["templates"])
    weights_EK = zeroshot.load_classifier(classifier, provenance)
    device = loading.resolve_device("auto")
    net, preprocess = loading.load_model(model, device)
    images = loader.ManifestImages(data.manifest, data.root, preprocess)
    batches = loader.image_loader(images, batch_size=zeroshot_params["batch_size"], workers=threads, device=device)
    top_NK = np.zeros((data.n_images, min(max(TOPK), len(classnames))), dtype=np.int64)
    weights = weights_EK.to(device)
    with torch.inference_mode():
        for index_N, pixels_NCHW in tqdm(batches, desc=f"zero-shot {model.name}", mininterval=10):
            features_NE = net.encode_image(pixels_NCHW.to(device, non_blocking=True)).float()
            top_NK[index_N.numpy()] = zeroshot.predict(features_NE, weights, max(TOPK)).numpy()
    labels_N = data.manifest["label"].to_numpy(dtype=np.int64)
    overall = zeroshot.topk_accuracy(top_NK, labels_N, len(classnames), TOPK)
    row = {
        "model": model.name,
        "dataset": dataset,
        **overall,
        "n_classes": len(classnames),
        "n_templates": len(templates),
    }
    write_table(pd.DataFrame([row]), accuracy)
    rows = []
    for cls in data.classes.sort_values("index").itertuples(index=False):
        mine = labels_N == cls.index
        rows.append(
            {
                "index": int(cls.index),
                "class_id": cls.class_id,
                "name": cls.name,
                **zeroshot.topk_accuracy(top_NK[mine], labels_N[mine], len(classnames), TOPK),
            }
        )
    write_table(pd.DataFrame(rows).drop(columns="n_unlabelled"), per_class)
    log.info(
        "%s on %s: top-1 %.4f, top-5 %.4f over %d images",
        model.name,
        dataset,
        overall["top1"],
        overall["top5"],
        overall["n"],
    )
