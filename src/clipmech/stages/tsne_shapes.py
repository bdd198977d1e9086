"""t-SNE of the Shapes image embeddings: the stage of rule ``tsne_shapes``."""

from __future__ import annotations

import logging

from clipmech.analyses import embedding_maps
from clipmech.data import datasets, tables
from clipmech.stores import activations

log = logging.getLogger(__name__)


def tsne_shapes(*, store: str, dataset_dir: str, out: dict, tsne: dict, seed: int) -> None:
    """t-SNE of the store's normalised image embeddings of every Shapes image: coordinates and
    labels (``out["table"]``). The silhouettes of colour and shape classes among single-object images
    (cosine, in the embedding space) are logged and written with the perplexity (``out["summary"]``:
    ``perplexity``, ``silhouette`` {colour, shape}); rule ``plot_tsne_shapes`` draws both. ``tsne`` is the
    config's ``tsne`` section. At most :data:`clipmech.analyses.embedding_maps.MAX_TSNE_IMAGES` images are
    mapped, a subset drawn with ``seed`` beyond (:func:`clipmech.analyses.embedding_maps.tsne_rows`); only
    their embeddings are read."""
    data = datasets.load(dataset_dir)
    embedding = activations.open_store(store)["embedding"]
    if embedding.sizes["image"] != data.n_images:
        raise ValueError(
            f"store {store} holds {embedding.sizes['image']} embeddings but dataset {dataset_dir} has "
            f"{data.n_images} images"
        )
    rows = embedding_maps.tsne_rows(data.n_images, seed, embedding_maps.MAX_TSNE_IMAGES)
    if rows.size < data.n_images:
        log.info("t-SNE of %d of the %d images (a seeded subset)", rows.size, data.n_images)
    emb_NE = embedding.isel(image=rows).values
    labels = embedding_maps.shapes_labels(data.objects, data.n_images).iloc[rows].reset_index(drop=True)
    xy_N2 = embedding_maps.tsne_map(emb_NE, tsne["perplexity"], seed)
    single = labels["n_objects"].to_numpy() == 1
    silhouettes = {
        c: embedding_maps.cluster_separation(emb_NE[single], labels.loc[single, c].to_numpy())
        for c in ("colour", "shape")
    }
    log.info("silhouette of single-object images (cosine): %s", silhouettes)
    tables.write_table(labels.assign(x=xy_N2[:, 0], y=xy_N2[:, 1]), out["table"])
    tables.write_json({"perplexity": tsne["perplexity"], "silhouette": silhouettes}, out["summary"])
