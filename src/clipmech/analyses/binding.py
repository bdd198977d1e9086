"""Binding benchmark on Shapes scenes and the prompts of the Grad-CAM binding check.

Zero-shot binding tests of the shapes paper's question (Sec. 3.3: does CLIP bind attributes to the
right object?) on the analysis dataset's images with at least two objects. Every test is a
two-way forced choice between the true description of an image and a foil that differs in one
binding (chance 0.5); an image counts as correct when its embedding is more cosine-similar to the
true description than to the foil (ties count as failures, :func:`clipmech.models.zeroshot.pairwise_preference`).

Prompts follow the grammar of the training captions (:func:`clipmech.data.shapes.caption`): object
phrases "a red square at the top left" joined by " and ", with the attributes a task does not
describe left out, as the training captions leave out dropped attributes ("a red square").
Objects are listed in the object table's order; training captions list them in a random order,
so the order carries no information.

Tasks (``TASKS``; ``described`` are the attributes every object phrase names):

=================  =======================  ==================================================
task               described                foil
=================  =======================  ==================================================
``colour_swap``    colour, shape            the colours of two objects exchanged: "a red square
                                            and a blue circle" vs "a blue square and a red
                                            circle" (the training metric, for any count)
``shape_swap``     colour, shape, position  the shapes of two objects exchanged ("a red circle
                                            at the top left and a blue square in the center");
                                            without positions this would be a colour swap
``position_swap``  colour, shape, position  the positions of two objects exchanged
``absent_colour``  colour, shape            one object's colour replaced by a colour absent
                                            from the image
``absent_shape``   colour, shape            one object's shape replaced by a shape absent from
                                            the image
=================  =======================  ==================================================

The swap foils hold exactly the image's features, so only binding separates them from the truth;
the absent-attribute foils name a feature the image lacks, so a bag-of-features model passes
them. Two objects are swappable when the exchange changes the described scene (their swapped
attribute differs and the foil's multiset of object descriptions differs from the truth's); an
image without a swappable pair or without an absent value is skipped for that task.

The Grad-CAM binding check (methods.md Sec. 4) uses single-object phrases on the same images:
for an object a and a second object b of another colour and shape, ``correct`` "a {colour of a}
{shape of a}", ``swapped`` "a {colour of b} {shape of a}" and ``absent`` "a {colour absent from
the image} {shape of a}"; all three name the shape of a, the prompt's target object, and the
swapped prompt's colour lures towards b.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from clipmech.data.shapes import COLOURS, POSITION_PHRASES, SHAPES

ATTRIBUTES = ("colour", "shape", "position")
GRADCAM_PROMPT_TYPES = ("correct", "swapped", "absent")


@dataclass(frozen=True)
class Task:
    """One binding test.

    Attributes
    ----------
    kind : {"swap", "absent"}
        Exchange ``attribute`` between two objects, or replace one object's ``attribute`` by a
        value absent from the image.
    attribute : {"colour", "shape", "position"}
    described : tuple of str
        Attributes every object phrase names, in caption order (colour, shape, position).
    """

    kind: str
    attribute: str
    described: tuple[str, ...]


TASKS = {
    "colour_swap": Task("swap", "colour", ("colour", "shape")),
    "shape_swap": Task("swap", "shape", ("colour", "shape", "position")),
    "position_swap": Task("swap", "position", ("colour", "shape", "position")),
    "absent_colour": Task("absent", "colour", ("colour", "shape")),
    "absent_shape": Task("absent", "shape", ("colour", "shape")),
}
_VALUES = {"colour": COLOURS, "shape": SHAPES}


def object_phrase(obj: dict, described: Sequence[str] = ATTRIBUTES) -> str:
    """One object in the training-caption grammar: "a red square at the top left".

    Parameters
    ----------
    obj : dict
        With ``colour``, ``shape``, ``position`` (the ones ``described`` names).
    described : sequence of str, default all three
        Attributes to name; a missing shape reads "shape" ("a red shape"), as in
        :func:`clipmech.data.shapes.caption`.

    Raises
    ------
    ValueError
        If ``described`` is empty or names an unknown attribute.
    """
    unknown = [a for a in described if a not in ATTRIBUTES]
    if unknown or not described:
        raise ValueError(f"described must name some of {', '.join(ATTRIBUTES)}, got {list(described)}")
    words = ["a"]
    if "colour" in described:
        words.append(obj["colour"])
    words.append(obj["shape"] if "shape" in described else "shape")
    if "position" in described:
        words.append(POSITION_PHRASES[obj["position"]])
    return " ".join(words)


def describe(objects: Sequence[dict], described: Sequence[str] = ATTRIBUTES) -> str:
    """A scene in the training-caption grammar, objects in the given order, joined by " and "."""
    return " and ".join(object_phrase(obj, described) for obj in objects)


def _signature(objects: Sequence[dict], described: Sequence[str]) -> list[tuple]:
    """The scene as a sorted list of described attribute tuples (order-free meaning)."""
    return sorted(tuple(obj[a] for a in described) for obj in objects)


def swappable_pairs(objects: Sequence[dict], attribute: str, described: Sequence[str]) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, whose exchange of ``attribute`` changes the described scene."""
    truth = _signature(objects, described)
    pairs = []
    for i in range(len(objects)):
        for j in range(i + 1, len(objects)):
            if objects[i][attribute] == objects[j][attribute]:
                continue
            if _signature(_swapped(objects, attribute, i, j), described) != truth:
                pairs.append((i, j))
    return pairs


