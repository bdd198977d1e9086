"""Distribution-shift monitoring with neuron-head pairs on Shapes splits of known concept shares.

methods.md Sec. 5 (neuron-attention paper Sec. 5.2): a concept's score on an image is the norm of
the summed contributions of its top pairs (top k by cos(u_{n,h}, z_concept)) divided by the norm
of the model's output,

    score(image) = || sum_{(n,h) in top_k} s_{n,h} u_{n,h} || / || y ||,

tracked across splits whose true share of images containing the concept is known and changes
from split to split. Agreement is measured, as in the paper, by the point-biserial correlation
between concept presence (0/1 per image) and the score, and also by the Pearson correlation of
the splits' mean scores with their true shares.

The splits form one Shapes dataset (:func:`synthesize`, :func:`build`): ``n_per_split`` images per
split, in split order; in split s exactly round(share[s, f] * n_per_split) images contain concept
f (a colour or shape name), drawn by :func:`clipmech.data.shapes.sample_objects_with`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clipmech.data import shapes


@dataclass(frozen=True)
class ShiftSpec:
    """Splits of a shifting Shapes stream; written as the split dataset's ``spec.json``.

    Attributes
    ----------
    concepts : tuple of str
        Colour or shape names whose shares shift.
    shares : tuple of tuple of float
        shares[s][f] = share of split s's images that contain concept f, in [0, 1].
    n_per_split : int
    image_size : int
    min_objects, max_objects : int
        Objects per image, drawn uniformly.
    seed : int
    """

    concepts: tuple[str, ...]
    shares: tuple[tuple[float, ...], ...]
    n_per_split: int = 100
    image_size: int = 224
    min_objects: int = 1
    max_objects: int = 3
    seed: int = 0
    kind: str = field(default="shapes", init=False)

    def __post_init__(self) -> None:
        allowed = set(shapes.COLOURS) | set(shapes.SHAPES)
        unknown = [c for c in self.concepts if c not in allowed]
        if unknown:
            raise ValueError(
                f"unknown concepts {unknown}; allowed: colours {shapes.COLOURS} and shapes {shapes.SHAPES}"
            )
        for s, row in enumerate(self.shares):
            if len(row) != len(self.concepts) or not all(0.0 <= x <= 1.0 for x in row):
                raise ValueError(
                    f"shares[{s}] = {list(row)} must hold one share in [0, 1] per concept {list(self.concepts)}"
                )
        if len(self.shares) < 2:
            raise ValueError(f"need at least 2 splits to shift between, got {len(self.shares)}")
        if not 1 <= self.min_objects <= self.max_objects <= len(shapes.POSITIONS):
            raise ValueError(f"need 1 <= min_objects <= max_objects <= 5, got {self.min_objects}, {self.max_objects}")

    @property
    def n_images(self) -> int:
        """Images in the dataset: ``n_per_split`` per split."""
        return len(self.shares) * self.n_per_split


def _draw_presence(rng: np.random.Generator, spec: ShiftSpec) -> np.ndarray:
    """Which images get each concept: exactly round(share * n_per_split) per split, shuffled."""
    n = spec.n_per_split
    out = np.zeros((len(spec.shares) * n, len(spec.concepts)), dtype=bool)
    for s, row in enumerate(spec.shares):
        for f, share in enumerate(row):
            out[s * n : (s + 1) * n, f] = rng.permutation(np.arange(n) < int(round(share * n)))
    return out


def _scenes(spec: ShiftSpec) -> Iterator[list[dict]]:
    """The split scenes in image order, drawn lazily from the seed's shift stream after the presence flags."""
    rng = shapes.stream(spec.seed, shapes.STREAM_SHIFT)
    for row in _draw_presence(rng, spec):
        yield shapes.sample_objects_with(
            rng,
            int(rng.integers(spec.min_objects, spec.max_objects + 1)),
            spec.image_size,
            dict(zip(spec.concepts, row.tolist())),
        )


def _rendered(spec: ShiftSpec) -> Iterator[tuple[np.ndarray, np.ndarray, list[dict]]]:
    """:func:`clipmech.data.shapes.render` of the split scenes, each object row with its ``split``."""
    for image, mask, rows in shapes.render(_scenes(spec), spec.image_size):
        yield image, mask, [dict(row, split=row["image_id"] // spec.n_per_split) for row in rows]


def synthesize(spec: ShiftSpec) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Render the split dataset (images in split order) in memory; :func:`build` writes it without holding it.

    Returns
    -------
    images_NHW3 : numpy.ndarray, uint8, (N, S, S, 3)
        N = ``spec.n_images``, S = ``spec.image_size``.
    masks_NHW : numpy.ndarray, uint8, (N, S, S)
        Instance masks.
    objects : pandas.DataFrame
        The object table of :func:`clipmech.data.shapes.synthesize` plus a ``split`` column.
    """
    return shapes.collect(_rendered(spec), spec.n_images, spec.image_size)


def presence(objects: pd.DataFrame, concepts: tuple[str, ...], n_images: int) -> np.ndarray:
    """Whether each image contains an object with each concept (a colour or shape name).

    Returns
    -------
    ndarray of bool, shape (n_images, len(concepts))
    """
    out = np.zeros((n_images, len(concepts)), dtype=bool)
    for f, concept in enumerate(concepts):
        column = "colour" if concept in shapes.COLOURS else "shape"
        out[objects.loc[objects[column] == concept, "image_id"].to_numpy(), f] = True
    return out


def build(directory: str | Path, spec: ShiftSpec, chunk_images: int = shapes.CHUNK_IMAGES) -> None:
    """Write the split dataset like a Shapes dataset (readable with :func:`clipmech.data.datasets.load`).

    The data files are written as the scenes are rendered (:func:`clipmech.data.shapes.write_rendered`;
    byte-identical to :func:`synthesize`'s arrays and table saved whole), then ``spec.json``: ``kind:
    shapes``, the :class:`ShiftSpec`, ``n_images`` and the sha256 of the data files, published last
    (:func:`clipmech.data.shapes.write_dataset`).

    Parameters
    ----------
    directory : path
        The dataset folder; created if missing.
    spec : ShiftSpec
    chunk_images : int
        Images whose object rows are written together; the bytes do not depend on it.
    """
    shapes.write_dataset(directory, _rendered(spec), spec.n_images, spec.image_size, asdict(spec), chunk_images)


def load_spec(directory: str | Path) -> ShiftSpec:
    """The :class:`ShiftSpec` of a split dataset written by :func:`build`."""
    meta = json.loads((Path(directory) / "spec.json").read_text())
    return ShiftSpec(
        concepts=tuple(meta["concepts"]),
        shares=tuple(tuple(row) for row in meta["shares"]),
        **{k: meta[k] for k in ("n_per_split", "image_size", "min_objects", "max_objects", "seed")},
    )


def shift_spec(params: dict, image_size: int) -> ShiftSpec:
    """The :class:`ShiftSpec` of a ``kind: shift`` dataset's config entry at its base dataset's image size."""
    return ShiftSpec(
        concepts=tuple(params["concepts"]),
        shares=tuple(tuple(row) for row in params["shares"]),
        n_per_split=params["n_per_split"],
        image_size=image_size,
        min_objects=params["min_objects"],
        max_objects=params["max_objects"],
        seed=params["seed"],
    )
