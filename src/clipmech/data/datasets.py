"""Reading the image datasets the pipeline analyses.

Every dataset directory holds ``images.npy`` (uint8, N x H x W x 3) and ``spec.json`` (what it is,
with the sha256 of its data files); Shapes datasets add ``masks.npy`` and ``objects.tsv``
(see :mod:`clipmech.data.shapes`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass
class ImageDataset:
    """Images with whatever labels the dataset has.

    Attributes
    ----------
    images : numpy.ndarray, uint8, (N, H, W, 3)
        Memory-mapped from ``images.npy``.
    spec : dict
        ``spec.json``: at least ``kind`` and ``sha256``.
    masks : numpy.ndarray, uint8, (N, H, W) or None
        Instance masks (object id per pixel, 0 = background), Shapes only.
    objects : pandas.DataFrame or None
        The object table, Shapes only.
    """

    images: np.ndarray
    spec: dict
    masks: np.ndarray | None = None
    objects: pd.DataFrame | None = None

    @property
    def n_images(self) -> int:
        return int(self.images.shape[0])


def load(directory: str | Path) -> ImageDataset:
    """Open a dataset directory written by the pipeline.

    Raises
    ------
    FileNotFoundError
        If the directory or one of its files is missing; the message names the expected path.
    """
    directory = Path(directory)
    spec_path = directory / "spec.json"
    if not spec_path.is_file():
        raise FileNotFoundError(f"no dataset at {directory}: expected {spec_path} (run the dataset rule first)")
    spec = json.loads(spec_path.read_text())
    images = np.load(_required(directory / "images.npy"), mmap_mode="r")
    if spec["kind"] != "shapes":
        return ImageDataset(images=images, spec=spec)
    masks = np.load(_required(directory / "masks.npy"), mmap_mode="r")
    objects = pd.read_csv(_required(directory / "objects.tsv"), sep="\t")
    return ImageDataset(images=images, spec=spec, masks=masks, objects=objects)


def _required(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"dataset file missing: expected {path}")
    return path