def _swapped(objects: Sequence[dict], attribute: str, i: int, j: int) -> list[dict]:
    result = [dict(obj) for obj in objects]
    result[i][attribute], result[j][attribute] = objects[j][attribute], objects[i][attribute]
    return result


def task_prompts(objects: Sequence[dict], task: str, rng: np.random.Generator) -> dict | None:
    """The true description and the foil of one binding task on one scene.

    Parameters
    ----------
    objects : sequence of dict
        The scene's objects (``colour``, ``shape``, ``position``), in object-table order.
    task : str
        A key of ``TASKS``.
    rng : numpy.random.Generator
        Draws the swapped pair, or the changed object and its absent value, uniformly among the
        valid choices.

    Returns
    -------
    dict or None
        ``correct`` and ``foil`` prompts and ``objects`` (the 0-based indices of the objects the
        foil changes: two for a swap, one for an absent value); None when the scene has no valid
        choice (no swappable pair, or no absent value: a 5-object scene with distinct shapes
        uses all 5 shapes).

    Raises
    ------
    ValueError
        If ``task`` is unknown (the message lists the tasks) or the scene has fewer than 2 objects.
    """
    if task not in TASKS:
        raise ValueError(f"unknown binding task {task!r}; valid tasks are: {', '.join(TASKS)}")
    if len(objects) < 2:
        raise ValueError(f"binding tasks need scenes with at least 2 objects, got {len(objects)}")
    spec = TASKS[task]
    correct = describe(objects, spec.described)
    if spec.kind == "swap":
        pairs = swappable_pairs(objects, spec.attribute, spec.described)
        if not pairs:
            return None
        i, j = pairs[rng.integers(len(pairs))]
        return {
            "correct": correct,
            "foil": describe(_swapped(objects, spec.attribute, i, j), spec.described),
            "objects": (i, j),
        }
    absent = [v for v in _VALUES[spec.attribute] if v not in {obj[spec.attribute] for obj in objects}]
    if not absent:
        return None
    i = int(rng.integers(len(objects)))
    foil = [dict(obj) for obj in objects]
    foil[i][spec.attribute] = absent[rng.integers(len(absent))]
    return {"correct": correct, "foil": describe(foil, spec.described), "objects": (i,)}


#: The columns of a table of binding trials (:func:`binding_trials`) and their dtypes.
TRIAL_DTYPES = {"image_id": "int64", "n_objects": "int64", "task": "str", "correct": "str", "foil": "str"}


def _scenes(table: pd.DataFrame) -> list[tuple[int, list[dict]]]:
    """(image_id, objects in table order) of each image of a table sorted by image and object id."""
    return [
        (int(image_id), group[list(ATTRIBUTES)].to_dict("records")) for image_id, group in table.groupby("image_id")
    ]


def _trials(scenes: list[tuple[int, list[dict]]], tasks: Sequence[str], rng: np.random.Generator) -> pd.DataFrame:
    """The trials of ``scenes``, images in the given order, tasks in the given order (:func:`task_prompts`)."""
    rows = []
    for image_id, scene in scenes:
        for task in tasks:
            prompts = task_prompts(scene, task, rng)
            if prompts is not None:
                rows.append(
                    {
                        "image_id": image_id,
                        "n_objects": len(scene),
                        "task": task,
                        "correct": prompts["correct"],
                        "foil": prompts["foil"],
                    }
                )
    return pd.DataFrame(rows, columns=list(TRIAL_DTYPES)).astype(TRIAL_DTYPES)


