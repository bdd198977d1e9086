"""The concepts of a dataset, as one boolean image x concept matrix for every kind (methods.md Sec. 1.1).

:func:`concept_matrix` is the one place that says which concepts an image holds, so that the analyses that
score units against concepts (AUROC, AP, alignment) read every dataset the same way:

============================  ==================================================  =====================
dataset kind (``spec``)       concepts (columns)                                  :attr:`Concepts.source`
============================  ==================================================  =====================
``shapes``, ``pairs``,        the 16 Shapes features, an image holds one when an  "Shapes features"
``shift``                     object has it (:func:`clipmech.analyses.concepts.
                              image_presence`)
``imagenet``                  the classes of ``classes.tsv``, one-hot of          "ImageNet classes"
                              ``label``
``imagefolder``               the same                                            "folder classes"
``cifar10``                   the same                                            "CIFAR-10 classes"
``captions`` with categories  the COCO categories of ``classes.tsv``, from the    "COCO categories"
                              manifest's ``categories``
``captions`` otherwise        the configured words, matched in the captions       "caption words"
``pascal_context``            the 59 classes of ``classes.tsv``, from the         "PASCAL Context
                              manifest's ``categories`` (those in the mask,       categories"
                              several per image)
============================  ==================================================  =====================

A natural-image dataset is read through the attributes ``spec``, ``manifest``, ``classes`` and ``n_images``
alone (:class:`clipmech.data.datasets.ImageDataset`); a Shapes dataset through ``spec``, ``objects`` and
``n_images``. Here the shape letter F stands for the dataset's concepts (16 for Shapes).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clipmech.analyses.concepts import image_presence
from clipmech.data import shapes

#: Dataset kinds whose concepts are the 16 Shapes features of their object table.
SHAPES_KINDS = ("shapes", "pairs", "shift")
#: Dataset kinds whose concepts are their classes (one-hot of ``label``), with their ``source`` phrase.
CLASS_KINDS = {"imagenet": "ImageNet classes", "imagefolder": "folder classes", "cifar10": "CIFAR-10 classes"}
#: Dataset kinds whose concepts are the categories of each image (the manifest's ``categories``), with their phrase.
CATEGORY_KINDS = {"pascal_context": "PASCAL Context categories"}
CAPTION_KIND = "captions"


@dataclass(frozen=True, eq=False)
class Concepts:
    """Which images of a dataset hold which concepts.

    Attributes
    ----------
    present_NF : numpy.ndarray, bool, (N, F), read-only
        ``present_NF[i, f]``: image i holds concept f.
    names : tuple of F str
        The concepts' names, in column order.
    source : str
        What the concepts are, a short phrase for tables and pages ("Shapes features", "ImageNet classes",
        "folder classes", "CIFAR-10 classes", "COCO categories", "PASCAL Context categories", "caption words").

    Raises
    ------
    ValueError
        On construction, if ``present_NF`` is not a 2-d boolean array with one column per name.
    """

    present_NF: np.ndarray
    names: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        present = np.asarray(self.present_NF)
        if present.ndim != 2 or present.dtype != bool:
            raise ValueError(f"present_NF must be a 2-d bool array, got {present.dtype} of shape {present.shape}")
        names = tuple(str(name) for name in self.names)
        if present.shape[1] != len(names):
            raise ValueError(f"present_NF has {present.shape[1]} columns but there are {len(names)} names")
        present = present.copy()
        present.setflags(write=False)
        object.__setattr__(self, "present_NF", present)
        object.__setattr__(self, "names", names)

    @property
    def n_concepts(self) -> int:
        return len(self.names)


def concept_matrix(dataset, *, words: Sequence[str] | None = None) -> Concepts:
    """The concepts each image of ``dataset`` holds (methods.md Sec. 1.1).

    Parameters
    ----------
    dataset : ImageDataset (or any object with the same attributes)
        Shapes kinds need ``spec``, ``objects`` and ``n_images``; the natural-image kinds ``spec``,
        ``manifest`` (one row per image in ``index`` order), ``classes`` (``index``, ``class_id``, ``name``)
        and ``n_images``.
    words : sequence of str, optional
        The concepts of a captions dataset without COCO categories: each word or phrase is present in an
        image when it occurs in one of the image's captions as whole words, case-insensitively, with any
        run of whitespace between a phrase's words. Unused by the other kinds, and by a captions dataset
        whose manifest has categories.

    Returns
    -------
    Concepts
        For ``imagenet``, ``imagefolder`` and ``cifar10``, row i is the one-hot of image i's ``label``, and an
        image with label -1 holds no concept; for ``pascal_context`` (and captions with COCO categories), row i
        marks image i's ``categories`` (none, one or several).

    Raises
    ------
    ValueError
        If the dataset kind is unknown; if the manifest does not have one row per image in ``index`` order;
        if a label or category is outside the classes of ``classes.tsv``; if a captions dataset has no
        categories and no (non-empty) word list is given (the message says to configure one).
    """
    kind = dataset.spec["kind"]
    if kind in SHAPES_KINDS:
        return Concepts(image_presence(dataset.objects, dataset.n_images), shapes.FEATURES, "Shapes features")
    if kind in CLASS_KINDS:
        return _class_concepts(dataset, CLASS_KINDS[kind])
    if kind in CATEGORY_KINDS:
        categories = [as_list(cell) for cell in _manifest(dataset)["categories"]]
        return _category_concepts(dataset, categories, CATEGORY_KINDS[kind])
    if kind == CAPTION_KIND:
        manifest = _manifest(dataset)
        categories = _caption_categories(manifest)
        if any(categories):
            return _category_concepts(dataset, categories, "COCO categories")
        return _word_concepts(manifest, _word_names(words))
    valid = ", ".join((*SHAPES_KINDS, *CLASS_KINDS, *CATEGORY_KINDS, CAPTION_KIND))
    raise ValueError(f"no concepts for dataset kind {kind!r}; the kinds with concepts are: {valid}")


def caption_concept_names(dataset, words: Sequence[str] | None = None) -> tuple[str, ...]:
    """The names of a captions dataset's concepts, without matching them: :func:`concept_matrix`'s columns.

    Raises
    ------
    ValueError
        As :func:`concept_matrix` for a captions dataset; for another kind.
    """
    kind = dataset.spec["kind"]
    if kind != CAPTION_KIND:
        raise ValueError(f"caption concept names are those of a {CAPTION_KIND!r} dataset, not of kind {kind!r}")
    if any(_caption_categories(_manifest(dataset))):
        return _class_names(dataset)
    return _word_names(words)


def _caption_categories(manifest: pd.DataFrame) -> list[list[int]]:
    return [as_list(cell) for cell in manifest["categories"]] if "categories" in manifest else []


def _word_names(words: Sequence[str] | None) -> tuple[str, ...]:
    """A captions dataset's word concepts: each word with its whitespace runs made one space, once, in order."""
    if not words or not any(str(word).strip() for word in words):
        raise ValueError(
            f"dataset kind {CAPTION_KIND!r}: its manifest has no COCO categories, so its concepts must be words "
            "matched in the captions, and no word list is set: configure a non-empty list of words"
        )
    return tuple(dict.fromkeys(" ".join(str(word).split()) for word in words if str(word).strip()))


