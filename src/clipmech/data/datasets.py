"""Reading the image datasets the pipeline analyses.

Every dataset directory holds ``spec.json`` (what it is, with the sha256 of its data files). Synthetic
datasets hold ``images.npy`` (uint8, N x H x W x 3); Shapes datasets add ``masks.npy`` and
``objects.tsv`` (see :mod:`clipmech.data.shapes`), minimal-pairs datasets also ``pairs.tsv`` (see
:mod:`clipmech.data.pairs`). Natural-image datasets (kinds :data:`NATURAL_KINDS`) hold no pixels but
``manifest.parquet`` and ``classes.tsv`` pointing at the user's images (see :mod:`clipmech.data.natural`). :func:`load` checks the data files against that sha256 once per
job, so a file changed in place after the dataset rule wrote it fails loudly instead of being used.
"""

from __future__ import annotations

import hashlib
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
    images : numpy.ndarray, uint8, (N, H, W, 3), or None
        Memory-mapped from ``images.npy``; None for natural-image datasets (read them through ``manifest``).
    spec : dict
        ``spec.json``: at least ``kind`` and ``sha256``.
    masks : numpy.ndarray, uint8, (N, H, W) or None
        Instance masks (object id per pixel, 0 = background), Shapes and minimal pairs only.
    objects : pandas.DataFrame or None
        The object table, Shapes and minimal pairs only.
    pairs : pandas.DataFrame or None
        The minimal-pairs table (:func:`clipmech.data.pairs.synthesize`), kind ``pairs`` only.
    manifest : pandas.DataFrame or None
        ``manifest.parquet``, one row per image (:data:`clipmech.data.natural.MANIFEST_SCHEMA`),
        natural-image datasets only.
    classes : pandas.DataFrame or None
        ``classes.tsv`` (``index``, ``class_id`` as str, ``name``), natural-image datasets only.
    root : pathlib.Path or None
        The folder the manifest's ``source`` paths are relative to (``spec.json``'s ``root``),
        natural-image datasets only.
    """

    images: np.ndarray | None
    spec: dict
    masks: np.ndarray | None = None
    objects: pd.DataFrame | None = None
    pairs: pd.DataFrame | None = None
    manifest: pd.DataFrame | None = None
    classes: pd.DataFrame | None = None
    root: Path | None = None

    @property
    def n_images(self) -> int:
        if self.images is None:
            return len(self.manifest)
        return int(self.images.shape[0])


#: The data files of a dataset kind, in the order :func:`dataset_hash` reads them.
DATA_FILES = {
    "shapes": ("images.npy", "masks.npy", "objects.tsv"),
    "pairs": ("images.npy", "masks.npy", "objects.tsv", "pairs.tsv"),
    "imagenet": ("manifest.parquet", "classes.tsv"),
    "imagefolder": ("manifest.parquet", "classes.tsv"),
    "captions": ("manifest.parquet", "classes.tsv"),
    "cifar10": ("manifest.parquet", "classes.tsv"),
    "pascal_context": ("manifest.parquet", "classes.tsv"),
}
#: Kinds whose directory holds a manifest of the user's images instead of ``images.npy``.
NATURAL_KINDS = ("imagenet", "imagefolder", "captions", "cifar10", "pascal_context")


def data_files(kind: str) -> tuple[str, ...]:
    """The data files of a dataset of ``kind`` (``images.npy`` alone for kinds without masks)."""
    return DATA_FILES.get(kind, ("images.npy",))


def dataset_hash(directory: str | Path, kind: str = "shapes") -> str:
    """sha256 (hex) over a dataset directory's data files (:data:`DATA_FILES`), in order, 1 MiB blocks."""
    digest = hashlib.sha256()
    for name in data_files(kind):
        with open(_required(Path(directory) / name), "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load(directory: str | Path) -> ImageDataset:
    """Open a dataset directory written by the pipeline, after checking its data against ``spec.json``.

    Synthetic kinds come back with ``images`` memory-mapped; natural-image kinds (:data:`NATURAL_KINDS`)
    with ``images`` None and ``manifest``, ``classes`` and ``root`` set (the images themselves are
    not opened here).

    Raises
    ------
    FileNotFoundError
        If the directory or one of its files is missing; the message names the expected path.
    ValueError
        If the data files' sha256 differs from the one ``spec.json`` records (a file changed after the
        dataset was written); the message names the directory and both hashes.
    """
    directory = Path(directory)
    spec_path = directory / "spec.json"
    if not spec_path.is_file():
        raise FileNotFoundError(f"no dataset at {directory}: expected {spec_path} (run the dataset rule first)")
    spec = json.loads(spec_path.read_text())
    actual = dataset_hash(directory, spec["kind"])
    if actual != spec["sha256"]:
        raise ValueError(
            f"dataset {directory}: its data files ({', '.join(data_files(spec['kind']))}) have sha256 {actual}, "
            f"but {spec_path} records {spec['sha256']}: a file changed after the dataset was written. Delete the "
            "directory so that its rule writes it again."
        )
    if spec["kind"] in NATURAL_KINDS:
        manifest = pd.read_parquet(_required(directory / "manifest.parquet"))
        classes = pd.read_csv(
            _required(directory / "classes.tsv"), sep="\t", dtype={"class_id": str, "name": str}, keep_default_na=False
        )
        return ImageDataset(images=None, spec=spec, manifest=manifest, classes=classes, root=Path(spec["root"]))
    images = np.load(_required(directory / "images.npy"), mmap_mode="r")
    if spec["kind"] not in DATA_FILES:
        return ImageDataset(images=images, spec=spec)
    masks = np.load(_required(directory / "masks.npy"), mmap_mode="r")
    objects = pd.read_csv(_required(directory / "objects.tsv"), sep="\t")
    pairs = pd.read_csv(_required(directory / "pairs.tsv"), sep="\t") if spec["kind"] == "pairs" else None
    return ImageDataset(images=images, spec=spec, masks=masks, objects=objects, pairs=pairs)


def _required(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"dataset file missing: expected {path}")
    return path