def binding_trials(
    objects: pd.DataFrame, tasks: Sequence[str], rng: np.random.Generator, n_images: int, chunk_size: int
) -> Iterator[tuple[int, int, pd.DataFrame]]:
    """Every (image, task) trial of the binding benchmark on a Shapes object table, a chunk of images at a time.

    Memory holds the prompts of one chunk; the foils are those of one pass over all images, whatever
    ``chunk_size`` (the draws of ``rng`` go images in ascending id, tasks in the given order), so the
    concatenated chunks are the same table for every ``chunk_size``.

    Parameters
    ----------
    objects : pandas.DataFrame
        The Shapes object table (``image_id``, ``object_id``, ``n_objects``, ``shape``,
        ``colour``, ``position``); image ids index the dataset's images, 0 to ``n_images`` - 1.
    tasks : sequence of str
        Keys of ``TASKS``.
    rng : numpy.random.Generator
        Draws the foils (:func:`task_prompts`) as the chunks are iterated.
    n_images : int
        Images of the dataset (>= 1).
    chunk_size : int
        Images per chunk (>= 1).

    Returns
    -------
    iterator of (int, int, pandas.DataFrame)
        Per chunk of image ids ``start`` to ``stop`` - 1 (``stop - start = chunk_size``, fewer in the
        last), in ascending order: ``start``, ``stop`` and one row per trial of its images with >= 2
        objects, ``image_id, n_objects, task, correct, foil`` (:data:`TRIAL_DTYPES`); (image, task)
        pairs without a valid foil are left out, and a chunk without such images has no rows.

    Raises
    ------
    ValueError
        At the call, before any draw: on an unknown task, ``n_images`` or ``chunk_size`` < 1, an
        image id outside 0 to ``n_images`` - 1, or when no image has 2 or more objects.
    """
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown binding tasks {unknown}; valid tasks are: {', '.join(TASKS)}")
    if n_images < 1 or chunk_size < 1:
        raise ValueError(f"n_images and chunk_size must be >= 1, got {n_images} and {chunk_size}")
    table = objects[objects["n_objects"] >= 2].sort_values(["image_id", "object_id"])
    if table.empty:
        raise ValueError("the binding benchmark needs images with at least 2 objects; the dataset has none")
    image_ids = table["image_id"].to_numpy()
    if image_ids[0] < 0 or image_ids[-1] >= n_images:
        raise ValueError(
            f"object table image ids run from {image_ids[0]} to {image_ids[-1]}; expected 0 to {n_images - 1}"
        )

    def chunks() -> Iterator[tuple[int, int, pd.DataFrame]]:
        for start in range(0, n_images, chunk_size):
            stop = min(start + chunk_size, n_images)
            first, last = np.searchsorted(image_ids, [start, stop])
            yield start, stop, _trials(_scenes(table.iloc[first:last]), tasks, rng)

    return chunks()


def accuracy_by_count(trials: pd.DataFrame, confidence_level: float = 0.95) -> pd.DataFrame:
    """Binding accuracy per task and object count, with Wilson confidence intervals.

    Parameters
    ----------
    trials : pandas.DataFrame
        Columns ``task``, ``n_objects`` (int) and ``preferred`` (bool: the image preferred its true
        description over the foil).
    confidence_level : float, default 0.95
        Of the Wilson score interval (``scipy.stats.binomtest(...).proportion_ci``).

    Returns
    -------
    pandas.DataFrame
        One row per task and object count, tasks in order of first appearance and counts
        ascending, followed per task by a row over all counts with ``n_objects`` = ``"all"``:
        ``task, n_objects, n_images, n_correct, accuracy, ci_low, ci_high`` (accuracy = fraction
        preferred, chance 0.5).

    Raises
    ------
    ValueError
        If a column is missing, ``trials`` is empty or ``confidence_level`` is outside (0, 1).
    """
    missing = [c for c in ("task", "n_objects", "preferred") if c not in trials.columns]
    if missing:
        raise ValueError(f"trials lacks columns {missing}; it has: {', '.join(map(str, trials.columns))}")
    if trials.empty:
        raise ValueError("no binding trials to aggregate")
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level must lie in (0, 1), got {confidence_level}")
    rows = []
    for task in trials["task"].unique():
        of_task = trials[trials["task"] == task]
        groups = [(int(n), of_task[of_task["n_objects"] == n]) for n in sorted(of_task["n_objects"].unique())]
        for n_objects, group in groups + [("all", of_task)]:
            k, n = int(group["preferred"].sum()), len(group)
            ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence_level, method="wilson")
            rows.append(
                {
                    "task": task,
                    "n_objects": n_objects,
                    "n_images": n,
                    "n_correct": k,
                    "accuracy": k / n,
                    "ci_low": float(ci.low),
                    "ci_high": float(ci.high),
                }
            )
    return pd.DataFrame(rows)


