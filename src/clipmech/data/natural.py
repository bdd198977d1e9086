"""Natural-image datasets a researcher already has on disk, written as manifests.

A natural dataset is not copied: the dataset rule lists the images of a local copy (ImageNet, any folder
of class folders, image-caption pairs, CIFAR-10's pickled batches or PASCAL Context), reads every listed
image once to hash its bytes and check that it decodes, and writes a *manifest*, one row per readable
sample. The images are decoded again only when a later stage reads them through the manifest.

A dataset directory written by :func:`write_natural_dataset` holds

``manifest.parquet``
    One row per readable sample, in ``index`` order (:data:`MANIFEST_SCHEMA`): ``index`` (int64,
    0..N-1), ``source`` (string, the image file, the tar shard or the CIFAR-10 batch file, relative to
    ``spec.json``'s ``root``), ``member`` (string: the member name inside the tar shard, the image's row
    in the CIFAR-10 batch as decimal digits, "" for a plain file), ``label`` (int64 class index, -1 when
    none), ``class_id`` (string: WordNet id for ``imagenet``, folder name for ``imagefolder``, class name
    for ``cifar10``, "" otherwise), ``captions`` (list<string>, [] when none), ``categories``
    (list<int64>, sorted and unique: the COCO category indices 0..79 of a captions image's instances, the
    PASCAL Context-59 classes 0..58 present in a ``pascal_context`` image's mask; [] otherwise),
    ``mask`` (string, the label PNG of a ``pascal_context`` image relative to ``root``, "" otherwise),
    ``width`` and ``height`` (int32, of the decoded image), ``sha256`` (string, hex of the file's or
    member's bytes; of a CIFAR-10 image, of its 3072 bytes as the batch stores them, channel-first) and
    ``split`` (string).
``classes.tsv``
    Columns ``index``, ``class_id``, ``name``; the header alone when the dataset has no classes.
``spec.json``
    ``kind``, ``root`` (absolute, as configured), ``layout`` (the layout detected), ``split``,
    ``n_images`` (manifest rows), ``seed``, ``n_classes``, ``skipped`` (list of {source, member,
    error}, the unreadable images left out with ``skip_unreadable``) and ``sha256``
    (:func:`clipmech.data.datasets.dataset_hash` over ``manifest.parquet`` and ``classes.tsv``).

Kinds (the ``kind`` of the dataset's config entry):

``imagenet``
    ILSVRC2012 ``val`` or ``train`` in the layouts people have (:func:`list_imagenet`).
``imagefolder``
    Any folder of class folders (:func:`list_imagefolder`).
``captions``
    Image-caption pairs: open_clip's CSV/TSV, a folder of webdataset tar shards, or a COCO captions
    JSON with optional instances (:func:`list_captions`).
``cifar10``
    CIFAR-10's python version, read by torchvision (:func:`list_cifar10`).
``pascal_context``
    PASCAL Context in mmseg's layout, images with their Context-59 label masks (:func:`list_pascal_context`).

Nothing is downloaded and nothing is written into the data folder: the dataset is built in a
sibling temporary directory of the output and renamed into place, so a killed job never leaves a
directory that looks complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from contextlib import nullcontext as _nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from clipmech.data import datasets

KINDS = ("imagenet", "imagefolder", "captions", "cifar10", "pascal_context")
#: Image file extensions of ``imagefolder`` (and of ImageNet's class folders), compared lower-case.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
#: Image member extensions of a webdataset sample, in the order one is picked when a sample has several.
WEBDATASET_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
#: Images per ILSVRC2012 split.
IMAGENET_SPLIT_SIZES = {"val": 50_000, "train": 1_281_167}
IMAGENET_N_CLASSES = 1000
COCO_N_CATEGORIES = 80
DEVKIT = "ILSVRC2012_devkit_t12"
DEVKIT_GROUND_TRUTH = f"{DEVKIT}/data/ILSVRC2012_validation_ground_truth.txt"
DEVKIT_META = f"{DEVKIT}/data/meta.mat"
LOC_SOLUTION = "LOC_val_solution.csv"
LOC_SYNSETS = "LOC_synset_mapping.txt"
#: The folder of Kaggle's ImageNet copy that holds the ``train``/``val`` image folders.
KAGGLE_IMAGES = Path("ILSVRC", "Data", "CLS-LOC")
WNID_PATTERN = re.compile(r"^n\d{8}$")
VAL_FILE_PATTERN = re.compile(r"^(ILSVRC2012_val_(\d{8}))\.jpe?g$", re.IGNORECASE)
#: The split read when a dataset's entry names none, by kind (the others record "").
DEFAULT_SPLITS = {"imagenet": "val", "cifar10": "test", "pascal_context": "val"}
#: Images per CIFAR-10 split (torchvision's md5 sums pin the files: 10,000 per batch file).
CIFAR10_SPLIT_SIZES = {"train": 50_000, "test": 10_000}
#: The side of a CIFAR-10 image, and its bytes in its batch: 3 channels of 32 x 32, channel-first.
CIFAR10_SIDE = 32
CIFAR10_IMAGE_BYTES = 3 * CIFAR10_SIDE * CIFAR10_SIDE
#: mmseg's ``PascalContextDataset59`` classes, in mask order 1..59 (0 = background, not a class).
PASCAL_CONTEXT_59 = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle",
    "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow",
    "cup", "curtain", "dog", "door", "fence", "floor", "flower", "food", "grass", "ground",
    "horse", "keyboard", "light", "motorbike", "mountain", "mouse", "person", "plate", "platform",
    "pottedplant", "road", "rock", "sheep", "shelves", "sidewalk", "sign", "sky", "snow", "sofa",
    "table", "track", "train", "tree", "truck", "tvmonitor", "wall", "water", "window", "wood",
)  # fmt: skip
#: mmseg's PASCAL Context layout under ``root`` (the VOC2010 folder): images, label masks, split files.
PASCAL_CONTEXT_IMAGES = "JPEGImages"
PASCAL_CONTEXT_MASKS = "SegmentationClassContext"
PASCAL_CONTEXT_SPLITS = Path("ImageSets", "SegmentationContext")
#: A mask value that marks unlabelled pixels (mmseg's ignore index); every other value is 0..59.
MASK_IGNORE = 255

#: The columns of ``manifest.parquet``, exactly (the module docstring says what each holds).
MANIFEST_SCHEMA = pa.schema(
    [
        ("index", pa.int64()),
        ("source", pa.string()),
        ("member", pa.string()),
        ("label", pa.int64()),
        ("class_id", pa.string()),
        ("captions", pa.list_(pa.string())),
        ("categories", pa.list_(pa.int64())),
        ("mask", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("sha256", pa.string()),
        ("split", pa.string()),
    ]
)
CLASSES_COLUMNS = ("index", "class_id", "name")


class UnreadableImageError(ValueError):
    """An image that does not exist, or that PIL cannot open and decode completely (e.g. truncated)."""


@dataclass
class Sample:
    """One listed sample, before its bytes are read.

    Attributes
    ----------
    path : pathlib.Path
        The image file, the tar shard or the CIFAR-10 batch file holding it.
    source : str
        ``path`` relative to the dataset root (may start with ``../`` for a CSV naming files outside
        its folder).
    member : str
        The image's member name inside the shard, or its row in the CIFAR-10 batch (decimal digits);
        "" for a plain file.
    label : int
        Class index, -1 when none.
    class_id : str
        WordNet id (imagenet), folder name (imagefolder), class name (cifar10), "" otherwise.
    captions : list of str
    categories : list of int
        COCO category indices (sorted, unique), [] otherwise; a PASCAL Context image's are read from its
        mask when the dataset is written (:func:`mask_categories`).
    mask : pathlib.Path or None
        The label mask of a PASCAL Context image, None otherwise.
    pixels : numpy.ndarray or None
        uint8, (3072,): a CIFAR-10 image as its batch stores it (channel-first), hashed instead of a file;
        None otherwise.
    """

    path: Path
    source: str
    member: str = ""
    label: int = -1
    class_id: str = ""
    captions: list[str] = field(default_factory=list)
    categories: list[int] = field(default_factory=list)
    mask: Path | None = None
    pixels: np.ndarray | None = None


@dataclass
class Listing:
    """What a listing function found under a dataset root.

    Attributes
    ----------
    layout : str
        The layout detected (e.g. ``"class-folders"``, ``"flat-devkit"``, ``"csv"``).
    root : pathlib.Path
        The folder ``Sample.source`` is relative to.
    samples : list of Sample
        In the dataset's canonical order (see each listing function).
    classes : pandas.DataFrame
        Columns ``index`` (int64, 0..C-1), ``class_id`` (str), ``name`` (str); no rows without classes.
    """

    layout: str
    root: Path
    samples: list[Sample]
    classes: pd.DataFrame


def _classes(class_ids: list[str], names: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "index": np.arange(len(class_ids), dtype=np.int64),
            "class_id": pd.Series(class_ids, dtype=object),
            "name": pd.Series(names, dtype=object),
        },
        columns=list(CLASSES_COLUMNS),
    )


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _image_files(folder: Path) -> list[Path]:
    """Non-hidden files of ``folder`` (recursively) with an image extension, sorted by path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(dirpath, name))
    return sorted(found)


