"""Seeded synthetic Shapes dataset (methods.md Sec. 1; shapes paper Sec. 3.4.1).

Each image holds 1-5 objects on a white background. An object has a shape (5), a colour (6) and a
position (5 cells of a 3 x 3 grid: the four corners and the centre). Positions within an image are
distinct, so objects never overlap; with ``distinct_attributes`` (the reference code's choice)
shapes and colours are also drawn without replacement inside an image.

Everything is drawn from ``numpy.random.Generator`` streams derived from one integer seed through
``numpy.random.SeedSequence``, and rendered with Pillow without anti-aliasing, so the same seed gives
byte-identical images, instance masks and object tables.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from clipmech import artefacts
from clipmech.data import datasets

SHAPES = ("circle", "triangle", "square", "pentagon", "hexagon")
COLOURS = ("red", "green", "blue", "pink", "black", "yellow")
POSITIONS = ("top-left", "top-right", "bottom-left", "bottom-right", "center")
#: The 16 features of Algorithm 1 of the shapes paper, in a fixed order: shapes, colours, positions.
FEATURES = SHAPES + COLOURS + POSITIONS
FEATURE_TYPES = ("shape",) * len(SHAPES) + ("colour",) * len(COLOURS) + ("position",) * len(POSITIONS)

RGB = {
    "red": (220, 20, 20),
    "green": (20, 160, 40),
    "blue": (30, 60, 220),
    "pink": (255, 105, 180),
    "black": (0, 0, 0),
    "yellow": (240, 210, 0),
}
#: (row, column) of each position's cell in the 3 x 3 grid.
CELLS = {
    "top-left": (0, 0),
    "top-right": (0, 2),
    "bottom-left": (2, 0),
    "bottom-right": (2, 2),
    "center": (1, 1),
}
#: Words used in captions and prompts for each position.
POSITION_PHRASES = {
    "top-left": "at the top left",
    "top-right": "at the top right",
    "bottom-left": "at the bottom left",
    "bottom-right": "at the bottom right",
    "center": "in the center",
}
N_SIDES = {"triangle": 3, "square": 4, "pentagon": 5, "hexagon": 6}

#: Independent stream ids spawned from the seed: analysis datasets and training scenes never share
#: random numbers, whatever their seeds.
STREAM_DATASET = 0
STREAM_TRAIN = 1
STREAM_HELDOUT = 2
STREAM_SHIFT = 3
STREAM_PAIRS = 4

#: Images whose object rows :func:`write_rendered` holds before writing them, by default.
CHUNK_IMAGES = 1024


@dataclass(frozen=True)
class ShapesSpec:
    """What a Shapes dataset is made of; written next to it as ``spec.json``.

    Attributes
    ----------
    n_per_count : int
        Images per object count (paper: 100, giving 500 images).
    image_size : int
        Side of the square images in pixels (paper: 224).
    min_objects, max_objects : int
        Object counts run from ``min_objects`` to ``max_objects`` inclusive (1-5).
    distinct_attributes : bool
        Draw shapes and colours without replacement inside an image.
    seed : int
        Seed of the dataset stream.
    """

    n_per_count: int = 100
    image_size: int = 224
    min_objects: int = 1
    max_objects: int = 5
    distinct_attributes: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.min_objects <= self.max_objects <= len(POSITIONS):
            raise ValueError(
                f"object counts must satisfy 1 <= min_objects <= max_objects <= {len(POSITIONS)}, "
                f"got min_objects={self.min_objects}, max_objects={self.max_objects}"
            )
        if self.n_per_count < 1:
            raise ValueError(f"n_per_count must be >= 1, got {self.n_per_count}")
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16 pixels, got {self.image_size}")

    @property
    def n_images(self) -> int:
        """Images in the dataset: ``n_per_count`` per object count."""
        return self.n_per_count * (self.max_objects - self.min_objects + 1)


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Vertices of a regular polygon with circumradius ``r`` pointing up (square: axis-aligned)."""
    n = N_SIDES[shape]
    offset = -math.pi / 2 if shape != "square" else -math.pi / 4
    return [
        (cx + r * math.cos(offset + 2 * math.pi * i / n), cy + r * math.sin(offset + 2 * math.pi * i / n))
        for i in range(n)
    ]


