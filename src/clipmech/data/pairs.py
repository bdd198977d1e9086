"""Seeded Shapes minimal pairs for causal tracing (methods.md Sec. 8, "semantic minimal pairs").

Each base scene holds two objects with distinct shapes, colours and positions
(:func:`clipmech.data.shapes.sample_objects`). Two distinct positions of the five can not both be
the centre, so at least one object of every base scene is at a corner. Base scene s gives five
images, each a minimal change of the base, everything else (the geometry, the other object) kept:

========  ==========  =====================================================================
image     kind        change
========  ==========  =====================================================================
5s        (base)
5s + 1    colour      one object's colour -> a colour not in the scene
5s + 2    shape       one object's shape -> a shape not in the scene
5s + 3    position    a corner object -> a corner no object is at: its centre moves by the
                      cells' offset rounded to whole pixels, its radius and jitter stay
5s + 4    binding     the two objects' colours swapped
========  ==========  =====================================================================

Moving by whole pixels makes the moved object's pixels an exact translate of its base pixels (same
area and outline; moving by the exact offset, a fraction of a pixel off the grid, re-rasterises
the outline: at 224 px that changed 25 of 48 moved objects' areas, by up to 67 of about 1900
pixels). The half pixel of rounding stays inside the 0.02-cell margin that
:func:`clipmech.data.shapes.sample_objects` leaves around every object from 75 px on, so the object
stays in its new cell; smaller images can lose edge pixels to the canvas border.

The object changed by ``colour`` and ``shape``, the new values and the corner object that moves
are drawn from the seed's pairs stream (:data:`clipmech.data.shapes.STREAM_PAIRS`). Every image's
caption is :func:`clipmech.data.shapes.caption` of its objects in table order; colours and shapes
are one word each and every corner reads "at the <row> <column>", so a variant's caption (the
foil) has as many words as its base's. The dataset is written like a Shapes dataset (readable by
:func:`clipmech.data.datasets.load`) plus ``pairs.tsv``, covered by the dataset hash.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clipmech.data import datasets, shapes

#: The variants of a base scene, in image order (image 5s + 1 + k is kind KINDS[k]).
KINDS = ("colour", "shape", "position", "binding")
CORNERS = tuple(position for position in shapes.POSITIONS if position != "center")
#: Columns of the pairs table (:func:`synthesize`).
PAIR_COLUMNS = (
    "pair_id",
    "scene",
    "kind",
    "clean",
    "corrupt",
    "caption",
    "foil",
    "object",
    "clean_value",
    "corrupt_value",
)
N_OBJECTS = 2


@dataclass(frozen=True)
class PairsSpec:
    """What a minimal-pairs dataset is made of; written next to it as ``spec.json``.

    Attributes
    ----------
    n_scenes : int
        Base scenes; the dataset holds 5 images and 4 pairs per scene.
    image_size : int
        Side of the square images in pixels (>= 16).
    seed : int
        Seed of the pairs stream (>= 0).

    Raises
    ------
    ValueError
        If ``n_scenes`` < 1, ``image_size`` < 16 or ``seed`` < 0.
    """

    n_scenes: int
    image_size: int = 224
    seed: int = 0
    kind: str = field(default="pairs", init=False)

    def __post_init__(self) -> None:
        if self.n_scenes < 1:
            raise ValueError(f"n_scenes must be >= 1, got {self.n_scenes}")
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16 pixels, got {self.image_size}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")


def _changed(objects: list[dict], index: int, **values) -> list[dict]:
    """A copy of the scene with object ``index`` (0-based) given ``values``."""
    return [dict(obj, **values) if i == index else dict(obj) for i, obj in enumerate(objects)]


def _variants(rng: np.random.Generator, base: list[dict], image_size: int) -> list[tuple]:
    """The four variants of a two-object base scene, in :data:`KINDS` order.

    Returns
    -------
    list of (objects, object_id, clean_value, corrupt_value)
        object_id is 1-based (0 for binding, which changes both objects).
    """
    variants = []
    for attribute, values in (("colour", shapes.COLOURS), ("shape", shapes.SHAPES)):
        i = int(rng.integers(len(base)))
        unused = [value for value in values if value not in {obj[attribute] for obj in base}]
        new = unused[int(rng.integers(len(unused)))]
        variants.append((_changed(base, i, **{attribute: new}), i + 1, base[i][attribute], new))

    at_corner = [i for i, obj in enumerate(base) if obj["position"] in CORNERS]
    i = at_corner[int(rng.integers(len(at_corner)))]
    free = [corner for corner in CORNERS if corner not in {obj["position"] for obj in base}]
    new = free[int(rng.integers(len(free)))]
    (row, col), (new_row, new_col) = shapes.CELLS[base[i]["position"]], shapes.CELLS[new]
    dx, dy = round((new_col - col) * image_size / 3), round((new_row - row) * image_size / 3)
    moved = _changed(base, i, position=new, cx=base[i]["cx"] + dx, cy=base[i]["cy"] + dy)
    variants.append((moved, i + 1, base[i]["position"], new))

    first, second = base
    swapped = [dict(first, colour=second["colour"]), dict(second, colour=first["colour"])]
    variants.append((swapped, 0, f"{first['colour']},{second['colour']}", f"{second['colour']},{first['colour']}"))
    return variants


def synthesize(spec: PairsSpec) -> tuple[np.ndarray, np.ndarray, pd.DataFrame, pd.DataFrame]:
    """Render the minimal pairs (module docstring) from the seed's pairs stream.

    Returns
    -------
    images_NHW3 : numpy.ndarray, uint8, (5 n_scenes, S, S, 3)
        Base scene s is image 5s, its colour, shape, position and binding variants images 5s + 1 to
        5s + 4.
    masks_NHW : numpy.ndarray, uint8, (5 n_scenes, S, S)
        Instance masks, object id per pixel, 0 = background.
    objects : pandas.DataFrame
        The object table of :func:`clipmech.data.shapes.render_scenes` (two rows per image).
    pairs : pandas.DataFrame
        One row per (scene, kind), Q = 4 n_scenes rows in scene then :data:`KINDS` order, columns
        :data:`PAIR_COLUMNS`: ``pair_id`` (row number), ``scene``, ``kind``, ``clean`` (the base
        image id 5s), ``corrupt`` (the variant's image id), ``caption`` (the base's caption),
        ``foil`` (the variant's caption), ``object`` (1-based id of the changed object; 0 for
        binding), ``clean_value`` and ``corrupt_value`` (the changed attribute before and after:
        a colour, shape or position name; for binding the colours of objects 1 and 2 joined by a
        comma, e.g. "red,blue" -> "blue,red").
    """
    rng = shapes.stream(spec.seed, shapes.STREAM_PAIRS)
    scenes, rows = [], []
    for scene in range(spec.n_scenes):
        base = shapes.sample_objects(rng, N_OBJECTS, spec.image_size)
        clean = len(scenes)
        scenes.append(base)
        for kind, (objects, object_id, clean_value, corrupt_value) in zip(
            KINDS, _variants(rng, base, spec.image_size), strict=True
        ):
            rows.append(
                {
                    "pair_id": len(rows),
                    "scene": scene,
                    "kind": kind,
                    "clean": clean,
                    "corrupt": len(scenes),
                    "caption": shapes.caption(base),
                    "foil": shapes.caption(objects),
                    "object": object_id,
                    "clean_value": clean_value,
                    "corrupt_value": corrupt_value,
                }
            )
            scenes.append(objects)
    images, masks, objects = shapes.render_scenes(scenes, spec.image_size)
    return images, masks, objects, pd.DataFrame(rows, columns=list(PAIR_COLUMNS))


def save(
    directory: str | Path,
    spec: PairsSpec,
    images: np.ndarray,
    masks: np.ndarray,
    objects: pd.DataFrame,
    pairs: pd.DataFrame,
) -> None:
    """Write a minimal-pairs dataset: ``images.npy``, ``masks.npy``, ``objects.tsv``, ``pairs.tsv``, ``spec.json``.

    ``spec.json`` holds ``kind: pairs``, the :class:`PairsSpec`, ``n_images``, ``n_pairs`` and the
    sha256 of the four data files (:func:`clipmech.data.datasets.dataset_hash` of kind ``pairs``).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "images.npy", images)
    np.save(directory / "masks.npy", masks)
    objects.to_csv(directory / "objects.tsv", sep="\t", index=False)
    pairs.to_csv(directory / "pairs.tsv", sep="\t", index=False)
    meta = {**asdict(spec), "n_images": int(images.shape[0]), "n_pairs": len(pairs)}
    meta["sha256"] = datasets.dataset_hash(directory, spec.kind)
    (directory / "spec.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def build(directory: str | Path, spec: PairsSpec) -> None:
    """Synthesise a minimal-pairs dataset and write it to ``directory`` (see :func:`save`)."""
    save(directory, spec, *synthesize(spec))