def _require_root(root: Path, what: str) -> None:
    if not root.exists():
        raise FileNotFoundError(f"{what} root {root} does not exist")


# ImageNet -----------------------------------------------------------------------------------------------------------


def imagenet_classnames() -> list[str]:
    """open_clip's 1000 ImageNet class names, in sorted-WordNet-id order.

    Raises
    ------
    ValueError
        If open_clip does not have exactly 1000 names.
    """
    from open_clip import IMAGENET_CLASSNAMES

    names = list(IMAGENET_CLASSNAMES)
    if len(names) != IMAGENET_N_CLASSES:
        raise ValueError(f"open_clip.IMAGENET_CLASSNAMES has {len(names)} names, expected {IMAGENET_N_CLASSES}")
    return names


def _imagenet_classes(wnids: list[str], where: str) -> pd.DataFrame:
    wnids = sorted(set(wnids))
    if len(wnids) != IMAGENET_N_CLASSES:
        raise ValueError(f"{where}: found {len(wnids)} ImageNet classes, expected {IMAGENET_N_CLASSES}")
    return _classes(wnids, imagenet_classnames())


def _wnid_folders(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and WNID_PATTERN.match(p.name))


def _flat_val_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and VAL_FILE_PATTERN.match(p.name))


def _first_file(candidates: list[Path]) -> Path | None:
    return next((p for p in candidates if p.is_file()), None)


def _devkit_wnids_by_id(meta_path: Path) -> dict[int, str]:
    """ILSVRC2012_ID -> WordNet id of the 1000 leaf synsets (num_children == 0) of the devkit's meta.mat."""
    from scipy.io import loadmat

    try:
        synsets = loadmat(meta_path, squeeze_me=True)["synsets"]
        ids, wnids, children = synsets["ILSVRC2012_ID"], synsets["WNID"], synsets["num_children"]
    except (KeyError, ValueError) as error:
        raise ValueError(
            f"{meta_path} is not the devkit's meta.mat: expected a struct 'synsets' with fields "
            f"ILSVRC2012_ID, WNID, num_children ({error})"
        ) from error
    leaves = {
        int(i): str(w)
        for i, w, n in zip(np.atleast_1d(ids), np.atleast_1d(wnids), np.atleast_1d(children))
        if int(n) == 0
    }
    if len(leaves) != IMAGENET_N_CLASSES:
        raise ValueError(
            f"{meta_path}: found {len(leaves)} leaf synsets (ImageNet classes), expected {IMAGENET_N_CLASSES}"
        )
    return leaves


