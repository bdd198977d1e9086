"""t-SNE of CIFAR-10 image embeddings from a local copy: the stage of rule ``tsne_cifar10``."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from clipmech.analyses import embedding_maps
from clipmech.data import cifar10 as cifar10_data
from clipmech.data import tables
from clipmech.models import loading
from clipmech.models.loading import ModelSpec

log = logging.getLogger(__name__)


def tsne_cifar10(
    *,
    model: ModelSpec,
    out: dict,
    cifar10: dict,
    tsne: dict,
    seed: int,
    device: str,
    batch_size: int,
    threads: int,
) -> None:
    """t-SNE of the model's normalised image embeddings of a seeded CIFAR-10 subset (the shapes
    paper's Fig. 1): coordinates and labels (``out["table"]``), and the split, number of images, every class
    name in label order and the class silhouette in the embedding space (``out["summary"]``); rule
    ``plot_tsne_cifar10`` draws them.

    ``cifar10`` is the config's ``cifar10`` section (``root``, ``split``, ``n_images``; read by
    :func:`clipmech.data.cifar10.load_cifar10`); ``tsne`` its ``tsne`` section. One seed stream
    draws the subset, another is the t-SNE seed.
    """
    torch.set_num_threads(threads)
    subset_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    images_NHW3, labels_N, classes = cifar10_data.load_cifar10(
        cifar10["root"], cifar10["split"], cifar10["n_images"], subset_rng
    )
    torch_device = loading.resolve_device(device)
    clip, preprocess = loading.load_model(model, torch_device)
    with torch.inference_mode():
        emb_NE = torch.cat(
            [
                clip.encode_image(
                    loading.preprocess_images(images_NHW3[i : i + batch_size], preprocess).to(torch_device),
                    normalize=True,
                )
                .float()
                .cpu()
                for i in range(0, len(images_NHW3), batch_size)
            ]
        ).numpy()
    xy_N2 = embedding_maps.tsne_map(emb_NE, tsne["perplexity"], seed)
    silhouette = embedding_maps.cluster_separation(emb_NE, labels_N)
    log.info(
        "CIFAR-10 %s subset of %d images; class silhouette (cosine) %.3f", cifar10["split"], len(labels_N), silhouette
    )
    tables.write_table(
        pd.DataFrame({"label": labels_N, "class": np.asarray(classes)[labels_N], "x": xy_N2[:, 0], "y": xy_N2[:, 1]}),
        out["table"],
    )
    tables.write_json(
        {"split": cifar10["split"], "n_images": len(labels_N), "classes": list(classes), "silhouette": silhouette},
        out["summary"],
    )
