"""2-D maps of image embeddings (shapes paper Sec. 4.1, Fig. 1) and the CIFAR-10 reader they use.

The paper projects CLIP's final image embeddings of a CIFAR-10 subset with t-SNE and colours them
by class. Here the same map is drawn for the Shapes analysis images (always) and for CIFAR-10 when
a local copy is configured: the pipeline never downloads, so CIFAR-10 is read from a directory in
torchvision's format (``torchvision.datasets.CIFAR10(root, download=False)``: ``root`` holds
``cifar-10-batches-py/`` with the pickled batches and ``batches.meta``, each checked against
torchvision's md5 sums).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score

CIFAR10_SPLITS = ("train", "test")


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


def load_cifar10(
    root: str, split: str, n_images: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A seeded random subset of a local CIFAR-10 copy, read by torchvision (no download).

    Parameters
    ----------
    root : str
        Directory holding ``cifar-10-batches-py/`` (``data_batch_1`` ... ``data_batch_5``,
        ``test_batch``, ``batches.meta``: pickled dicts as distributed by the dataset's authors).
        torchvision checks every batch against its md5 sum.
    split : {"train", "test"}
        50,000 training or 10,000 test images.
    n_images : int
        Subset size (>= 1); the whole split when it is larger than the split.
    rng : numpy.random.Generator
        Draws the subset (without replacement); indices are returned sorted.

    Returns
    -------
    images_NHW3 : numpy.ndarray, uint8, (n, 32, 32, 3)
    labels_N : numpy.ndarray, int64, (n,)
        Class indices into ``classes``.
    classes : list of str
        The ten class names from ``batches.meta`` ("airplane", ...).

    Raises
    ------
    ValueError
        If ``split`` is unknown or ``n_images < 1``.
    FileNotFoundError
        If torchvision finds the directory missing or a file corrupted (wrong md5); the message
        names ``root`` and the expected layout.
    """
    from torchvision.datasets import CIFAR10

    if split not in CIFAR10_SPLITS:
        raise ValueError(f"unknown CIFAR-10 split {split!r}; allowed: {', '.join(CIFAR10_SPLITS)}")
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    try:
        dataset = CIFAR10(root, train=split == "train", download=False)
    except RuntimeError as error:
        raise FileNotFoundError(
            f"no valid CIFAR-10 copy under cifar10.root = {root}: torchvision says {error}; expected "
            f"{root}/{CIFAR10.base_folder}/ with {', '.join(name for name, _ in CIFAR10.train_list + CIFAR10.test_list)} "
            f"and {CIFAR10.meta['filename']} (the python version of the dataset, md5-checked)"
        ) from error
    n_total = len(dataset)
    index = np.sort(rng.choice(n_total, size=min(n_images, n_total), replace=False))
    labels = np.asarray(dataset.targets, dtype=np.int64)[index]
    return np.ascontiguousarray(dataset.data[index]), labels, list(dataset.classes)