def list_imagenet(root: str | Path, split: str = "val") -> Listing:
    """List a local ILSVRC2012 split; the layout is detected from what is there.

    Layouts, tried in this order:

    ``class-folders``
        ``<dir>/<wnid>/*.JPEG`` where ``<dir>`` is ``root``, ``root/<split>`` or Kaggle's
        ``root/ILSVRC/Data/CLS-LOC/<split>``; folders named like ``n01440764`` are classes (1000).
    ``flat-devkit`` (val only)
        ``<dir>/ILSVRC2012_val_00000001.JPEG ...`` (``<dir>`` as above) with the devkit's
        ``ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt`` (line i: the
        ILSVRC2012_ID of image i) and ``meta.mat`` (ILSVRC2012_ID -> WordNet id of the 1000 leaf
        synsets), the devkit folder lying in ``<dir>``, its parent or ``root``.
    ``flat-loc`` (val only)
        The same flat folder with Kaggle's ``LOC_val_solution.csv`` (``ImageId``, ``PredictionString``
        whose first token is the WordNet id) in ``<dir>``, its parent or ``root``; the 1000 classes come
        from ``LOC_synset_mapping.txt`` next to it when present, else from the CSV.

    Classes are indexed in sorted-WordNet-id order (the standard order, not the devkit's
    ILSVRC2012_ID order) and named by ``open_clip.IMAGENET_CLASSNAMES``. Samples are sorted by file
    name, so every layout of the same images lists them in the same order with the same labels.

    Parameters
    ----------
    root : str or pathlib.Path
        The folder the user configured.
    split : {"val", "train"}

    Returns
    -------
    Listing
        ``root`` is the configured root; ``Sample.source`` is relative to it.

    Raises
    ------
    FileNotFoundError
        If ``root`` does not exist or matches no layout; the message names the layouts looked for and
        what was missing for each.
    ValueError
        If the split is unknown, the number of classes is not 1000 (naming both numbers), or a flat
        val image has no ground truth.
    """
    root = Path(root)
    if split not in IMAGENET_SPLIT_SIZES:
        raise ValueError(f"unknown ImageNet split {split!r}; allowed: {', '.join(IMAGENET_SPLIT_SIZES)}")
    _require_root(root, "imagenet")
    image_dirs = [root, root / split, root / KAGGLE_IMAGES / split]
    for folder in image_dirs:
        wnid_dirs = _wnid_folders(folder)
        if wnid_dirs:
            classes = _imagenet_classes([d.name for d in wnid_dirs], f"class folders in {folder}")
            index = {wnid: i for i, wnid in enumerate(classes["class_id"])}
            samples = [
                Sample(path=f, source=f.relative_to(root).as_posix(), label=index[d.name], class_id=d.name)
                for d in wnid_dirs
                for f in _image_files(d)
            ]
            return _imagenet_listing("class-folders", root, samples, classes)
    missing = [f"class-folders: no folder named like n01440764 in {', '.join(map(str, image_dirs))}"]
    if split == "val":
        for folder in image_dirs:
            files = _flat_val_files(folder)
            if not files:
                continue
            places = list(dict.fromkeys([folder, folder.parent, root]))
            ground_truth = _first_file([p / DEVKIT_GROUND_TRUTH for p in places])
            meta = _first_file([p / DEVKIT_META for p in places])
            if ground_truth is not None and meta is not None:
                return _imagenet_flat_devkit(root, files, ground_truth, meta)
            solution = _first_file([p / LOC_SOLUTION for p in places])
            if solution is not None:
                return _imagenet_flat_loc(root, files, solution)
            missing = [
                missing[0],
                f"flat-devkit: {len(files)} ILSVRC2012_val_*.JPEG in {folder} but no "
                + " and ".join(
                    name for name, found in ((DEVKIT_GROUND_TRUTH, ground_truth), (DEVKIT_META, meta)) if found is None
                )
                + f" in {', '.join(map(str, places))}",
                f"flat-loc: no {LOC_SOLUTION} in {', '.join(map(str, places))}",
            ]
            break
        else:
            missing += [f"flat-devkit / flat-loc: no ILSVRC2012_val_*.JPEG files in {', '.join(map(str, image_dirs))}"]
    raise FileNotFoundError(
        f"no ImageNet {split} layout found under {root}; looked for "
        + ("class-folders, flat-devkit, flat-loc" if split == "val" else "class-folders (train has no flat layout)")
        + ": "
        + "; ".join(missing)
    )


def _imagenet_listing(layout: str, root: Path, samples: list[Sample], classes: pd.DataFrame) -> Listing:
    samples.sort(key=lambda s: (s.path.name, s.source))
    return Listing(layout=layout, root=root, samples=samples, classes=classes)


