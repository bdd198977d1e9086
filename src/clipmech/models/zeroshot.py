"""Zero-shot classification: over a dataset's classes with prompt templates, and the probes of a CLIP model on
Shapes scenes (attribute recognition and binding).

Over a dataset's classes (methods.md Sec. 1.2): :func:`templates` gives the prompt templates,
:func:`classifier` the class embeddings (open_clip's ``build_zero_shot_classifier``),
:func:`save_classifier` / :func:`load_classifier` cache them once per (model, dataset) under a provenance
(:func:`classifier_provenance`) checked on load, and :func:`accuracy` scores image embeddings against them.

On Shapes, prompts follow the grammar of the training captions (:func:`clipmech.data.shapes.caption`) with the
attributes a task does not ask about left out: colour "a red shape" (6-way), shape "a square"
(5-way), position "a shape at the top left" (5-way), on single-object images; and the
attribute-swap binding test on two-object images: "a red square and a blue circle" (correct) vs
"a blue square and a red circle" (colours swapped between the two shapes), chance 0.5.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import open_clip
import torch

from clipmech import artefacts
from clipmech.data.shapes import COLOURS, POSITION_PHRASES, POSITIONS, SHAPES
from clipmech.models.loading import weights_id

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


# Over a dataset's classes (methods.md Sec. 1.2).

#: The dataset kind whose templates default to OpenAI's 80 ImageNet templates.
IMAGENET_KIND = "imagenet"


def templates(kind: str, configured: Sequence[str] | None = None) -> tuple[str, ...]:
    """The prompt templates of a zero-shot classifier over a dataset of ``kind``, as format strings with one
    ``{}`` for the class name (methods.md Sec. 1.2).

    Parameters
    ----------
    kind : str
        The dataset kind (``spec["kind"]``).
    configured : sequence of str, optional
        The configured templates. Required for every kind but ``imagenet``, whose default is OpenAI's 80
        ImageNet templates (``open_clip.OPENAI_IMAGENET_TEMPLATES``, rendered as format strings); when given,
        they replace that default too.

    Raises
    ------
    ValueError
        If ``configured`` is missing for a kind other than ``imagenet``, is empty or a single string, or holds
        a template that is not a str with exactly one ``{}`` and no other replacement field.
    """
    if configured is None:
        if kind == IMAGENET_KIND:
            return tuple(template("{}") for template in open_clip.OPENAI_IMAGENET_TEMPLATES)
        raise ValueError(
            f"dataset kind {kind!r} has no default prompt templates: configure a non-empty list of format "
            "strings with one {} for the class name, e.g. ['a photo of a {}.']"
        )
    if isinstance(configured, str) or not isinstance(configured, Sequence) or len(configured) == 0:
        raise ValueError(f"prompt templates must be a non-empty list of format strings, got {configured!r}")
    for template in configured:
        fields = [] if not isinstance(template, str) else _replacement_fields(template)
        if fields != [("", "", None)]:
            raise ValueError(
                f"prompt template {template!r} must be a str with exactly one {{}} (the class name) and no other "
                "replacement field (write a literal brace as {{ or }})"
            )
    return tuple(configured)


def _replacement_fields(template: str) -> list[tuple]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        return []
    return [(name, spec, conversion) for _, name, spec, conversion in parsed if name is not None]


def classifier(
    model,
    tokenizer,
    classnames: Sequence[str],
    templates: Sequence[str],
    *,
    device: str | torch.device,
    batch_size: int,
) -> torch.Tensor:
    """Zero-shot classifier weights (methods.md Sec. 1.2): class k's column is the L2-normalised mean of the
    L2-normalised text embeddings of its prompts ``template.format(classnames[k])``.

    Built by open_clip's ``build_zero_shot_classifier``. ``model`` should be in eval mode and on ``device``.

    Parameters
    ----------
    batch_size : int
        At most this many prompts per text forward (whole classes at a time; at least one class, so a
        batch holds ``len(templates)`` prompts when ``batch_size`` is smaller).

    Returns
    -------
    weights_EK : torch.Tensor, float32, (E, K), on the CPU

    Raises
    ------
    ValueError
        If ``classnames`` or ``templates`` is empty or ``batch_size`` < 1.
    """
    if len(classnames) == 0 or len(templates) == 0:
        raise ValueError(
            f"a zero-shot classifier needs classes and templates, got {len(classnames)} and {len(templates)}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    weights_EK = open_clip.build_zero_shot_classifier(
        model,
        tokenizer,
        classnames=list(classnames),
        templates=list(templates),
        num_classes_per_batch=max(1, batch_size // len(templates)),
        device=device,
    )
    return weights_EK.float().cpu()


def _sha256_json(value) -> str:
    return hashlib.sha256(json.dumps(value, ensure_ascii=False).encode()).hexdigest()


def classifier_provenance(
    architecture: str, weights_id: str, classnames: Sequence[str], templates: Sequence[str]
) -> dict:
    """What a cached classifier was built from: the open_clip ``architecture``, the weights id
    (:func:`clipmech.models.loading.weights_id`), and the sha256 of the class names and of the templates (each
    over the JSON list, in order), with their counts."""
    return {
        "architecture": str(architecture),
        "weights_id": str(weights_id),
        "classnames_sha256": _sha256_json([str(name) for name in classnames]),
        "templates_sha256": _sha256_json([str(template) for template in templates]),
        "n_classes": len(classnames),
        "n_templates": len(templates),
    }


def dataset_classifier(model, dataset, configured: Sequence[str] | None) -> tuple[list[str], tuple[str, ...], dict]:
    """The class names (``classes.tsv`` in index order), the templates (:func:`templates` of the dataset's kind
    and ``configured``) and the provenance (:func:`classifier_provenance`) of a dataset's classifier, for a
    :class:`clipmech.models.loading.ModelSpec` ``model`` and a :class:`clipmech.data.datasets.ImageDataset`.

    Raises
    ------
    ValueError
        As :func:`templates`; or if the dataset has no classes.
    """
    if dataset.classes is None or dataset.classes.empty:
        raise ValueError(f"dataset of kind {dataset.spec['kind']!r} at {dataset.root} has no classes to classify")
    classnames = dataset.classes.sort_values("index")["name"].astype(str).tolist()
    chosen = templates(dataset.spec["kind"], configured)
    provenance = classifier_provenance(model.architecture, weights_id(model), classnames, chosen)
    return classnames, chosen, provenance


#: The rule that writes classifier files (named when one fails its sha256 check).
CLASSIFIER_RULE = "zero_shot_classifier"


def save_classifier(path: str | Path, weights_EK, provenance: dict, *, rule: str = CLASSIFIER_RULE) -> None:
    """Write classifier weights with their provenance (:func:`classifier_provenance`) to an ``.npz``, a verified
    artefact (:func:`clipmech.artefacts.save_npz`: atomic, with a sha256 record ``<path>.sha256``):
    ``weights_EK`` float32 (E, K) and ``provenance`` as JSON.

    Raises
    ------
    ValueError
        If ``weights_EK`` is not 2-d, or not finite.
    OSError
        If it cannot be written (a full device is named as such); nothing is left behind.
    """
    weights = torch.as_tensor(weights_EK).detach().cpu().float().numpy()
    if weights.ndim != 2:
        raise ValueError(f"classifier weights must be (E, K), got shape {weights.shape}")
    if not np.isfinite(weights).all():
        raise ValueError(f"zero-shot classifier weights for {path} are not finite ({provenance})")
    artefacts.save_npz(path, rule=rule, weights_EK=weights, provenance=np.array(json.dumps(provenance, sort_keys=True)))


def load_classifier(path: str | Path, expected_provenance: dict, *, rule: str = CLASSIFIER_RULE) -> torch.Tensor:
    """Classifier weights written by :func:`save_classifier`, after checking their sha256 record and that they
    were built from what ``expected_provenance`` says.

    Returns
    -------
    weights_EK : torch.Tensor, float32, (E, K)

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file fails its sha256 check (garbled, truncated, no record: :func:`clipmech.artefacts.verify`),
        or the stored provenance differs from ``expected_provenance`` (the message names the file, both
        provenances and the differing keys: delete the file to rebuild it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no zero-shot classifier at {path} (rule {rule} writes it)")
    with artefacts.load_npz(path, rule=rule) as npz:
        stored = json.loads(str(npz["provenance"]))
        weights = np.array(npz["weights_EK"], dtype=np.float32)
    expected = json.loads(json.dumps(expected_provenance, sort_keys=True))
    if stored != expected:
        keys = sorted(key for key in stored.keys() | expected.keys() if stored.get(key) != expected.get(key))
        raise ValueError(
            f"zero-shot classifier {path} was built from {stored}, but {expected} is expected (differing: "
            f"{', '.join(keys)}): delete the file so that it is built again"
        )
    return torch.from_numpy(weights)


def load_dataset_classifier(path: str | Path, model, dataset, configured: Sequence[str] | None) -> torch.Tensor:
    """A dataset's classifier weights (:func:`load_classifier`), checked against the provenance
    :func:`dataset_classifier` expects of ``model`` (a :class:`clipmech.models.loading.ModelSpec`), ``dataset``
    (a :class:`clipmech.data.datasets.ImageDataset`) and the configured templates.

    Returns
    -------
    weights_EK : torch.Tensor, float32, (E, K)

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`dataset_classifier` and :func:`load_classifier`.
    """
    _, _, provenance = dataset_classifier(model, dataset, configured)
    return load_classifier(path, provenance)


def predict(image_features_NE, weights_EK, k: int = 5) -> torch.Tensor:
    """The k highest-scoring classes of each image, best first (methods.md Sec. 1.2).

    Image features are L2-normalised here (the weights' columns already are, :func:`classifier`); image i's
    classes are ranked by ``features[i] @ weights``. A batch at a time, so a dataset's predictions take
    N x k integers, not N x E floats.

    Parameters
    ----------
    image_features_NE : array-like or torch.Tensor, float, (N, E)
    weights_EK : array-like or torch.Tensor, float, (E, K)
    k : int
        Capped at K.

    Returns
    -------
    torch.Tensor, int64, (N, min(k, K)), on the CPU

    Raises
    ------
    ValueError
        If the shapes disagree or k < 1.
    """
    features = torch.as_tensor(image_features_NE).detach().cpu().float()
    weights = torch.as_tensor(weights_EK).detach().cpu().float()
    if features.ndim != 2 or weights.ndim != 2 or features.shape[1] != weights.shape[0]:
        raise ValueError(f"shapes disagree: features {tuple(features.shape)}, weights {tuple(weights.shape)}")
    if k < 1:
        raise ValueError(f"top-k needs k >= 1, got {k}")
    scores_NK = torch.nn.functional.normalize(features, dim=-1) @ weights
    return scores_NK.topk(min(k, weights.shape[1]), dim=1).indices


def topk_accuracy(top_NK, labels_N, n_classes: int, topk: Sequence[int] = (1, 5)) -> dict:
    """Top-k accuracy of ranked predictions (:func:`predict`), methods.md Sec. 1.2.

    A top-k accuracy is the fraction of labelled images whose class is among their k highest-scoring
    classes. With K < k it is computed as top-K (so 1.0): key ``top5`` of a 3-class task is its top-3.
    Images labelled -1 have no class: they are left out and counted.

    Parameters
    ----------
    top_NK : array-like of int, (N, k_max)
        Classes ranked best first; k_max >= min(max(topk), n_classes).
    labels_N : array-like of int, (N,)
        Class index in 0..K-1, or -1 for none.
    n_classes : int
        K.
    topk : sequence of int

    Returns
    -------
    dict
        ``top{k}`` (float, NaN when no image is labelled) for each k, ``n`` (labelled images counted) and
        ``n_unlabelled`` (images labelled -1, left out).

    Raises
    ------
    ValueError
        If the shapes disagree, a label is outside -1..K-1, a k is < 1 or exceeds the ranked columns.
    """
    top = torch.as_tensor(np.asarray(top_NK, dtype=np.int64))
    labels = torch.as_tensor(np.asarray(labels_N, dtype=np.int64))
    if top.ndim != 2 or labels.shape != (len(top),):
        raise ValueError(f"shapes disagree: predictions {tuple(top.shape)}, labels {tuple(labels.shape)}")
    if ((labels < -1) | (labels >= n_classes)).any():
        raise ValueError(f"labels must be in -1..{n_classes - 1}")
    if any(k < 1 for k in topk):
        raise ValueError(f"top-k needs k >= 1, got {tuple(topk)}")
    if any(min(k, n_classes) > top.shape[1] for k in topk):
        raise ValueError(f"top-k up to {max(topk)} needs that many ranked classes, got {top.shape[1]}")
    labelled = labels >= 0
    result = {"n": int(labelled.sum()), "n_unlabelled": int((~labelled).sum())}
    for k in topk:
        if result["n"] == 0:
            result[f"top{k}"] = float("nan")
            continue
        hit = (top[labelled, : min(k, n_classes)] == labels[labelled, None]).any(dim=1)
        result[f"top{k}"] = float(hit.float().mean())
    return result


def accuracy(image_features_NE, weights_EK, labels_N, topk: Sequence[int] = (1, 5)) -> dict:
    """Top-k zero-shot accuracy of image embeddings against classifier weights (methods.md Sec. 1.2):
    :func:`topk_accuracy` of :func:`predict`.

    Parameters
    ----------
    image_features_NE : array-like or torch.Tensor, float, (N, E)
    weights_EK : array-like or torch.Tensor, float, (E, K)
    labels_N : array-like of int, (N,)
        Class index in 0..K-1, or -1 for none.
    topk : sequence of int

    Returns
    -------
    dict
        As :func:`topk_accuracy`.

    Raises
    ------
    ValueError
        If the shapes disagree, a label is outside -1..K-1, or a k is < 1.
    """
    if any(k < 1 for k in topk):
        raise ValueError(f"top-k needs k >= 1, got {tuple(topk)}")
    weights = torch.as_tensor(weights_EK)
    labels = np.asarray(labels_N, dtype=np.int64)
    features = torch.as_tensor(image_features_NE)
    if features.ndim != 2 or labels.shape != (len(features),):
        raise ValueError(f"shapes disagree: features {tuple(features.shape)}, labels {labels.shape}")
    n_classes = weights.shape[1] if weights.ndim == 2 else 0
    return topk_accuracy(predict(features, weights, max(topk)), labels, n_classes, topk)
