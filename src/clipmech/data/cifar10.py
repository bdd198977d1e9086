"""CIFAR-10 from a local copy (``cifar-10-batches-py/``), for the t-SNE maps; nothing is downloaded."""

from __future__ import annotations

import numpy as np

CIFAR10_SPLITS = ("train", "test")


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