def _imagenet_flat_devkit(root: Path, files: list[Path], ground_truth: Path, meta: Path) -> Listing:
    wnid_of_id = _devkit_wnids_by_id(meta)
    classes = _imagenet_classes(list(wnid_of_id.values()), str(meta))
    index = {wnid: i for i, wnid in enumerate(classes["class_id"])}
    ids = [int(line) for line in ground_truth.read_text().split()]
    samples = []
    for f in files:
        number = int(VAL_FILE_PATTERN.match(f.name).group(2))
        if not 1 <= number <= len(ids):
            raise ValueError(f"{f}: no ground truth for image {number} in {ground_truth} ({len(ids)} lines)")
        if ids[number - 1] not in wnid_of_id:
            raise ValueError(
                f"{ground_truth}, line {number}: ILSVRC2012_ID {ids[number - 1]} is not a leaf class of {meta}"
            )
        wnid = wnid_of_id[ids[number - 1]]
        samples.append(Sample(path=f, source=f.relative_to(root).as_posix(), label=index[wnid], class_id=wnid))
    return _imagenet_listing("flat-devkit", root, samples, classes)


def _imagenet_flat_loc(root: Path, files: list[Path], solution: Path) -> Listing:
    table = pd.read_csv(solution, dtype=str, keep_default_na=False)
    for column in ("ImageId", "PredictionString"):
        if column not in table.columns:
            raise ValueError(f"{solution} has no column {column!r}; columns found: {', '.join(table.columns)}")
    wnid_of_image = {
        image: prediction.split()[0] for image, prediction in zip(table["ImageId"], table["PredictionString"])
    }
    synsets = solution.parent / LOC_SYNSETS
    if synsets.is_file():
        wnids = [line.split()[0] for line in synsets.read_text().splitlines() if line.strip()]
        classes = _imagenet_classes(wnids, str(synsets))
    else:
        classes = _imagenet_classes(list(wnid_of_image.values()), f"{solution} (no {LOC_SYNSETS} next to it)")
    index = {wnid: i for i, wnid in enumerate(classes["class_id"])}
    samples = []
    for f in files:
        image_id = VAL_FILE_PATTERN.match(f.name).group(1)
        if image_id not in wnid_of_image:
            raise ValueError(f"{f}: no row with ImageId {image_id} in {solution}")
        wnid = wnid_of_image[image_id]
        if wnid not in index:
            raise ValueError(f"{solution}: {image_id} has WordNet id {wnid}, which is not one of the 1000 classes")
        samples.append(Sample(path=f, source=f.relative_to(root).as_posix(), label=index[wnid], class_id=wnid))
    return _imagenet_listing("flat-loc", root, samples, classes)


# imagefolder --------------------------------------------------------------------------------------------------------


def list_imagefolder(root: str | Path) -> Listing:
    """List a folder of class folders: ``root/<class>/**/<image>``.

    The class is the top-level folder's name; classes are indexed in sorted-name order and named by
    the folder name. Images are files with an extension in :data:`IMAGE_EXTENSIONS` (any case), found
    recursively; hidden files and folders (``.name``) are ignored. Samples are sorted by class, then path.

    Returns
    -------
    Listing
        Layout ``"class-folders"``; ``Sample.source`` is relative to ``root``.

    Raises
    ------
    FileNotFoundError
        If ``root`` does not exist, or holds no class folder with an image; the message names the
        layout looked for.
    """
    root = Path(root)
    _require_root(root, "imagefolder")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and _visible(p)) if root.is_dir() else []
    samples = []
    class_ids = []
    for folder in folders:
        files = _image_files(folder)
        if not files:
            continue
        label = len(class_ids)
        class_ids.append(folder.name)
        samples += [
            Sample(path=f, source=f.relative_to(root).as_posix(), label=label, class_id=folder.name) for f in files
        ]
    if not samples:
        raise FileNotFoundError(
            f"no imagefolder layout under {root}: looked for class-folders root/<class>/<image> with extensions "
            f"{' '.join(IMAGE_EXTENSIONS)}; found {len(folders)} folders and no image in them"
        )
    return Listing(layout="class-folders", root=root, samples=samples, classes=_classes(class_ids, class_ids))


# captions -----------------------------------------------------------------------------------------------------------


def list_captions(
    path: str | Path,
    split: str = "",
    image_key: str = "filepath",
    caption_key: str = "title",
    instances: str | Path | None = None,
    image_root: str | Path | None = None,
) -> Listing:
    """List image-caption pairs; the format is detected from ``path``.

    ``csv`` / ``tsv`` (a ``.csv`` or ``.tsv`` file)
        open_clip's table: column ``image_key`` holds image paths (relative ones resolve against the
        table's folder, the dataset root), ``caption_key`` one caption. ``.tsv`` is tab-separated; a
        ``.csv`` is tab-separated when its header line holds a tab (open_clip's default), else
        comma-separated. One sample per row, in row order.
    ``webdataset`` (a folder of ``*.tar`` shards)
        Samples are members grouped by webdataset's key (the member path up to the first dot of its
        base name): the image is ``<key>.jpg|jpeg|png|webp`` (the first of these present), the caption
        ``<key>.txt`` (one caption; [] without it). Shards in name order, samples in member order;
        ``Sample.source`` is the shard relative to the folder, ``member`` the image's member name.
    ``coco`` (a ``.json`` file)
        COCO captions (``images`` with ``id``, ``file_name``; ``annotations`` with ``image_id``,
        ``caption``): one sample per image in the JSON's order, its captions in annotation order.
        Images lie in ``image_root`` (default: the JSON's folder's sibling named ``split``, else named
        after the JSON, e.g. ``annotations/captions_val2017.json`` -> ``val2017/``). With
        ``instances`` (the instances JSON), ``categories`` lists each image's category indices into
        the 80 categories sorted by COCO id, and those are the classes.

    Parameters
    ----------
    path : str or pathlib.Path
    split : str
        Recorded in the manifest; for COCO also names the default image folder.
    image_key, caption_key : str
        Column names of a CSV/TSV.
    instances : str or pathlib.Path, optional
        COCO instances JSON (coco only).
    image_root : str or pathlib.Path, optional
        Folder of the COCO images.

    Returns
    -------
    Listing
        ``root``: the table's folder (csv/tsv), the shard folder (webdataset) or ``image_root`` (coco).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist or matches no format (names the formats looked for), a folder holds
        no ``*.tar``, or the COCO image folder is missing (names the folders tried).
    ValueError
        If a table lacks a column (lists the columns found), a JSON lacks COCO's keys, or the instances
        do not have 80 categories (naming both numbers).
    """
    path = Path(path)
    _require_root(path, "captions")
    if path.is_dir():
        return _list_webdataset(path)
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _list_table(path, image_key, caption_key)
    if suffix == ".json":
        return _list_coco(path, split, instances, image_root)
    raise FileNotFoundError(
        f"no captions layout at {path}: looked for a .csv/.tsv table (open_clip), a folder of webdataset *.tar "
        "shards, or a COCO captions .json"
    )