def draw_scene(objects: list[dict], image_size: int, with_mask: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Render objects into an RGB image and an instance mask.

    Parameters
    ----------
    objects : list of dict
        Each with keys ``shape``, ``colour``, ``cx``, ``cy``, ``radius`` (pixels); object ids are
        1-based list positions.
    image_size : int
        Side of the square canvas in pixels.

    Returns
    -------
    image_HW3 : numpy.ndarray, uint8, (image_size, image_size, 3)
        White background with the objects.
    mask_HW : numpy.ndarray, uint8, (image_size, image_size), or None without ``with_mask``
        Object id per pixel, 0 = background. The image and mask are drawn from the same geometry
        without anti-aliasing, so every mask pixel of an object has exactly its colour.
    """
    image = Image.new("RGB", (image_size, image_size), (255, 255, 255))
    canvases = [(ImageDraw.Draw(image), lambda obj, object_id: RGB[obj["colour"]])]
    if with_mask:
        mask = Image.new("L", (image_size, image_size), 0)
        canvases.append((ImageDraw.Draw(mask), lambda obj, object_id: object_id))
    for object_id, obj in enumerate(objects, start=1):
        for canvas, fill_of in canvases:
            fill = fill_of(obj, object_id)
            cx, cy, r = obj["cx"], obj["cy"], obj["radius"]
            if obj["shape"] == "circle":
                canvas.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
            else:
                canvas.polygon(_polygon(obj["shape"], cx, cy, r), fill=fill)
    return np.asarray(image, dtype=np.uint8), np.asarray(mask, dtype=np.uint8) if with_mask else None


def sample_objects(
    rng: np.random.Generator, n_objects: int, image_size: int, distinct_attributes: bool = True
) -> list[dict]:
    """Draw the attributes and geometry of one scene.

    Positions are always distinct (one object per grid cell). The circumradius is drawn in
    [0.30, 0.42] of a cell side and the centre jittered by up to 0.06 of a cell, which keeps every
    object inside its own cell.

    Returns
    -------
    list of dict
        ``shape``, ``colour``, ``position``, ``cx``, ``cy``, ``radius`` per object.
    """
    cell = image_size / 3
    positions = rng.choice(len(POSITIONS), size=n_objects, replace=False)
    shapes = rng.choice(len(SHAPES), size=n_objects, replace=not distinct_attributes)
    colours = rng.choice(len(COLOURS), size=n_objects, replace=not distinct_attributes)
    radii = rng.uniform(0.30, 0.42, size=n_objects) * cell
    jitter = rng.uniform(-0.06, 0.06, size=(n_objects, 2)) * cell
    objects = []
    for i in range(n_objects):
        position = POSITIONS[positions[i]]
        row, col = CELLS[position]
        objects.append(
            {
                "shape": SHAPES[shapes[i]],
                "colour": COLOURS[colours[i]],
                "position": position,
                "cx": (col + 0.5) * cell + jitter[i, 0],
                "cy": (row + 0.5) * cell + jitter[i, 1],
                "radius": radii[i],
            }
        )
    return objects


def sample_objects_with(
    rng: np.random.Generator,
    n_objects: int,
    image_size: int,
    present: dict[str, bool],
    distinct_attributes: bool = True,
) -> list[dict]:
    """Draw a scene in which given colours and shapes are present or absent.

    Draws :func:`sample_objects`, then recolours (reshapes) objects: a feature that must be
    present and is missing is given to a random object whose value is not itself required; a
    feature that must be absent is replaced on every object holding it by a random value that is
    neither absent-required nor (with ``distinct_attributes``) already in the scene. Used for
    splits whose concept shares are known (distribution-shift monitoring, methods.md Sec. 5).

    Parameters
    ----------
    rng : numpy.random.Generator
    n_objects, image_size : int
        As in :func:`sample_objects`.
    present : dict of str to bool
        Colour or shape names (from ``COLOURS`` and ``SHAPES``) that must be present (True) or
        absent (False).
    distinct_attributes : bool

    Returns
    -------
    list of dict
        As :func:`sample_objects`.

    Raises
    ------
    ValueError
        If a key is not a colour or shape, or the constraints cannot hold in ``n_objects`` objects
        (more required features of one attribute than objects, or too few allowed values left).
    """
    unknown = sorted(set(present) - set(COLOURS) - set(SHAPES))
    if unknown:
        raise ValueError(f"present names unknown features {unknown}; allowed: colours {COLOURS} and shapes {SHAPES}")
    objects = sample_objects(rng, n_objects, image_size, distinct_attributes)
    for attribute, values in (("colour", COLOURS), ("shape", SHAPES)):
        required = [f for f in values if present.get(f) is True]
        banned = {f for f in values if present.get(f) is False}
        if len(required) > n_objects:
            raise ValueError(
                f"{len(required)} {attribute}s {required} must be present but the scene has {n_objects} objects"
            )
        for feature in required:
            if feature not in [obj[attribute] for obj in objects]:
                free = [i for i, obj in enumerate(objects) if obj[attribute] not in required]
                objects[free[rng.integers(len(free))]][attribute] = feature
        for obj in objects:
            if obj[attribute] in banned:
                taken = {o[attribute] for o in objects} if distinct_attributes else set()
                allowed = [v for v in values if v not in banned and v not in taken]
                if not allowed:
                    raise ValueError(f"no {attribute} is left for an object once {sorted(banned)} are excluded")
                obj[attribute] = allowed[rng.integers(len(allowed))]
    return objects


def stream(seed: int, stream_id: int) -> np.random.Generator:
    """The generator of one named stream (dataset, training, held-out) of a seed."""
    return np.random.default_rng(np.random.SeedSequence([seed, stream_id]))


def sample_scenes(spec: ShapesSpec) -> Iterator[list[dict]]:
    """Draw the scenes of a Shapes dataset (methods.md Sec. 1) from its seed's dataset stream, in image order.

    ``n_per_count`` scenes with ``min_objects`` objects come first, then ``min_objects + 1``, and so on.
    Scenes are drawn lazily, one per ``next``; rendering draws no random numbers, so every consumer
    (:func:`synthesize`, :func:`build`) sees the same scenes.

    Yields
    ------
    list of dict
        One scene's objects (:func:`sample_objects`); ``spec.n_images`` scenes in all.
    """
    rng = stream(spec.seed, STREAM_DATASET)
    for n_objects in range(spec.min_objects, spec.max_objects + 1):
        for _ in range(spec.n_per_count):
            yield sample_objects(rng, n_objects, spec.image_size, spec.distinct_attributes)


def render(scenes: Iterable[list[dict]], image_size: int) -> Iterator[tuple[np.ndarray, np.ndarray, list[dict]]]:
    """Render scenes one at a time: the one loop behind :func:`synthesize`, :func:`render_scenes` and :func:`build`.

    Parameters
    ----------
    scenes : iterable of object lists
        From :func:`sample_objects` or :func:`sample_objects_with`; scene i becomes image i.
    image_size : int
        Side S of the square images in pixels.

    Yields
    ------
    image_HW3 : numpy.ndarray, uint8, (S, S, 3)
    mask_HW : numpy.ndarray, uint8, (S, S)
        Instance mask, object id per pixel, 0 = background.
    rows : list of dict
        The image's rows of the object table (:func:`synthesize`).
    """
    for image_id, objects in enumerate(scenes):
        image, mask = draw_scene(objects, image_size)
        yield image, mask, _object_rows(image_id, objects, mask)


def collect(
    rendered: Iterable[tuple[np.ndarray, np.ndarray, list[dict]]], n_images: int, image_size: int
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Stack rendered scenes (:func:`render`) in memory.

    Returns
    -------
    images_NHW3 : numpy.ndarray, uint8, (n_images, S, S, 3)
    masks_NHW : numpy.ndarray, uint8, (n_images, S, S)
    objects : pandas.DataFrame
        All rows, in order.

    Raises
    ------
    ValueError
        If ``rendered`` yields more or fewer than ``n_images`` items.
    """
    images = np.empty((n_images, image_size, image_size, 3), dtype=np.uint8)
    masks = np.empty((n_images, image_size, image_size), dtype=np.uint8)
    rows = []
    count = 0
    for image, mask, image_rows in rendered:
        if count == n_images:
            raise ValueError(f"the rendered scenes hold more than the {n_images} images announced")
        images[count], masks[count] = image, mask
        rows.extend(image_rows)
        count += 1
    if count != n_images:
        raise ValueError(f"the rendered scenes hold {count} images, not the {n_images} announced")
    return images, masks, pd.DataFrame(rows)


def synthesize(spec: ShapesSpec) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Generate the Shapes dataset (methods.md Sec. 1) in memory; :func:`build` writes it without holding it.

    Images are ordered by object count (``n_per_count`` images with ``min_objects`` objects first).

    Returns
    -------
    images_NHW3 : numpy.ndarray, uint8, (N, S, S, 3)
    masks_NHW : numpy.ndarray, uint8, (N, S, S)
        Instance masks, object id per pixel, 0 = background.
    objects : pandas.DataFrame
        One row per object: image_id, object_id, n_objects, shape, colour, position, bbox_x0,
        bbox_y0, bbox_x1, bbox_y1 (pixel bounds, exclusive upper), area (pixels).
    """
    return collect(render(sample_scenes(spec), spec.image_size), spec.n_images, spec.image_size)


def render_scenes(scenes: list[list[dict]], image_size: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Render given scenes into images, instance masks and the object table, as :func:`synthesize` does.

    Parameters
    ----------
    scenes : list of object lists
        From :func:`sample_objects` or :func:`sample_objects_with`; scene i becomes image i.
    image_size : int

    Returns
    -------
    images_NHW3, masks_NHW, objects
        As :func:`synthesize`.
    """
    return collect(render(scenes, image_size), len(scenes), image_size)


def _object_rows(image_id: int, objects: list[dict], mask_HW: np.ndarray) -> list[dict]:
    rows = []
    for object_id, obj in enumerate(objects, start=1):
        ys, xs = np.nonzero(mask_HW == object_id)
        rows.append(
            {
                "image_id": image_id,
                "object_id": object_id,
                "n_objects": len(objects),
                "shape": obj["shape"],
                "colour": obj["colour"],
                "position": obj["position"],
                "bbox_x0": int(xs.min()),
                "bbox_y0": int(ys.min()),
                "bbox_x1": int(xs.max()) + 1,
                "bbox_y1": int(ys.max()) + 1,
                "area": int(xs.size),
            }
        )
    return rows


def feature_counts(objects: pd.DataFrame, n_images: int) -> np.ndarray:
    """Count the objects with each of the 16 features in every image.

    Parameters
    ----------
    objects : pandas.DataFrame
        The object table (columns image_id, shape, colour, position).
    n_images : int
        Number of images N (images without objects get a zero row).

    Returns
    -------
    counts_NF : numpy.ndarray, float64, (N, 16)
        ``counts_NF[i, f]`` = number of objects in image i with feature ``FEATURES[f]``
        (the o_i of Algorithm 1 of the shapes paper before averaging over the top-k images).
    """
    counts = np.zeros((n_images, len(FEATURES)), dtype=np.float64)
    index = {feature: f for f, feature in enumerate(FEATURES)}
    for column in ("shape", "colour", "position"):
        f = objects[column].map(index).to_numpy()
        np.add.at(counts, (objects["image_id"].to_numpy(), f), 1.0)
    return counts


def caption(objects: list[dict], rng: np.random.Generator | None = None, p_drop: float = 0.0) -> str:
    """Describe a scene: "a red square at the top left and a blue circle in the center".

    With ``rng`` and ``p_drop`` > 0 each attribute of each object is left out independently with
    probability ``p_drop`` (at least one kept per object; a missing shape reads "shape"), which
    teaches a model the partial prompts used for zero-shot evaluation ("a red shape", "a square").
    Objects are listed in a random order when ``rng`` is given, else in table order.
    """
    order = rng.permutation(len(objects)) if rng is not None else range(len(objects))
    phrases = []
    for i in order:
        obj = objects[i]
        keep = [True, True, True]
        if rng is not None and p_drop > 0:
            keep = list(rng.random(3) >= p_drop)
            if not any(keep):
                keep[rng.integers(3)] = True
        colour, shape, position = keep
        words = ["a"]
        if colour:
            words.append(obj["colour"])
        words.append(obj["shape"] if shape else "shape")
        if position:
            words.append(POSITION_PHRASES[obj["position"]])
        phrases.append(" ".join(words))
    return " and ".join(phrases)


def write_rendered(
    directory: str | Path,
    rendered: Iterable[tuple[np.ndarray, np.ndarray, list[dict]]],
    n_images: int,
    image_size: int,
    chunk_images: int = CHUNK_IMAGES,
) -> None:
    """Write rendered scenes as ``images.npy``, ``masks.npy`` and ``objects.tsv`` without holding them.

    The files are byte-identical to ``numpy.save`` of the stacked images (N, S, S, 3) and masks (N, S, S)
    and to ``DataFrame(rows).to_csv(sep="\\t", index=False)`` of all rows. The ``.npy`` headers are written
    first, then each image and mask as it comes; the object rows are written every ``chunk_images``
    images. The three files are written to temporary names in ``directory`` and renamed only once all
    of them are complete (:func:`clipmech.artefacts.write_together`), so none is ever partial under its
    own name.

    Parameters
    ----------
    directory : path
        Created if missing.
    rendered : iterable of (image_HW3, mask_HW, rows)
        From :func:`render`: uint8 (S, S, 3) and (S, S) arrays and the image's object rows.
    n_images : int
        N, the number of items ``rendered`` yields (written into the ``.npy`` headers first).
    image_size : int
        S.
    chunk_images : int
        Images whose object rows are held and written together (the bytes do not depend on it).

    Raises
    ------
    ValueError
        If ``chunk_images`` < 1, an image or mask is not uint8 of the shape above, or ``rendered`` yields
        more or fewer than ``n_images`` items; no file is published then.
    """
    if chunk_images < 1:
        raise ValueError(f"chunk_images must be >= 1, got {chunk_images}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    expected = {"image": (image_size, image_size, 3), "mask": (image_size, image_size)}
    uint8 = np.lib.format.dtype_to_descr(np.dtype(np.uint8))

    def write_to(images_fh, masks_fh, objects_fh) -> None:
        for fh, name in ((images_fh, "image"), (masks_fh, "mask")):
            header = {"descr": uint8, "fortran_order": False, "shape": (n_images, *expected[name])}
            np.lib.format.write_array_header_1_0(fh, header)
        rows, written = [], 0

        def write_rows() -> None:
            objects_fh.write(pd.DataFrame(rows).to_csv(sep="\t", index=False, header=objects_fh.tell() == 0).encode())
            rows.clear()

        for image, mask, image_rows in rendered:
            if written == n_images:
                raise ValueError(f"the rendered scenes hold more than the {n_images} images announced")
            for array, name, fh in ((image, "image", images_fh), (mask, "mask", masks_fh)):
                if array.dtype != np.uint8 or array.shape != expected[name]:
                    raise ValueError(
                        f"expected a uint8 {name} of shape {expected[name]}, got {array.dtype} {array.shape}"
                    )
                fh.write(array.tobytes())
            rows.extend(image_rows)
            written += 1
            if written % chunk_images == 0:
                write_rows()
        if written != n_images:
            raise ValueError(f"the rendered scenes hold {written} images, not the {n_images} announced")
        if rows:
            write_rows()

    artefacts.write_together(
        [directory / "images.npy", directory / "masks.npy", directory / "objects.tsv"],
        write_to,
        rule=None,
        record=False,
    )


def build(directory: str | Path, spec: ShapesSpec, chunk_images: int = CHUNK_IMAGES) -> None:
    """Synthesise a Shapes dataset into ``directory`` without holding it whole (methods.md Sec. 1).

    Writes ``images.npy``, ``masks.npy`` and ``objects.tsv`` (:func:`write_rendered`, byte-identical to
    :func:`synthesize`'s arrays and table saved whole), then ``spec.json``: the spec, ``kind: shapes``,
    ``n_images`` and the sha256 of the three data files (the dataset hash used in activation-store
    provenance). ``spec.json`` is published last, by rename, so a dataset without it is incomplete.

    Parameters
    ----------
    directory : path
        The dataset folder; created if missing.
    spec : ShapesSpec
    chunk_images : int
        Images whose object rows are written together (:func:`write_rendered`); the bytes do not depend on it.
    """
    rendered = render(sample_scenes(spec), spec.image_size)
    write_dataset(directory, rendered, spec.n_images, spec.image_size, {"kind": "shapes", **asdict(spec)}, chunk_images)


def write_dataset(
    directory: str | Path,
    rendered: Iterable[tuple[np.ndarray, np.ndarray, list[dict]]],
    n_images: int,
    image_size: int,
    spec_fields: dict,
    chunk_images: int = CHUNK_IMAGES,
) -> None:
    """Write a synthetic dataset of rendered scenes: the data files (:func:`write_rendered`), then ``spec.json``
    holding ``spec_fields``, ``n_images`` and the sha256 of the data files (the dataset hash used in
    activation-store provenance). ``spec.json`` is published last, by rename, so a dataset without it is
    incomplete. The one writer of Shapes datasets and their shift splits.

    Raises
    ------
    ValueError
        As :func:`write_rendered`; no file is published then.
    """
    write_rendered(directory, rendered, n_images, image_size, chunk_images)
    meta = {**spec_fields, "n_images": n_images, "sha256": datasets.dataset_hash(directory)}
    artefacts.write_text(Path(directory) / "spec.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
