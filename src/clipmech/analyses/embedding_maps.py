"""2-D maps of image embeddings (shapes paper Sec. 4.1, Fig. 1).

The paper projects CLIP's final image embeddings of a CIFAR-10 subset with t-SNE and colours them
by class. Here the same map is drawn for the Shapes analysis images (always) and for a dataset of kind
``cifar10`` when ``tsne.cifar10`` names one: a local copy the pipeline never downloads, indexed like any
natural-image dataset (:func:`clipmech.data.natural.list_cifar10`, torchvision's md5-checked reader).

t-SNE needs every mapped image's embedding at once (N x E) and a neighbour graph over them, and its time
grows faster than N, so a map takes at most :data:`MAX_TSNE_IMAGES` images: a seeded subset beyond
(:func:`tsne_rows`); the silhouettes are measured on the same images.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score

#: The most images one t-SNE map takes (:func:`tsne_rows`); a dataset with more is mapped on a seeded subset.
MAX_TSNE_IMAGES = 5000


def tsne_rows(n_images: int, seed: int, limit: int = MAX_TSNE_IMAGES) -> np.ndarray:
    """The images a t-SNE map takes: all of them when there are at most ``limit``, else ``limit`` of them drawn
    without replacement by ``numpy.random.default_rng(seed)``.

    Returns
    -------
    numpy.ndarray, int64, (min(n_images, limit),)
        Positions in the dataset, increasing.

    Raises
    ------
    ValueError
        If ``limit`` is below 1.
    """
    if limit < 1:
        raise ValueError(f"a t-SNE map needs a limit of at least 1 image, got {limit}")
    if n_images <= limit:
        return np.arange(n_images, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n_images, size=limit, replace=False)).astype(np.int64)


def tsne_map(emb_NE: np.ndarray, perplexity: float, seed: int) -> np.ndarray:
    """Seeded t-SNE of embeddings (scikit-learn, PCA initialisation, Euclidean distances).

    Parameters
    ----------
    emb_NE : numpy.ndarray, float, (N, E)
        Image embeddings (L2-normalised ones: Euclidean distance is then a function of the cosine).
    perplexity : float
        t-SNE perplexity (effective number of neighbours); must be below N.
    seed : int
        ``random_state`` of ``sklearn.manifold.TSNE``: the same inputs and seed give the same map.

    Returns
    -------
    numpy.ndarray, float64, (N, 2)

    Raises
    ------
    ValueError
        If ``emb_NE`` is not 2-D, or ``perplexity`` is not in (0, N).
    """
    emb_NE = np.asarray(emb_NE, dtype=np.float64)
    if emb_NE.ndim != 2:
        raise ValueError(f"emb_NE must be 2-D (images, width), got shape {emb_NE.shape}")
    if not 0 < perplexity < emb_NE.shape[0]:
        raise ValueError(
            f"t-SNE perplexity must lie in (0, number of images = {emb_NE.shape[0]}), got {perplexity}; "
            "lower tsne.perplexity"
        )
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(emb_NE)


def cluster_separation(emb_NE: np.ndarray, labels_N: np.ndarray) -> float:
    """Mean silhouette of the classes in the embedding space (cosine distance), in [-1, 1].

    Quantifies the paper's "class-specific clusters are clearly separable" on the embeddings
    themselves rather than on the t-SNE map (whose distances t-SNE does not preserve). NaN when
    fewer than 2 or more than N - 1 classes are present (the silhouette is undefined).
    """
    n_classes = len(np.unique(labels_N))
    if not 2 <= n_classes <= len(labels_N) - 1:
        return float("nan")
    return float(silhouette_score(np.asarray(emb_NE, dtype=np.float64), labels_N, metric="cosine"))


def shapes_labels(objects: pd.DataFrame, n_images: int) -> pd.DataFrame:
    """What a Shapes t-SNE map is coloured by, per image.

    Returns
    -------
    pandas.DataFrame
        ``n_images`` rows in image order: ``image_id``, ``n_objects``, and ``colour``, ``shape``
        of the object of single-object images (empty string for images with more objects, whose
        objects have no single class).
    """
    table = pd.DataFrame({"image_id": np.arange(n_images)})
    counts = objects.groupby("image_id")["object_id"].count()
    table["n_objects"] = table["image_id"].map(counts).fillna(0).astype(int)
    single = objects[objects["n_objects"] == 1].set_index("image_id")
    for column in ("colour", "shape"):
        table[column] = table["image_id"].map(single[column]).fillna("")
    return table