def _list_table(path: Path, image_key: str, caption_key: str) -> Listing:
    with open(path, encoding="utf-8") as fh:
        header = fh.readline()
    separator = "\t" if path.suffix.lower() == ".tsv" or "\t" in header else ","
    table = pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False)
    for key, column in (("image_key", image_key), ("caption_key", caption_key)):
        if column not in table.columns:
            raise ValueError(
                f"{path} has no column {column!r} ({key}); columns found: {', '.join(map(str, table.columns))}"
            )
    root = path.parent
    samples = []
    for file, caption in zip(table[image_key], table[caption_key]):
        image = root / file
        samples.append(Sample(path=image, source=Path(os.path.relpath(image, root)).as_posix(), captions=[caption]))
    return Listing(layout=path.suffix.lower().lstrip("."), root=root, samples=samples, classes=_classes([], []))


def _list_webdataset(folder: Path) -> Listing:
    from webdataset.tariterators import base_plus_ext

    shards = sorted(p for p in folder.glob("*.tar") if _visible(p))
    if not shards:
        raise FileNotFoundError(
            f"no captions layout at {folder}: looked for webdataset *.tar shards in the folder and found none "
            "(a table or COCO JSON is given as a file path)"
        )
    samples = []
    for shard in shards:
        groups: dict[str, dict[str, tarfile.TarInfo]] = {}
        try:
            with tarfile.open(shard) as tar:
                members = [m for m in tar.getmembers() if m.isfile()]
                for member in members:
                    key, ext = base_plus_ext(member.name)
                    if key is not None:
                        groups.setdefault(key, {})[ext.lower()] = member
                for key, group in groups.items():
                    ext = next((e for e in WEBDATASET_IMAGE_EXTENSIONS if e in group), None)
                    if ext is None:
                        continue
                    captions = []
                    if "txt" in group:
                        captions = [tar.extractfile(group["txt"]).read().decode("utf-8").strip()]
                    samples.append(
                        Sample(
                            path=shard,
                            source=shard.relative_to(folder).as_posix(),
                            member=group[ext].name,
                            captions=captions,
                        )
                    )
        except tarfile.TarError as error:
            raise UnreadableImageError(f"webdataset shard {shard} is not a readable tar file: {error}") from error
    return Listing(layout="webdataset", root=folder, samples=samples, classes=_classes([], []))


def _read_json(path: Path, keys: tuple[str, ...], what: str) -> dict:
    data = json.loads(path.read_text())
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValueError(
            f"{path} is not a COCO {what} JSON: no key {', '.join(missing)}; keys found: {', '.join(data)}"
        )
    return data


def _list_coco(path: Path, split: str, instances: str | Path | None, image_root: str | Path | None) -> Listing:
    data = _read_json(path, ("images", "annotations"), "captions")
    if image_root is not None:
        tried = [Path(image_root)]
    else:
        names = [split] if split else []
        if path.stem.startswith("captions_"):
            names.append(path.stem.removeprefix("captions_"))
        tried = [path.parent.parent / name for name in dict.fromkeys(names)]
    root = next((p for p in tried if p.is_dir()), None)
    if root is None:
        raise FileNotFoundError(
            f"no image folder for COCO captions {path}: tried {', '.join(map(str, tried))} (set image_root)"
        )
    captions: dict[int, list[str]] = {}
    for annotation in data["annotations"]:
        captions.setdefault(annotation["image_id"], []).append(str(annotation["caption"]).strip())
    categories: dict[int, list[int]] = {}
    classes = _classes([], [])
    if instances is not None:
        objects = _read_json(Path(instances), ("categories", "annotations"), "instances")
        cats = sorted(objects["categories"], key=lambda c: c["id"])
        if len(cats) != COCO_N_CATEGORIES:
            raise ValueError(f"{instances}: found {len(cats)} categories, expected {COCO_N_CATEGORIES}")
        index = {c["id"]: i for i, c in enumerate(cats)}
        for annotation in objects["annotations"]:
            categories.setdefault(annotation["image_id"], set()).add(index[annotation["category_id"]])
        classes = _classes([str(c["id"]) for c in cats], [c["name"] for c in cats])
    samples = [
        Sample(
            path=root / image["file_name"],
            source=Path(image["file_name"]).as_posix(),
            captions=captions.get(image["id"], []),
            categories=sorted(categories.get(image["id"], ())),
        )
        for image in data["images"]
    ]
    return Listing(layout="coco", root=root, samples=samples, classes=classes)


# CIFAR-10 -----------------------------------------------------------------------------------------------------------