def gradcam_prompts(objects: Sequence[dict], rng: np.random.Generator) -> dict | None:
    """The correct, swapped and absent single-object prompts of the Grad-CAM binding check.

    Parameters
    ----------
    objects : sequence of dict
        The scene's objects (``colour``, ``shape``), in object-id order (id = index + 1).
    rng : numpy.random.Generator
        Draws the target object a, the lure b and the absent colour among the valid choices.

    Returns
    -------
    dict or None
        ``target`` and ``lure`` (1-based object ids of a and b) and ``prompts``: a dict
        ``{"correct": ..., "swapped": ..., "absent": ...}`` (see the module docstring). None when
        the scene has no valid choice: no ordered pair (a, b) with different colours and shapes
        such that no object is a "{colour of b} {shape of a}", or no colour absent from it.
    """
    colours = {obj["colour"] for obj in objects}
    absent = [c for c in COLOURS if c not in colours]
    present = {(obj["colour"], obj["shape"]) for obj in objects}
    pairs = [
        (a, b)
        for a in range(len(objects))
        for b in range(len(objects))
        if objects[a]["colour"] != objects[b]["colour"]
        and objects[a]["shape"] != objects[b]["shape"]
        and (objects[b]["colour"], objects[a]["shape"]) not in present
    ]
    if not pairs or not absent:
        return None
    a, b = pairs[rng.integers(len(pairs))]
    shape = objects[a]["shape"]
    return {
        "target": a + 1,
        "lure": b + 1,
        "prompts": {
            "correct": f"a {objects[a]['colour']} {shape}",
            "swapped": f"a {objects[b]['colour']} {shape}",
            "absent": f"a {absent[rng.integers(len(absent))]} {shape}",
        },
    }


def select_examples(margin_N: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Pick figure rows that show both failed and correct bindings.

    Parameters
    ----------
    margin_N : numpy.ndarray, float, (N,)
        Per image, S(correct prompt) - S(swapped prompt): negative where the model prefers the
        swapped binding (a failure), positive where it prefers the correct one. NaN entries are
        never picked.
    n_rows : int
        Rows wanted (>= 1).

    Returns
    -------
    index : numpy.ndarray, int64, (min(n_rows, number of finite margins),)
        Failures first, most confident (most negative margin) first, then successes, most
        confident first. Half the rows (rounded up) go to failures; when one kind has too few
        images the other fills the remaining rows.
    failed : numpy.ndarray, bool
        Whether each picked image is a failure (margin <= 0; a tie is no correct binding).

    Raises
    ------
    ValueError
        If ``n_rows < 1`` or ``margin_N`` is not 1-D.
    """
    margin_N = np.asarray(margin_N, dtype=np.float64)
    if margin_N.ndim != 1:
        raise ValueError(f"margin_N must be 1-D, got shape {margin_N.shape}")
    if n_rows < 1:
        raise ValueError(f"n_rows must be >= 1, got {n_rows}")
    finite = np.isfinite(margin_N)
    failures = np.flatnonzero(finite & (margin_N <= 0))
    failures = failures[np.argsort(margin_N[failures], kind="stable")]
    successes = np.flatnonzero(finite & (margin_N > 0))
    successes = successes[np.argsort(-margin_N[successes], kind="stable")]
    n_failures = min(len(failures), max(math.ceil(n_rows / 2), n_rows - len(successes)))
    n_successes = min(len(successes), n_rows - n_failures)
    index = np.concatenate([failures[:n_failures], successes[:n_successes]]).astype(np.int64)
    return index, np.arange(len(index)) < n_failures
