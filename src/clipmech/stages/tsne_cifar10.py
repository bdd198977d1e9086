"""t-SNE of CIFAR-10 image embeddings: the stage of rule ``tsne_cifar10``."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from clipmech.analyses import embedding_maps
from clipmech.data import datasets, loader, tables
from clipmech.models import loading
from clipmech.models.loading import ModelSpec

log = logging.getLogger(__name__)


def tsne_cifar10(
    *,
    model: ModelSpec,
    out: dict,
    dataset_dir: str,
    tsne: dict,
    seed: int,
    device: str,
    batch_size: int,
    threads: int,
) -> None:
    """t-SNE of the model's normalised image embeddings of a CIFAR-10 dataset (the shapes paper's Fig. 1):
    coordinates and labels (``out["table"]``), and the split, number of images mapped (at most
    :data:`clipmech.analyses.embedding_maps.MAX_TSNE_IMAGES`, a subset drawn with ``seed`` beyond, whose batches
    alone are embedded) and in the dataset, every class name in label order and the class silhouette in the embedding space (``out["summary"]``); rule ``plot_tsne_cifar10``
    draws them.

    ``dataset_dir`` is a dataset of kind ``cifar10`` (rule ``index_images``; its ``n_images`` and ``seed``
    draw the subset), every image of it embedded, decoded from its batch file by ``threads`` loader workers
    (:func:`clipmech.data.loader.pixel_batches`); ``tsne`` is the config's ``tsne`` section without its
    ``cifar10`` (``perplexity``); ``seed`` the t-SNE seed.

    Raises
    ------
    ValueError
        If the dataset is not of kind ``cifar10``, or ``tsne["perplexity"]`` is not below its images.
    """
    data = datasets.load(dataset_dir)
    if data.spec["kind"] != "cifar10":
        raise ValueError(
            f"tsne.cifar10: {dataset_dir} is a dataset of kind {data.spec['kind']}; the CIFAR-10 map needs one of "
            "kind cifar10"
        )
    torch.set_num_threads(threads)
    torch_device = loading.resolve_device(device)
    clip, preprocess = loading.load_model(model, torch_device)
    rows = embedding_maps.tsne_rows(data.n_images, seed, embedding_maps.MAX_TSNE_IMAGES)
    taken = np.zeros(data.n_images, dtype=bool)
    taken[rows] = True
    embeddings = []
    with torch.inference_mode():
        for first, last, pixels_NCHW in loader.pixel_batches(
            data, preprocess, batch_size=batch_size, workers=threads, device=torch_device
        ):
            if taken[first:last].any():
                emb_BE = clip.encode_image(pixels_NCHW.to(torch_device), normalize=True).float().cpu()
                embeddings.append(emb_BE[torch.from_numpy(taken[first:last])])
    emb_NE = torch.cat(embeddings).numpy()
    labels_N = data.manifest["label"].to_numpy(dtype=np.int64)[rows]
    classes = [str(name) for name in data.classes["name"]]
    split = data.spec["split"]
    xy_N2 = embedding_maps.tsne_map(emb_NE, tsne["perplexity"], seed)
    silhouette = embedding_maps.cluster_separation(emb_NE, labels_N)
    log.info(
        "CIFAR-10 %s, %d of %d images; class silhouette (cosine) %.3f", split, len(labels_N), data.n_images, silhouette
    )
    tables.write_table(
        pd.DataFrame({"label": labels_N, "class": np.asarray(classes)[labels_N], "x": xy_N2[:, 0], "y": xy_N2[:, 1]}),
        out["table"],
    )
    tables.write_json(
        {
            "split": split,
            "n_images": len(labels_N),
            "n_dataset_images": data.n_images,
            "classes": classes,
            "silhouette": silhouette,
        },
        out["summary"],
    )