def list_cifar10(root: str | Path, split: str = "test") -> Listing:
    """List a local CIFAR-10 copy (the python version), read and md5-checked by ``torchvision.datasets.CIFAR10``.

    ``root`` holds ``cifar-10-batches-py/`` with ``data_batch_1`` ... ``data_batch_5``, ``test_batch`` and
    ``batches.meta`` as the dataset's authors distribute them (pickled dicts); torchvision checks every one
    of them against its md5 sum, whichever split is read. Samples are in torchvision's order (the batch
    files in order, the rows of each in order): sample j of the split is row j % 10,000 of batch file
    j // 10,000. Classes are ``batches.meta``'s ten label names, in label order.

    Returns
    -------
    Listing
        Layout ``"cifar-10-batches-py"``; each sample's ``source`` is its batch file relative to ``root``,
        ``member`` its row (decimal), ``label`` its class index, ``class_id`` the class name and ``pixels``
        its 3072 bytes as the batch stores them.

    Raises
    ------
    ValueError
        If the split is not ``train`` or ``test``, or the split does not hold its 50,000 or 10,000 images
        (naming both numbers).
    FileNotFoundError
        If ``root`` does not exist, or torchvision finds a file missing or corrupted (wrong md5); the message
        names the layout expected.
    """
    from torchvision.datasets import CIFAR10

    root = Path(root)
    if split not in CIFAR10_SPLIT_SIZES:
        raise ValueError(f"unknown CIFAR-10 split {split!r}; allowed: {', '.join(CIFAR10_SPLIT_SIZES)}")
    _require_root(root, "cifar10")
    files = [name for name, _ in (CIFAR10.train_list if split == "train" else CIFAR10.test_list)]
    try:
        dataset = CIFAR10(root, train=split == "train", download=False)
    except RuntimeError as error:
        every = [name for name, _ in CIFAR10.train_list + CIFAR10.test_list] + [CIFAR10.meta["filename"]]
        raise FileNotFoundError(
            f"no CIFAR-10 layout under {root}: torchvision's CIFAR10 finds a file missing or corrupted (an md5 "
            f"sum that differs); expected {root / CIFAR10.base_folder}/ with {', '.join(every)} (the python "
            "version of the dataset; torchvision checks all of them, whichever split is read)"
        ) from error
    expected, found = CIFAR10_SPLIT_SIZES[split], len(dataset.targets)
    if found != expected:
        raise ValueError(f"CIFAR-10 {split}: found {found} images in {', '.join(files)}, but the split has {expected}")
    per_file = expected // len(files)
    # torchvision holds the images height x width x channel; the batches store them channel-first.
    stored_NC = np.ascontiguousarray(dataset.data.transpose(0, 3, 1, 2)).reshape(found, CIFAR10_IMAGE_BYTES)
    classes = list(dataset.classes)
    samples = []
    for j, label in enumerate(dataset.targets):
        path = root / CIFAR10.base_folder / files[j // per_file]
        samples.append(
            Sample(
                path=path,
                source=path.relative_to(root).as_posix(),
                member=str(j % per_file),
                label=int(label),
                class_id=classes[label],
                pixels=stored_NC[j],
            )
        )
    return Listing(layout=CIFAR10.base_folder, root=root, samples=samples, classes=_classes(classes, classes))


# PASCAL Context -----------------------------------------------------------------------------------------------------


def list_pascal_context(root: str | Path, split: str = "val") -> Listing:
    """List a local PASCAL Context copy in mmseg's layout: the images of a split with their Context-59 masks.

    mmseg's ``PascalContextDataset59`` reads ``<root>/ImageSets/SegmentationContext/<split>.txt`` (one image
    id per line), ``<root>/JPEGImages/<id>.jpg`` and ``<root>/SegmentationClassContext/<id>.png`` (labels
    0..59, 0 = background; written by mmseg's ``tools/dataset_converters/pascal_context.py``). ``root`` is
    the VOC2010 directory. Samples are in the split file's order; the classes are the 59 of
    :data:`PASCAL_CONTEXT_59` (mask value v is class v - 1).

    Returns
    -------
    Listing
        Layout ``"mmseg"``; ``Sample.source`` the JPEG and ``Sample.mask`` the PNG (``categories`` are read
        from the masks when the dataset is written: :func:`mask_categories`).

    Raises
    ------
    FileNotFoundError
        If ``root`` or the split file does not exist (the message names mmseg's layout), or the split lists
        an image whose JPEG or mask is missing (the message names it).
    """
    root = Path(root)
    _require_root(root, "pascal_context")
    split_file = root / PASCAL_CONTEXT_SPLITS / f"{split}.txt"
    if not split_file.is_file():
        raise FileNotFoundError(
            f"no PASCAL Context layout under {root}: no split file {split_file}; expected mmseg's layout: "
            f"<root>/{PASCAL_CONTEXT_IMAGES}/<id>.jpg, <root>/{PASCAL_CONTEXT_MASKS}/<id>.png, "
            f"<root>/{PASCAL_CONTEXT_SPLITS.as_posix()}/<split>.txt"
        )
    samples = []
    for name in split_file.read_text().split():
        image, mask = root / PASCAL_CONTEXT_IMAGES / f"{name}.jpg", root / PASCAL_CONTEXT_MASKS / f"{name}.png"
        for path in (image, mask):
            if not path.is_file():
                raise FileNotFoundError(f"PASCAL Context {split} lists {name!r} but {path} does not exist")
        samples.append(Sample(path=image, source=image.relative_to(root).as_posix(), mask=mask))
    names = list(PASCAL_CONTEXT_59)
    return Listing(layout="mmseg", root=root, samples=samples, classes=_classes(names, names))


def mask_categories(mask: Path, size: tuple[int, int]) -> list[int]:
    """The Context-59 classes present in a PASCAL Context label mask: its values 1..59 as 0..58, sorted.

    Parameters
    ----------
    mask : pathlib.Path
        The label PNG (one 8-bit value per pixel: 0 background, 1..59 the classes, 255 unlabelled).
    size : tuple of int
        (width, height) of the image it labels.

    Raises
    ------
    UnreadableImageError
        If the mask cannot be decoded, is not the image's size, or holds a value outside 0..59 and 255 (the
        message names the file and what is wrong).
    """
    try:
        with Image.open(mask) as image:
            values = np.asarray(image)
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
        raise UnreadableImageError(f"unreadable mask {mask}: {type(error).__name__}: {error}") from error
    if values.ndim != 2 or (values.shape[1], values.shape[0]) != tuple(size):
        raise UnreadableImageError(
            f"mask {mask} has shape {values.shape}, but its image is {size[0]} x {size[1]} (width x height)"
        )
    present = np.unique(values)
    bad = present[(present > len(PASCAL_CONTEXT_59)) & (present != MASK_IGNORE)]
    if bad.size:
        raise UnreadableImageError(
            f"mask {mask} holds the values {bad.tolist()}; a Context-59 mask holds 0..{len(PASCAL_CONTEXT_59)} "
            f"and {MASK_IGNORE} (unlabelled)"
        )
    return [int(v) - 1 for v in present if 1 <= v <= len(PASCAL_CONTEXT_59)]


# reading and writing ------------------------------------------------------------------------------------------------


class ShardReader:
    """Keeps the last tar shard open with its members by name, so that reading the members of a shard in
    order costs one pass over its headers (``TarFile.getmember`` searches all members on every call)."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.tar: tarfile.TarFile | None = None
        self.members: dict[str, tarfile.TarInfo] = {}

    def open(self, path: Path, member: str):
        """A binary file object of ``member`` of shard ``path``; KeyError if the shard has no such member."""
        if path != self.path:
            self.close()
            self.tar = tarfile.open(path)
            self.path = path
            self.members = {m.name: m for m in self.tar.getmembers()}
        return self.tar.extractfile(self.members[member])

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()
        self.path, self.tar, self.members = None, None, {}

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_sample(sample: Sample, shards: ShardReader | None = None) -> tuple[str, int, int]:
    """Hash a sample's bytes (1 MiB blocks) and decode it completely: the dataset rule's one pass over the bytes.

    Parameters
    ----------
    sample : Sample
    shards : ShardReader, optional
        Reuse open tar shards across calls (a tar member is otherwise read by opening its shard anew).

    Returns
    -------
    sha256 : str
        Hex digest of the file's (or tar member's) bytes; of a CIFAR-10 image (``sample.pixels``), of its
        3072 bytes as its batch stores them.
    width, height : int
        Of the decoded image (32 x 32 for CIFAR-10).

    Raises
    ------
    UnreadableImageError
        If the file or member is missing, or PIL cannot open or fully decode it (e.g. a truncated
        JPEG); the message names the file (and member).
    """
    if sample.pixels is not None:
        return hashlib.sha256(np.ascontiguousarray(sample.pixels).tobytes()).hexdigest(), CIFAR10_SIDE, CIFAR10_SIDE
    name = f"{sample.path}" + (f" member {sample.member}" if sample.member else "")
    try:
        digest = hashlib.sha256()
        buffer = io.BytesIO()
        if sample.member:
            with ShardReader() if shards is None else _nullcontext(shards) as reader:
                _copy_hashing(reader.open(sample.path, sample.member), digest, buffer)
        else:
            with open(sample.path, "rb") as fh:
                _copy_hashing(fh, digest, buffer)
        buffer.seek(0)
        with Image.open(buffer) as image:
            image.load()
            width, height = image.size
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
        raise UnreadableImageError(f"unreadable image {name}: {type(error).__name__}: {error}") from error
    return digest.hexdigest(), int(width), int(height)


def _copy_hashing(fh, digest, buffer: io.BytesIO) -> None:
    for block in iter(lambda: fh.read(1 << 20), b""):
        digest.update(block)
        buffer.write(block)


def list_dataset(spec: dict) -> Listing:
    """Dispatch a dataset config entry to the listing function of its kind (:func:`list_imagenet`,
    :func:`list_imagefolder`, :func:`list_captions`, :func:`list_cifar10`, :func:`list_pascal_context`).

    Raises
    ------
    ValueError
        If ``kind`` is not one of :data:`KINDS`, or the entry lacks ``root`` (``path`` for captions).
    """
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"unknown natural dataset kind {kind!r}; allowed: {', '.join(KINDS)}")
    key = "path" if kind == "captions" else "root"
    if not spec.get(key):
        raise ValueError(f"a {kind} dataset needs {key!r}")
    if kind == "imagenet":
        return list_imagenet(spec["root"], spec.get("split") or DEFAULT_SPLITS[kind])
    if kind == "imagefolder":
        return list_imagefolder(spec["root"])
    if kind == "cifar10":
        return list_cifar10(spec["root"], spec.get("split") or DEFAULT_SPLITS[kind])
    if kind == "pascal_context":
        return list_pascal_context(spec["root"], spec.get("split") or DEFAULT_SPLITS[kind])
    return list_captions(
        spec["path"],
        split=spec.get("split") or "",
        image_key=spec.get("image_key") or "filepath",
        caption_key=spec.get("caption_key") or "title",
        instances=spec.get("instances"),
        image_root=spec.get("image_root"),
    )


def select(samples: list[Sample], kind: str, split: str, n_images: int | None, seed: int) -> list[Sample]:
    """Check the number of samples found and draw the seeded subset.

    ImageNet must have exactly the split's size (:data:`IMAGENET_SPLIT_SIZES`) unless ``n_images``
    asks for a subset: then fewer files than the split has are allowed (a partial copy), more are not.
    CIFAR-10's count is checked when it is listed (:func:`list_cifar10`); other kinds take what is there.
    The subset is ``numpy.random.default_rng(seed).choice(len, n_images, replace=False)``, sorted, so the
    same files and seed give the same subset.

    Raises
    ------
    ValueError
        On a count mismatch or ``n_images`` larger than the samples found; the message names both numbers.
    """
    found = len(samples)
    if kind == "imagenet":
        expected = IMAGENET_SPLIT_SIZES[split]
        if found > expected or (n_images is None and found != expected):
            raise ValueError(
                f"ImageNet {split}: found {found} images, but the split has {expected}; fewer files than the split "
                "has are allowed only with n_images (a seeded subset)"
            )
    if n_images is None:
        return samples
    if not 1 <= n_images <= found:
        raise ValueError(f"n_images = {n_images}, but {found} images were found (need 1 <= n_images <= {found})")
    index = np.sort(np.random.default_rng(seed).choice(found, size=n_images, replace=False))
    return [samples[i] for i in index]


def manifest_table(samples: list[Sample], hashes: list[tuple[str, int, int]], split: str, root: Path) -> pa.Table:
    """The manifest of samples that were read (:data:`MANIFEST_SCHEMA`); ``hashes`` from :func:`read_sample`,
    ``root`` the listing's root (masks are recorded relative to it)."""
    return pa.Table.from_pydict(
        {
            "index": list(range(len(samples))),
            "source": [s.source for s in samples],
            "member": [s.member for s in samples],
            "label": [s.label for s in samples],
            "class_id": [s.class_id for s in samples],
            "captions": [list(s.captions) for s in samples],
            "categories": [list(s.categories) for s in samples],
            "mask": ["" if s.mask is None else s.mask.relative_to(root).as_posix() for s in samples],
            "width": [h[1] for h in hashes],
            "height": [h[2] for h in hashes],
            "sha256": [h[0] for h in hashes],
            "split": [split] * len(samples),
        },
        schema=MANIFEST_SCHEMA,
    )