def _manifest(dataset) -> pd.DataFrame:
    manifest = dataset.manifest
    n = dataset.n_images
    if len(manifest) != n or not np.array_equal(manifest["index"].to_numpy(), np.arange(n)):
        raise ValueError(f"the manifest must hold one row per image in index order (0..{n - 1}), got {len(manifest)}")
    return manifest


def _class_names(dataset) -> tuple[str, ...]:
    classes = dataset.classes
    if not np.array_equal(classes["index"].to_numpy(), np.arange(len(classes))):
        raise ValueError("classes.tsv must list its classes in index order 0..K-1")
    return tuple(str(name) for name in classes["name"])


def _class_concepts(dataset, source: str) -> Concepts:
    labels = _manifest(dataset)["label"].to_numpy(dtype=np.int64)
    names = _class_names(dataset)
    bad = (labels < -1) | (labels >= len(names))
    if bad.any():
        raise ValueError(f"labels {sorted(set(labels[bad].tolist()))} are outside -1..{len(names) - 1} (classes.tsv)")
    present = np.zeros((len(labels), len(names)), dtype=bool)
    rows = np.flatnonzero(labels >= 0)
    present[rows, labels[rows]] = True
    return Concepts(present, names, source)


def _category_concepts(dataset, categories: list[list[int]], source: str) -> Concepts:
    names = _class_names(dataset)
    present = np.zeros((len(categories), len(names)), dtype=bool)
    for i, cell in enumerate(categories):
        index = np.asarray(cell, dtype=np.int64)
        if ((index < 0) | (index >= len(names))).any():
            raise ValueError(f"image {i} has categories {index.tolist()} outside 0..{len(names) - 1} (classes.tsv)")
        present[i, index] = True
    return Concepts(present, names, source)


def _word_concepts(manifest: pd.DataFrame, names: tuple[str, ...]) -> Concepts:
    present = np.zeros((len(manifest), len(names)), dtype=bool)
    for i, cell in enumerate(manifest["captions"]):
        captions = [str(caption) for caption in as_list(cell)]
        if captions:
            present[i] = words_in_texts(captions, names).any(axis=0)
    return Concepts(present, names, "caption words")


def words_in_texts(texts: Sequence[str], names: Sequence[str]) -> np.ndarray:
    """Which texts hold each word or phrase: as whole words, ignoring case, with any run of whitespace between a
    phrase's words (the rule of a captions dataset's word concepts, :func:`concept_matrix`).

    Returns
    -------
    present_NF : numpy.ndarray, bool, (len(texts), len(names))
    """
    patterns = [re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, name.split())) + r"(?!\w)", re.I) for name in names]
    present = np.zeros((len(texts), len(patterns)), dtype=bool)
    for n, text in enumerate(texts):
        for f, pattern in enumerate(patterns):
            present[n, f] = pattern.search(str(text)) is not None
    return present


def as_list(cell) -> list:
    """A list cell of the manifest (a list, a numpy array from parquet, or None/NaN for a missing one)."""
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return []
    return list(cell)
