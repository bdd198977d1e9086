"""t-SNE stages: maps of the final image embeddings of Shapes and of a local CIFAR-10 subset."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from clipmech import analysis_plots, datasets, embedding_maps, extract, models

log = logging.getLogger(__name__)


def _write(table: pd.DataFrame, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, sep="\t", index=False, float_format="%.6g")


def tsne_shapes(store: str, dataset_dir: str, out: dict, params: dict, seed: int, label: str) -> None:
    """t-SNE of the store's normalised image embeddings of every Shapes image: coordinates and
    labels (``out["table"]``) and the three-panel figure (``out["figure"]``; colour and shape of
    single-object images, object count of all). The silhouettes of colour and shape classes among
    single-object images are logged and shown in the title."""
    data = datasets.load(dataset_dir)
    emb_NE = extract.open_store(store)["embedding"].values
    if emb_NE.shape[0] != data.n_images:
        raise ValueError(
            f"store {store} holds {emb_NE.shape[0]} embeddings but dataset {dataset_dir} has {data.n_images} images"
        )
    labels = embedding_maps.shapes_labels(data.objects, data.n_images)
    xy_N2 = embedding_maps.tsne_map(emb_NE, params["perplexity"], seed)
    single = labels["n_objects"].to_numpy() == 1
    silhouettes = {
        c: embedding_maps.cluster_separation(emb_NE[single], labels.loc[single, c].to_numpy())
        for c in ("colour", "shape")
    }
    log.info("silhouette of single-object images (cosine): %s", silhouettes)
    _write(labels.assign(x=xy_N2[:, 0], y=xy_N2[:, 1]), out["table"])
    analysis_plots.tsne_shapes(
        xy_N2,
        labels,
        f"{label}: t-SNE of image embeddings (perplexity {params['perplexity']}); silhouette of single-object "
        f"images by colour {silhouettes['colour']:.2f}, by shape {silhouettes['shape']:.2f}",
        out["figure"],
    )


def tsne_cifar10(
    name: str,
    model_entry: dict,
    out: dict,
    cifar: dict,
    params: dict,
    seed: int,
    device: str,
    batch_size: int,
    threads: int,
) -> None:
    """t-SNE of the model's normalised image embeddings of a seeded CIFAR-10 subset (the shapes
    paper's Fig. 1): coordinates and labels (``out["table"]``) and the figure coloured by class
    (``out["figure"]``), titled with the class silhouette in the embedding space.

    ``cifar`` is the config's ``cifar10`` section (``root``, ``split``, ``n_images``; read by
    :func:`clipmech.embedding_maps.load_cifar10`); ``params`` its ``tsne`` section. One seed stream
    draws the subset, another is the t-SNE seed.
    """
    torch.set_num_threads(threads)
    subset_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    images_NHW3, labels_N, classes = embedding_maps.load_cifar10(
        cifar["root"], cifar["split"], cifar["n_images"], subset_rng
    )
    torch_device = extract.resolve_device(device)
    model, preprocess, _ = models.load(models.model_spec({name: model_entry}, name), torch_device)
    with torch.inference_mode():
        emb_NE = torch.cat(
            [
                model.encode_image(
                    models.preprocess_images(images_NHW3[i : i + batch_size], preprocess).to(torch_device),
                    normalize=True,
                )
                .float()
                .cpu()
                for i in range(0, len(images_NHW3), batch_size)
            ]
        ).numpy()
    xy_N2 = embedding_maps.tsne_map(emb_NE, params["perplexity"], seed)
    silhouette = embedding_maps.cluster_separation(emb_NE, labels_N)
    log.info(
        "CIFAR-10 %s subset of %d images; class silhouette (cosine) %.3f", cifar["split"], len(labels_N), silhouette
    )
    _write(
        pd.DataFrame({"label": labels_N, "class": np.asarray(classes)[labels_N], "x": xy_N2[:, 0], "y": xy_N2[:, 1]}),
        out["table"],
    )
    analysis_plots.tsne_classes(
        xy_N2,
        labels_N,
        classes,
        f"{name} on CIFAR-10 ({cifar['split']}, {len(labels_N)} images): t-SNE of image embeddings; "
        f"class silhouette {silhouette:.2f}",
        out["figure"],
    )