def write_natural_dataset(out: str | Path, spec: dict) -> dict:
    """List, check and hash a natural dataset, and write its directory atomically.

    Parameters
    ----------
    out : str or pathlib.Path
        The dataset directory to create; it must not exist and must not lie inside the data folder.
    spec : dict
        The dataset's config entry: ``kind`` (:data:`KINDS`), ``root`` (``path`` for captions),
        ``split`` (imagenet: "val" or "train", default "val"; cifar10: "train" or "test", default
        "test"; pascal_context: the split file's name, default "val"; otherwise recorded as given),
        ``n_images`` (optional seeded subset), ``seed`` (default 0), ``skip_unreadable`` (default
        False), and for captions ``image_key``, ``caption_key``, ``instances``, ``image_root``.

    Returns
    -------
    dict
        The ``spec.json`` written (see the module docstring); for captions it also records ``path``
        and the options used.

    Every selected image is read once (:func:`read_sample`), and a PASCAL Context image's mask with it
    (:func:`mask_categories`; a bad mask counts as an unreadable image). Unreadable images raise, unless
    ``skip_unreadable``: then they are listed in ``skipped`` and left out, so the manifest may have
    fewer rows than ``n_images``. Files are written to a temporary sibling of ``out`` that is renamed
    to ``out`` at the end and removed on any error, so ``out`` exists only complete.

    Raises
    ------
    FileExistsError
        If ``out`` exists.
    ValueError
        If ``out`` lies inside the data folder, the spec is invalid, or a check fails (see
        :func:`list_dataset`, :func:`select`).
    FileNotFoundError
        If the data is missing or matches no layout.
    UnreadableImageError
        If an image cannot be read and ``skip_unreadable`` is false.
    """
    out = Path(out)
    kind = spec.get("kind")
    listing = list_dataset(spec)
    data_root = Path(spec["path"] if kind == "captions" else spec["root"])
    for folder in {data_root if data_root.is_dir() else data_root.parent, listing.root}:
        if out.absolute().resolve().is_relative_to(folder.absolute().resolve()):
            raise ValueError(f"dataset output {out} lies inside the data folder {folder}; write it elsewhere")
    if out.exists():
        raise FileExistsError(f"dataset output {out} exists; delete it to write it again")
    split = spec.get("split") or DEFAULT_SPLITS.get(kind, "")
    seed = int(spec.get("seed", 0) or 0)
    n_images = spec.get("n_images")
    samples = select(listing.samples, kind, split, None if n_images is None else int(n_images), seed)
    kept, hashes, skipped = [], [], []
    with ShardReader() as shards:
        for sample in samples:
            try:
                read = read_sample(sample, shards)
                if sample.mask is not None:
                    sample.categories = mask_categories(sample.mask, read[1:])
                hashes.append(read)
                kept.append(sample)
            except UnreadableImageError as error:
                if not spec.get("skip_unreadable", False):
                    raise
                skipped.append({"source": sample.source, "member": sample.member, "error": str(error)})
    meta = {
        "kind": kind,
        "root": str(listing.root.absolute()),
        "layout": listing.layout,
        "split": split,
        "n_images": len(kept),
        "seed": seed,
        "n_classes": len(listing.classes),
        "skipped": skipped,
    }
    if kind == "captions":
        meta.update(
            path=str(data_root.absolute()),
            image_key=spec.get("image_key") or "filepath",
            caption_key=spec.get("caption_key") or "title",
            instances=None if spec.get("instances") is None else str(Path(spec["instances"]).absolute()),
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        pq.write_table(manifest_table(kept, hashes, split, listing.root), tmp / "manifest.parquet")
        listing.classes.to_csv(tmp / "classes.tsv", sep="\t", index=False)
        meta["sha256"] = datasets.dataset_hash(tmp, kind)
        (tmp / "spec.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta
