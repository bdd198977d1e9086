"""Zero-shot probes of a CLIP model on Shapes scenes: attribute recognition and binding.

Prompts follow the grammar of the training captions (:func:`clipmech.data.shapes.caption`) with the
attributes a task does not ask about left out: colour "a red shape" (6-way), shape "a square"
(5-way), position "a shape at the top left" (5-way), on single-object images; and the
attribute-swap binding test on two-object images: "a red square and a blue circle" (correct) vs
"a blue square and a red circle" (colours swapped between the two shapes), chance 0.5.
"""

from __future__ import annotations

import numpy as np
import torch

from clipmech.data.shapes import COLOURS, POSITION_PHRASES, POSITIONS, SHAPES

ATTRIBUTE_TASKS = ("colour", "shape", "position")


def attribute_prompts(task: str) -> tuple[tuple[str, ...], list[str]]:
    """Class names and prompts of a single-object attribute task.

    Raises
    ------
    ValueError
        If ``task`` is not one of ``ATTRIBUTE_TASKS``.
    """
    if task == "colour":
        return COLOURS, [f"a {c} shape" for c in COLOURS]
    if task == "shape":
        return SHAPES, [f"a {s}" for s in SHAPES]
    if task == "position":
        return POSITIONS, [f"a shape {POSITION_PHRASES[p]}" for p in POSITIONS]
    raise ValueError(f"unknown zero-shot task {task!r}; valid tasks are: {', '.join(ATTRIBUTE_TASKS)}")


def colour_swap_prompts(objects: list[dict]) -> tuple[str, str]:
    """The correct and the colour-swapped description of a two-object scene.

    Parameters
    ----------
    objects : list of two dicts with ``shape`` and ``colour``.

    Raises
    ------
    ValueError
        If the scene does not hold exactly two objects of distinct colours and shapes (the swap would
        not change the meaning).
    """
    if len(objects) != 2:
        raise ValueError(f"the swap test needs exactly 2 objects, got {len(objects)}")
    a, b = objects
    if a["colour"] == b["colour"] or a["shape"] == b["shape"]:
        raise ValueError("the swap test needs two objects with distinct colours and distinct shapes")
    correct = f"a {a['colour']} {a['shape']} and a {b['colour']} {b['shape']}"
    swapped = f"a {b['colour']} {a['shape']} and a {a['colour']} {b['shape']}"
    return correct, swapped


def classify(image_emb_NE: torch.Tensor, text_emb_CE: torch.Tensor) -> np.ndarray:
    """Zero-shot prediction: index of the most cosine-similar prompt per image.

    Parameters
    ----------
    image_emb_NE, text_emb_CE : torch.Tensor, float
        Image and prompt embeddings (normalised or not: both are normalised here).

    Returns
    -------
    numpy.ndarray, int64, (N,)
    """
    image = torch.nn.functional.normalize(image_emb_NE.float(), dim=-1)
    text = torch.nn.functional.normalize(text_emb_CE.float(), dim=-1)
    return (image @ text.T).argmax(dim=-1).cpu().numpy()


def pairwise_preference(image_emb_NE: torch.Tensor, first_NE: torch.Tensor, second_NE: torch.Tensor) -> np.ndarray:
    """Whether each image is more cosine-similar to its first prompt than to its second.

    Returns
    -------
    numpy.ndarray, bool, (N,)
        True where sim(image, first) > sim(image, second); ties count as failures.
    """
    image = torch.nn.functional.normalize(image_emb_NE.float(), dim=-1)
    first = torch.nn.functional.normalize(first_NE.float(), dim=-1)
    second = torch.nn.functional.normalize(second_NE.float(), dim=-1)
    return ((image * first).sum(-1) > (image * second).sum(-1)).cpu().numpy()
