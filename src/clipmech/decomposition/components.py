"""Neuron-head pairs vs neurons vs heads: rank-1 check, mean-ablation and sparse-direction curves.

methods.md Sec. 5 (neuron-attention paper Sec. 4.1, Figs. 1-2, Table 1, App. A.2). All functions
work on the scalars s_{n,h} (N, H, C) and directions u_{n,h} (H, C, E) of
:mod:`clipmech.decomposition.pool`; contributions are never materialised for all pairs at once.

Zero-shot evaluation (:func:`dataset_tasks`, methods.md Sec. 5.2): on a Shapes dataset (our choice,
documented in the config schema) the attribute tasks of :mod:`clipmech.models.zeroshot` (colour 6-way,
shape 5-way, position 5-way, prompts from :func:`clipmech.models.zeroshot.attribute_prompts`) on its
single-object images; on a natural-image dataset with classes (ImageNet val in the paper) one task,
``class``: top-1 over the dataset's classes with its zero-shot classifier (methods.md Sec. 1.2) on its
labelled images. The ranking (mean contribution norms) and the ablation means are computed over all
analysed images without labels, so the overlap of the evaluation images with that reference set
leaks no label information (the paper draws both from ImageNet, means from 1000 test images).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from clipmech import artefacts
from clipmech.data import datasets
from clipmech.decomposition import pool
from clipmech.hooks import pool_forward
from clipmech.models import zeroshot

LEVELS = ("pair", "neuron", "head")
#: The one zero-shot task of a natural-image dataset with classes: top-1 over its classes (:func:`class_task`).
CLASS_TASK = "class"


@dataclass(frozen=True)
class ZeroShotTask:
    """One zero-shot classification task on a set of images.

    Attributes
    ----------
    name : str
        E.g. ``colour``.
    classes : tuple of str
    text_KE : ndarray, shape (K, E)
        Prompt embeddings, one per class (normalised or not).
    images : ndarray of int, shape (M,)
        Indices (into the analysed images) of the evaluated images.
    truth_M : ndarray of int, shape (M,)
        True class index per evaluated image.
    """

    name: str
    classes: tuple[str, ...]
    text_KE: np.ndarray
    images: np.ndarray
    truth_M: np.ndarray


def zero_shot_accuracy(y_NE: np.ndarray, task: ZeroShotTask) -> float:
    """Accuracy of cosine zero-shot classification of the task's images from outputs ``y``.

    Parameters
    ----------
    y_NE : ndarray, shape (N, E)
        Image embeddings of all analysed images (normalisation does not matter); the task's
        ``images`` index into it.
    task : ZeroShotTask

    Returns
    -------
    float in [0, 1]; NaN if the task has no images.
    """
    if len(task.images) == 0:
        return float("nan")
    return float(np.mean(_correct(y_NE[task.images], task.text_KE, task.truth_M)))


def _correct(y_ME: np.ndarray, text_KE: np.ndarray, truth_M: np.ndarray) -> np.ndarray:
    """Whether cosine zero-shot classification of each row of ``y_ME`` gives ``truth_M``, bool (M,)."""
    y = y_ME / np.linalg.norm(y_ME, axis=1, keepdims=True)
    z = text_KE / np.linalg.norm(text_KE, axis=1, keepdims=True)
    return np.argmax(y @ z.T, axis=1) == truth_M


def evaluated_images(tasks: Sequence[ZeroShotTask]) -> tuple[np.ndarray, list[ZeroShotTask]]:
    """The sorted union of the tasks' images, and the tasks re-indexed into that union.

    Returns
    -------
    evaluated : ndarray of int, shape (M,)
        Indices into the analysed images.
    local : list of ZeroShotTask
        The same tasks with ``images`` indexing into ``evaluated``.
    """
    evaluated = np.unique(np.concatenate([task.images for task in tasks]))
    position = {image: i for i, image in enumerate(evaluated)}
    local = [
        ZeroShotTask(t.name, t.classes, t.text_KE, np.array([position[i] for i in t.images], dtype=np.intp), t.truth_M)
        for t in tasks
    ]
    return evaluated, local


def component_scores(s_NHC: np.ndarray, u_HCE: np.ndarray) -> dict[str, np.ndarray]:
    """Mean contribution norms of every pair, neuron and head over the reference images.

    The ranking of the mean-ablation (methods.md Sec. 5: "ranked by mean norm"): pair
    ||c_{n,h}|| = |s_{n,h}| ||u_{n,h}||, neuron ||sum_h s_{n,h} u_{n,h}||, head
    ||sum_n s_{n,h} u_{n,h}||, each averaged over images.

    Returns
    -------
    dict
        ``pair`` (H, C), ``neuron`` (C,), ``head`` (H,), float64.
    """
    sums = ScoreSums(u_HCE)
    sums.add(s_NHC)
    return sums.scores()


class ScoreSums:
    """:func:`component_scores` and the mean scalars, summed over chunks of images (methods.md Sec. 5).

    The streamed form of :func:`component_scores`: memory is (H, C) and (C, H, H) whatever the number of
    images. Summing chunk sums instead of all images at once changes the scores only by rounding (relative
    ~1e-15 in float64).

    Parameters
    ----------
    u_HCE : ndarray, shape (H, C, E)
        Neuron-head directions.
    """

    def __init__(self, u_HCE: np.ndarray) -> None:
        self.u_norm_HC = pool.direction_norms(u_HCE)
        self.gram_CHH = pool.neuron_gram(u_HCE)
        self.u_HCE = u_HCE
        h, c, _ = u_HCE.shape
        self.n_images = 0
        self._sums = {"pair": np.zeros((h, c)), "neuron": np.zeros(c), "head": np.zeros(h), "s": np.zeros((h, c))}

    def add(self, s_NHC: np.ndarray) -> None:
        """Add the scalars of a chunk of images, shape (n, H, C), float64.

        Raises
        ------
        ValueError
            If the chunk's (H, C) is not that of ``u_HCE``.
        """
        if s_NHC.shape[1:] != self.u_norm_HC.shape:
            raise ValueError(f"s_NHC has shape {s_NHC.shape}, the directions (H, C) = {self.u_norm_HC.shape}")
        self.n_images += len(s_NHC)
        self._sums["pair"] += pool.pair_contribution_norms(s_NHC, self.u_norm_HC).sum(axis=0)
        self._sums["neuron"] += pool.neuron_contribution_norms(s_NHC, self.gram_CHH).sum(axis=0)
        self._sums["head"] += np.linalg.norm(pool.head_contributions(s_NHC, self.u_HCE), axis=-1).sum(axis=0)
        self._sums["s"] += s_NHC.sum(axis=0)

    def _mean(self, key: str) -> np.ndarray:
        if not self.n_images:
            raise ValueError("no images were added")
        return self._sums[key] / self.n_images

    def scores(self) -> dict[str, np.ndarray]:
        """What :func:`component_scores` returns for all images added: ``pair`` (H, C), ``neuron`` (C,),
        ``head`` (H,), float64.

        Raises
        ------
        ValueError
            If no images were added.
        """
        return {level: self._mean(level) for level in LEVELS}

    def s_mean(self) -> np.ndarray:
        """Mean of s_{n,h} over the images added, shape (H, C): the reference of the mean-ablation."""
        return self._mean("s")


class ZeroShotCounts:
    """Zero-shot accuracy of :func:`zero_shot_accuracy`, counted over chunks of images.

    Each image's prediction depends on its own output only, so the counts equal those of one
    :func:`zero_shot_accuracy` call on all images.

    Parameters
    ----------
    tasks : sequence of ZeroShotTask
        ``images`` index the images that :meth:`add` is given, in the global order of the chunks.
    """

    def __init__(self, tasks: Sequence[ZeroShotTask]) -> None:
        self.tasks = list(tasks)
        self.images = [np.asarray(task.images, dtype=np.intp) for task in self.tasks]
        self.correct = {task.name: 0 for task in self.tasks}

    def add(self, start: int, y_NE: np.ndarray) -> None:
        """Count the correct predictions among images ``start .. start + len(y_NE)`` (outputs ``y_NE``, (n, E))."""
        for task, images in zip(self.tasks, self.images):
            hit = np.flatnonzero((images >= start) & (images < start + len(y_NE)))
            y_ME = y_NE[images[hit] - start]
            self.correct[task.name] += int(_correct(y_ME, task.text_KE, task.truth_M[hit]).sum())

    def accuracy(self) -> dict[str, float]:
        """Accuracy per task name, in [0, 1]; NaN for a task without images."""
        return {
            task.name: self.correct[task.name] / len(task.images) if len(task.images) else float("nan")
            for task in self.tasks
        }


def save_component_scores(path: str, scores: dict[str, np.ndarray], cos_pc_u: np.ndarray, *, rule: str) -> None:
    """:func:`component_scores` and the top pairs' |cos(first PC, u)| (:func:`pair_rank_one`, NaN kept) as a
    verified npz (:func:`clipmech.artefacts.save_npz`), what rule ``plot_decomposition`` draws."""
    artefacts.save_npz(path, rule=rule, levels=np.asarray(list(scores), dtype=str), cos_pc_u=cos_pc_u, **scores)


def load_component_scores(path: str, *, rule: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """What :func:`save_component_scores` wrote, checked against its sha256 record: the scores per level (in
    the order written) and the cos of the top pairs."""
    with artefacts.load_npz(path, rule=rule) as record:
        return {str(level): record[str(level)] for level in record["levels"]}, record["cos_pc_u"]


def _curve_rows(
    level: str, fraction: float, keep: np.ndarray, accuracy: dict[str, float], tasks: Sequence[ZeroShotTask]
) -> list[dict]:
    """One row per task of an ablation curve at one fraction kept; ``accuracy`` maps task names to accuracies."""
    return [
        {
            "level": level,
            "fraction": float(fraction),
            "n_kept": int(keep.sum()),
            "n_components": int(keep.size),
            "task": task.name,
            "accuracy": accuracy[task.name],
        }
        for task in tasks
    ]


class _CurveCounts:
    """Zero-shot counts (:class:`ZeroShotCounts`) of ablation curves, one per (level, fraction, keep mask).

    The shared part of :class:`AblationCurves` and :class:`ActivationAblationCurve`: their ``add`` feeds
    :meth:`_count` the ablated outputs of a chunk of images, :meth:`table` turns the counts into the rows.
    """

    def __init__(self, tasks: Sequence[ZeroShotTask], keeps: list[tuple[str, float, np.ndarray]]) -> None:
        self.tasks = list(tasks)
        self.keeps = keeps
        self._counts = [ZeroShotCounts(self.tasks) for _ in keeps]
        self._n_added = 0

    def _count(self, start: int, outputs_NE: Iterator[np.ndarray]) -> None:
        """Count the ablated outputs of images ``start ..`` given per keep mask, in the order of ``keeps``."""
        for counts, y_NE in zip(self._counts, outputs_NE, strict=True):
            counts.add(start, y_NE)
            self._n_added = max(self._n_added, start + len(y_NE))

    def table(self) -> pd.DataFrame:
        """Columns level, fraction, n_kept, n_components, task, accuracy; one row per keep mask x task.

        Raises
        ------
        ValueError
            If a task evaluates an image beyond those added.
        """
        last = max((int(np.max(task.images)) for task in self.tasks if len(task.images)), default=-1)
        if self.keeps and last >= self._n_added:
            raise ValueError(f"the tasks evaluate image {last} but only images 0..{self._n_added - 1} were added")
        rows = []
        for (level, fraction, keep), counts in zip(self.keeps, self._counts):
            rows.extend(_curve_rows(level, fraction, keep, counts.accuracy(), self.tasks))
        return pd.DataFrame(rows)


class AblationCurves(_CurveCounts):
    """Zero-shot accuracy vs fraction of components kept, the rest mean-ablated (paper Fig. 1), over chunks.

    For each level (pair, neuron, head) and fraction f, keeps the round(f * count) components with the
    highest score and replaces every other one by its mean over the reference images
    (:func:`clipmech.decomposition.pool.mean_ablate`), then counts the correct zero-shot predictions of the
    ablated outputs. An image's ablated output depends on its own scalars only, so the table is the same
    whatever the chunks the images come in; memory is the keep masks (at most 3 x F x H x C bool) and the
    counts, plus (n, H, C) and (n, E) floats per chunk of n images.

    Parameters
    ----------
    u_HCE : ndarray, shape (H, C, E)
    bias_E : ndarray, shape (E,)
    scores : dict
        ``pair`` (H, C), ``neuron`` (C,), ``head`` (H,): :meth:`ScoreSums.scores` of the reference images.
    s_mean_HC : ndarray, shape (H, C)
        Mean scalars of the reference images (:meth:`ScoreSums.s_mean`).
    fractions : sequence of float in [0, 1]
    tasks : sequence of ZeroShotTask
        ``images`` index the images given to :meth:`add` (the ``local`` tasks of :func:`evaluated_images`).
    chunk_size : int
        Images per matrix product.

    Raises
    ------
    ValueError
        If ``s_mean_HC`` is not (H, C), a fraction lies outside [0, 1] or a score has NaNs.
    """

    def __init__(
        self,
        u_HCE: np.ndarray,
        bias_E: np.ndarray,
        scores: dict[str, np.ndarray],
        s_mean_HC: np.ndarray,
        fractions: Sequence[float],
        tasks: Sequence[ZeroShotTask],
        chunk_size: int = 256,
    ) -> None:
        if s_mean_HC.shape != u_HCE.shape[:2]:
            raise ValueError(f"s_mean_HC has shape {s_mean_HC.shape}, the directions (H, C) = {u_HCE.shape[:2]}")
        keeps = [
            (level, float(fraction), pool.top_fraction_mask(scores[level], float(fraction)))
            for level in LEVELS
            for fraction in fractions
        ]
        super().__init__(tasks, keeps)
        self.u_HCE, self.bias_E, self.s_mean_HC, self.chunk_size = u_HCE, bias_E, s_mean_HC, chunk_size

    def add(self, start: int, s_NHC: np.ndarray) -> None:
        """Count the images ``start .. start + n`` of the tasks from their scalars ``s_NHC``, shape (n, H, C)."""
        self._count(
            start,
            (
                pool.mean_ablate(
                    s_NHC,
                    self.u_HCE,
                    self.bias_E,
                    keep,
                    level=level,
                    s_mean_HC=self.s_mean_HC,
                    chunk_size=self.chunk_size,
                )
                for level, _, keep in self.keeps
            ),
        )


def activation_ablated_outputs(
    x_NTC: np.ndarray, x_mean_TC: np.ndarray, keep_C: np.ndarray, weights: pool.AttnPoolWeights
) -> np.ndarray:
    """Attention-pool outputs with the activations of all neurons not kept mean-ablated (paper Fig. 1).

    The paper's "mean-ablation of neuron activations": neuron n's input to the attention pool is
    replaced by its mean over the reference images at every token, x'_t[n] = mean_i x_t[n]
    (positional embedding included, so this replaces the raw activation a_t[n] by its per-location
    mean; token 0, the mean token, stays the mean of the spatial tokens). Unlike
    :func:`clipmech.decomposition.pool.mean_ablate`, which holds the attention fixed, the attention
    alpha' is recomputed from x' (:func:`clipmech.hooks.pool_forward.query_attention`), so an ablated
    neuron also stops steering where every head looks.

    Parameters
    ----------
    x_NTC : ndarray, shape (N, T, C)
        Tokens of the evaluated images.
    x_mean_TC : ndarray, shape (T, C)
        Mean tokens over the reference images (rule ``ablate_components`` sums them in its first pass).
    keep_C : ndarray of bool, shape (C,)
    weights : AttnPoolWeights

    Returns
    -------
    ndarray, shape (N, E), float64

    Raises
    ------
    ValueError
        If the shapes disagree.
    """
    if x_mean_TC.shape != x_NTC.shape[1:] or keep_C.shape != (x_NTC.shape[2],):
        raise ValueError(f"x_NTC {x_NTC.shape}, x_mean_TC {x_mean_TC.shape} and keep_C {keep_C.shape} disagree")
    x = torch.as_tensor(np.where(keep_C, x_NTC, x_mean_TC[None]), dtype=torch.float64)
    names = ("q_weight", "q_bias", "k_weight", "v_weight", "v_bias", "c_weight", "c_bias")
    w = {name: torch.as_tensor(getattr(weights, name), dtype=torch.float64) for name in names}
    alpha_NHT = pool_forward.query_attention(x, w["q_weight"], w["q_bias"], w["k_weight"], weights.n_heads)
    return pool_forward.attnpool_output_from_attention(
        x, alpha_NHT, w["v_weight"], w["v_bias"], w["c_weight"], w["c_bias"]
    ).numpy()


class ActivationAblationCurve(_CurveCounts):
    """Zero-shot accuracy vs fraction of neurons kept, the other neurons' activations mean-ablated, over chunks.

    The ``neuron_activation`` curve of the paper's Fig. 1 (:func:`activation_ablated_outputs`), with
    neurons ranked by the same score as the ``neuron`` level of :class:`AblationCurves`, so the two
    curves keep the same neurons and differ only in what an ablation holds fixed. An image's output
    depends on its own tokens only, so the table is the same whatever the chunks; memory is F keep
    masks of C bools and the counts, plus the recomputed attention pool of one chunk (n x T x C floats).

    Parameters
    ----------
    x_mean_TC : ndarray, shape (T, C)
        Mean tokens over the reference images.
    weights : AttnPoolWeights
    neuron_score_C : ndarray, shape (C,)
        ``ScoreSums.scores()["neuron"]``.
    fractions : sequence of float in [0, 1]
    tasks : sequence of ZeroShotTask
        ``images`` index the images given to :meth:`add` (the ``local`` tasks of :func:`evaluated_images`).

    Raises
    ------
    ValueError
        If a fraction lies outside [0, 1] or the score has NaNs.
    """

    def __init__(
        self,
        x_mean_TC: np.ndarray,
        weights: pool.AttnPoolWeights,
        neuron_score_C: np.ndarray,
        fractions: Sequence[float],
        tasks: Sequence[ZeroShotTask],
    ) -> None:
        keeps = [
            ("neuron_activation", float(fraction), pool.top_fraction_mask(neuron_score_C, float(fraction)))
            for fraction in fractions
        ]
        super().__init__(tasks, keeps)
        self.x_mean_TC, self.weights = x_mean_TC, weights

    def add(self, start: int, x_NTC: np.ndarray) -> None:
        """Count the images ``start .. start + n`` of the tasks from their tokens ``x_NTC``, shape (n, T, C).

        Raises
        ------
        ValueError
            If ``x_NTC`` disagrees with the mean tokens' (T, C).
        """
        self._count(
            start,
            (activation_ablated_outputs(x_NTC, self.x_mean_TC, keep, self.weights) for _, _, keep in self.keeps),
        )


def pair_rank_one(
    s_NHC: np.ndarray, u_HCE: np.ndarray, heads_K: np.ndarray, neurons_K: np.ndarray, top_k: int = 50
) -> pd.DataFrame:
    """First principal component of each chosen pair's contributions vs its direction u_{n,h}.

    The in-memory form of :meth:`TopContributions.pair_rank_one` (one chunk holding all images);
    see there for the columns.

    Parameters
    ----------
    s_NHC : ndarray, shape (N, H, C)
    u_HCE : ndarray, shape (H, C, E)
    heads_K, neurons_K : array_like of int, shape (K,)
        The pairs (neurons_K[k], heads_K[k]).
    top_k : int
        Images per pair.

    Raises
    ------
    ValueError
        As :class:`TopContributions`.
    """
    return top_contributions([(0, s_NHC)], u_HCE, heads_K, neurons_K, [], top_k).pair_rank_one()


def neuron_directions(
    s_NHC: np.ndarray, u_HCE: np.ndarray, neurons_K: np.ndarray, top_k: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """First principal component of each chosen neuron's contributions c_n (paper Sec. 4.1, A.2).

    The in-memory form of :meth:`TopContributions.neuron_directions` (one chunk holding all images);
    see there for the results, v_KE (K, E) and explained_K (K,).

    Raises
    ------
    ValueError
        As :class:`TopContributions`.
    """
    return top_contributions([(0, s_NHC)], u_HCE, [], [], neurons_K, top_k).neuron_directions()


def top_contributions(
    chunks: Iterable[tuple[int, np.ndarray]],
    u_HCE: np.ndarray,
    heads_P: np.ndarray,
    neurons_P: np.ndarray,
    neurons_K: np.ndarray,
    top_k: int = 50,
) -> TopContributions:
    """A :class:`TopContributions` fed every chunk of ``chunks``, pairs (start image index, s_NHC (n, H, C)).

    E.g. ``((batch.images.start, s) for batch, s in clipmech.stores.attnpool.iter_scalars(ds, chunk_size))``.

    Raises
    ------
    ValueError
        As :class:`TopContributions` and :meth:`TopContributions.add`.
    """
    top = TopContributions(u_HCE, heads_P, neurons_P, neurons_K, top_k)
    for start, s_NHC in chunks:
        top.add(start, s_NHC)
    return top


def _merge_top(top: tuple[np.ndarray, ...], new: tuple[np.ndarray, ...], top_k: int) -> tuple[np.ndarray, ...]:
    """Keep, per column, the ``top_k`` rows of (norm, index, *values) arrays by larger norm, then lower index."""
    joined = [np.concatenate([a, b]) for a, b in zip(top, new)]
    norm, index = joined[:2]
    order = np.lexsort((index, -norm), axis=0)[:top_k]
    return tuple(np.take_along_axis(a, order.reshape(order.shape + (1,) * (a.ndim - 2)), axis=0) for a in joined)


class TopContributions:
    """The top-norm images of chosen pairs and neurons, kept over chunks of images (methods.md Sec. 5 test).

    The rank-1 check of the paper (Sec. 4.1, App. A.2) takes a component's first principal component over
    the ``top_k`` images with the largest contribution norm. This keeps, per chosen pair (n, h), the scalars
    s_{n,h} of its ``top_k`` images by ||c_{n,h}|| = |s_{n,h}| ||u_{n,h}||, and per chosen neuron n the
    H-vectors s_{n,:} of its ``top_k`` images by ||c_n|| = sqrt(s_n^T G_n s_n)
    (:func:`clipmech.decomposition.pool.neuron_contribution_norms`), ties to the lower image index, as
    ``np.argsort(-norms, kind="stable")[:top_k]`` over all images would, whatever the chunks and their
    order. These norms equal ||s u|| and ||sum_h s_h u_h|| up to rounding, so the images kept are those
    of the norms of the contributions themselves unless two images' norms tie within rounding. Memory:
    (top_k + n, P) and (top_k + n, K, H) floats for a chunk of n images, whatever the number of images.

    Parameters
    ----------
    u_HCE : ndarray, shape (H, C, E)
        Neuron-head directions.
    heads_P, neurons_P : array_like of int, shape (P,)
        The pairs (neurons_P[p], heads_P[p]).
    neurons_K : array_like of int, shape (K,)
        The neurons.
    top_k : int
        Images kept per pair and neuron (all if fewer are added).

    Raises
    ------
    ValueError
        If ``top_k`` < 1, the pair arrays differ in length, or an index is out of range.
    """

    def __init__(
        self, u_HCE: np.ndarray, heads_P: np.ndarray, neurons_P: np.ndarray, neurons_K: np.ndarray, top_k: int = 50
    ) -> None:
        h, c, _ = u_HCE.shape
        if top_k < 1:
            raise ValueError(f"top_k must be positive, got {top_k}")
        self.heads_P, self.neurons_P = pool.checked_pairs(heads_P, neurons_P, h, c, names=("heads_P", "neurons_P"))
        self.neurons_K = pool.checked_index("neurons_K", neurons_K, c)
        self.u_HCE = u_HCE
        self.top_k = top_k
        self.u_norm_P = pool.direction_norms(u_HCE[self.heads_P, self.neurons_P])
        self.gram_KHH = pool.neuron_gram(u_HCE[:, self.neurons_K])
        p, k = self.heads_P.size, self.neurons_K.size
        # (norm, image index, scalars) of the images kept, sorted by larger norm then lower index
        self._pairs = (np.empty((0, p)), np.empty((0, p), dtype=np.intp), np.empty((0, p)))
        self._neurons = (np.empty((0, k)), np.empty((0, k), dtype=np.intp), np.empty((0, k, h)))

    def add(self, start: int, s_NHC: np.ndarray) -> None:
        """Offer images ``start .. start + n`` with scalars ``s_NHC`` (n, H, C), float64.

        Raises
        ------
        ValueError
            If the chunk's (H, C) is not that of ``u_HCE``.
        """
        if s_NHC.shape[1:] != self.u_HCE.shape[:2]:
            raise ValueError(f"s_NHC has shape {s_NHC.shape}, the directions (H, C) = {self.u_HCE.shape[:2]}")
        n = len(s_NHC)
        s_nP = s_NHC[:, self.heads_P, self.neurons_P]
        index_nP = np.broadcast_to(start + np.arange(n)[:, None], s_nP.shape)
        self._pairs = _merge_top(self._pairs, (np.abs(s_nP) * self.u_norm_P, index_nP, s_nP), self.top_k)
        s_nHK = s_NHC[:, :, self.neurons_K]
        norm_nK = pool.neuron_contribution_norms(s_nHK, self.gram_KHH)
        index_nK = np.broadcast_to(start + np.arange(n)[:, None], norm_nK.shape)
        self._neurons = _merge_top(self._neurons, (norm_nK, index_nK, np.swapaxes(s_nHK, 1, 2)), self.top_k)

    def pair_rank_one(self) -> pd.DataFrame:
        """First principal component of each pair's contributions over its top images vs its direction u_{n,h}.

        methods.md Sec. 5 test / paper App. A.2: since c_{n,h} = s_{n,h} u_{n,h}, |cos(PC, u)| must be ~1
        (uncentred PC, :func:`clipmech.decomposition.pool.top_norm_principal_components`; the centred one
        gives the explained fraction as in the paper's PCA). Pairs whose contribution vanishes on every
        image added (or with u = 0) get NaN.

        Returns
        -------
        pandas.DataFrame
            One row per pair, in the order given: columns head, neuron (int), cos_pc_u (|cos| of the
            uncentred first PC with u), explained (variance fraction of the centred first PC), float64.
        """
        rows = []
        _, _, s_kP = self._pairs
        for p, (h, n) in enumerate(zip(self.heads_P, self.neurons_P)):
            u = self.u_HCE[h, n]
            c_kE = s_kP[:, p, None] * u[None]  # as pool.pair_contributions
            row = {"head": int(h), "neuron": int(n), "cos_pc_u": np.nan, "explained": np.nan}
            if np.any(c_kE) and np.any(u):
                pc, _ = pool.top_norm_principal_components(c_kE, top_k=self.top_k, center=False)
                _, explained = pool.top_norm_principal_components(c_kE, top_k=self.top_k)
                row |= {"cos_pc_u": abs(float(pc[0] @ u) / float(np.linalg.norm(u))), "explained": float(explained[0])}
            rows.append(row)
        return pd.DataFrame(rows, columns=["head", "neuron", "cos_pc_u", "explained"])

    def neuron_directions(self) -> tuple[np.ndarray, np.ndarray]:
        """First principal component of each neuron's contributions c_n over its top images (paper Sec. 4.1, A.2).

        c_n = sum_h s_{n,h} u_{n,h} spans up to H directions; its PC over the top images is the neuron's
        rank-1 approximation direction (the baseline of the paper's Table 1 and Fig. 2).

        Returns
        -------
        v_KE : ndarray, shape (K, E)
            Unit PCs (uncentred, sign towards the mean contribution); zero rows for neurons that never
            contribute.
        explained_K : ndarray, shape (K,)
            Variance fraction of the centred first PC (NaN for silent neurons), float64.
        """
        v_KE = np.zeros((len(self.neurons_K), self.u_HCE.shape[2]))
        explained_K = np.full(len(self.neurons_K), np.nan)
        _, _, s_kKH = self._neurons
        for k, n in enumerate(self.neurons_K):
            c_kE = pool.neuron_contributions(s_kKH[:, k, :, None], self.u_HCE[:, [n]], [0])[:, 0]
            if not np.any(c_kE):
                continue
            pc, _ = pool.top_norm_principal_components(c_kE, top_k=self.top_k, center=False)
            _, explained = pool.top_norm_principal_components(c_kE, top_k=self.top_k)
            v_KE[k], explained_K[k] = pc[0], explained[0]
        return v_KE, explained_K


def pair_outputs_with_directions(
    s_NHC: np.ndarray,
    u_HCE: np.ndarray,
    bias_E: np.ndarray,
    keep_HC: np.ndarray,
    s_mean_HC: np.ndarray,
    heads_K: np.ndarray,
    neurons_K: np.ndarray,
    directions_KE: np.ndarray,
    chunk_size: int = 256,
) -> np.ndarray:
    """Outputs with kept pairs' directions replaced and the other pairs mean-ablated (paper Fig. 2).

    y = sum_{(n,h) kept} s_{n,h} u'_{n,h} + sum_{(n,h) not kept} mean(s_{n,h}) u_{n,h} + bias, with
    u' = ``directions_KE`` for the listed pairs (e.g. m-sparse text approximations) and u for the
    other kept pairs.

    Parameters
    ----------
    s_NHC : ndarray, shape (N, H, C)
    u_HCE : ndarray, shape (H, C, E)
    bias_E : ndarray, shape (E,)
    keep_HC : ndarray of bool, shape (H, C)
    s_mean_HC : ndarray, shape (H, C)
    heads_K, neurons_K : ndarray of int, shape (K,)
        Pairs whose direction is replaced.
    directions_KE : ndarray, shape (K, E)

    Returns
    -------
    ndarray, shape (N, E)

    Notes
    -----
    Never copies u_HCE: the listed pairs enter as s_K d_K (kept) or mean(s_K) d_K (ablated), the kept pairs
    not listed as one (N, H*C) x (H*C, E) product, skipped when every kept pair is listed (the sparse-direction
    curves of :func:`clipmech.decomposition.text.sparse_accuracy`), so a chunk costs N x K x E.
    """
    heads_K, neurons_K = np.asarray(heads_K, dtype=np.intp), np.asarray(neurons_K, dtype=np.intp)
    ablated_s_HC = np.where(keep_HC, 0.0, s_mean_HC)
    listed_HC = np.zeros_like(keep_HC, dtype=bool)
    listed_HC[heads_K, neurons_K] = True
    delta_KE = directions_KE - u_HCE[heads_K, neurons_K]
    offset_E = bias_E + ablated_s_HC.reshape(-1) @ u_HCE.reshape(-1, u_HCE.shape[2])
    offset_E = offset_E + ablated_s_HC[heads_K, neurons_K] @ delta_KE
    out_NE = (s_NHC[:, heads_K, neurons_K] * keep_HC[heads_K, neurons_K]) @ directions_KE + offset_E
    others_HC = keep_HC & ~listed_HC
    if others_HC.any():
        zero_E = np.zeros_like(bias_E)
        out_NE += pool.mean_ablate(
            s_NHC, u_HCE, zero_E, others_HC, level="pair", s_mean_HC=np.zeros_like(s_mean_HC), chunk_size=chunk_size
        )
    return out_NE


def neuron_outputs_rank_one(
    s_NHC: np.ndarray,
    u_HCE: np.ndarray,
    bias_E: np.ndarray,
    keep_C: np.ndarray,
    s_mean_HC: np.ndarray,
    v_KE: np.ndarray,
    directions_KE: np.ndarray,
) -> np.ndarray:
    """Outputs with each kept neuron reduced to one direction, the other neurons mean-ablated.

    For kept neuron n (in index order of ``keep_C``) with PC v_n, c_n is replaced by
    (c_n . v_n) d_n, where d_n = ``directions_KE`` (v_n itself, or its m-sparse text
    approximation); ablated neurons contribute their mean (paper Sec. 4.1 neuron baseline,
    Fig. 2).

    Parameters
    ----------
    s_NHC : ndarray, shape (N, H, C)
    u_HCE : ndarray, shape (H, C, E)
    bias_E : ndarray, shape (E,)
    keep_C : ndarray of bool, shape (C,)
    s_mean_HC : ndarray, shape (H, C)
    v_KE : ndarray, shape (K, E)
        Unit PCs of the K kept neurons (:func:`neuron_directions`).
    directions_KE : ndarray, shape (K, E)

    Returns
    -------
    ndarray, shape (N, E)

    Raises
    ------
    ValueError
        If the number of rows of ``v_KE`` or ``directions_KE`` is not the number of kept neurons.
    """
    kept = np.flatnonzero(keep_C)
    if v_KE.shape[0] != len(kept) or directions_KE.shape != v_KE.shape:
        raise ValueError(
            f"{len(kept)} neurons are kept but v_KE has shape {v_KE.shape} and directions_KE {directions_KE.shape}"
        )
    ablated_HC = np.broadcast_to(~keep_C, s_mean_HC.shape)
    offset_E = bias_E + np.where(ablated_HC, s_mean_HC, 0.0).reshape(-1) @ u_HCE.reshape(-1, u_HCE.shape[2])
    w_HK = np.einsum("hke,ke->hk", u_HCE[:, kept], v_KE)  # u_{n,h} . v_n
    p_NK = np.einsum("nhk,hk->nk", s_NHC[:, :, kept], w_HK)  # c_n . v_n
    return p_NK @ directions_KE + offset_E


def task_text(text: np.lib.npyio.NpzFile, task: str) -> tuple[tuple[str, ...], np.ndarray]:
    rows = text["prompt_task"] == task
    return tuple(text["prompt_class"][rows].tolist()), text["prompt_embeddings"][rows].astype(np.float64)


def zero_shot_tasks(data: datasets.ImageDataset, text: np.lib.npyio.NpzFile) -> list[ZeroShotTask]:
    """The attribute tasks on the dataset's single-object images (component_analysis docstring)."""
    single = data.objects[data.objects["n_objects"] == 1].sort_values("image_id")
    if not len(single):
        raise ValueError(
            "the dataset has no single-object images: the zero-shot attribute tasks need them (min_objects: 1)"
        )
    tasks = []
    for task in zeroshot.ATTRIBUTE_TASKS:
        classes, text_KE = task_text(text, task)
        truth = single[task].map({c: k for k, c in enumerate(classes)}).to_numpy()
        tasks.append(ZeroShotTask(task, classes, text_KE, single["image_id"].to_numpy(), truth))
    return tasks


def class_task(data: datasets.ImageDataset, weights_EK: np.ndarray) -> ZeroShotTask:
    """The ``class`` task of a natural-image dataset with classes: zero-shot top-1 over its classes (methods.md
    Secs. 1.2 and 5.2; the neuron-attention paper's ImageNet accuracy, Figs. 1-2).

    Parameters
    ----------
    data : clipmech.data.datasets.ImageDataset
        A natural-image dataset with one class per image (``classes.tsv``, the manifest's ``label``; -1 is
        no label).
    weights_EK : array_like, float, shape (E, K)
        Its zero-shot classifier (:func:`clipmech.models.zeroshot.load_classifier`): column k is class k's
        prompts averaged over the templates, in ``classes.tsv`` index order.

    Returns
    -------
    ZeroShotTask
        ``classes`` the class names, ``text_KE`` the columns of ``weights_EK`` (float64), ``images`` the
        labelled images (indices into the dataset, ascending), ``truth_M`` their labels.

    Raises
    ------
    ValueError
        If the dataset has no classes, the classifier's K is not its number of classes, a label lies
        outside -1..K-1, or no image is labelled.
    """
    if data.classes is None or data.classes.empty:
        raise ValueError(f"dataset of kind {data.spec['kind']!r} has no classes: the class task needs classes.tsv")
    classes = data.classes.sort_values("index")
    weights = np.asarray(weights_EK, dtype=np.float64)
    if weights.ndim != 2 or weights.shape[1] != len(classes):
        raise ValueError(
            f"the zero-shot classifier has shape {weights.shape}, expected (E, {len(classes)}): one column per class "
            "of the dataset (rule zero_shot_classifier)"
        )
    labels = data.manifest["label"].to_numpy(dtype=np.int64)
    if ((labels < -1) | (labels >= len(classes))).any():
        raise ValueError(f"the manifest's labels must lie in -1..{len(classes) - 1}")
    images = np.flatnonzero(labels >= 0)
    if not len(images):
        raise ValueError("no image of the dataset is labelled (label -1 everywhere): the class task has no images")
    names = tuple(classes["name"].astype(str).tolist())
    return ZeroShotTask(CLASS_TASK, names, np.ascontiguousarray(weights.T), images, labels[images])


def dataset_tasks(
    data: datasets.ImageDataset, text: np.lib.npyio.NpzFile | None, weights_EK: np.ndarray | None
) -> list[ZeroShotTask]:
    """The zero-shot tasks the ablation curves and the sparse-direction accuracy score on a dataset
    (methods.md Sec. 5.2): the attribute tasks of a Shapes dataset (:func:`zero_shot_tasks`, prompts from
    ``text``, rule ``embed_text``) or the ``class`` task of a natural-image dataset with classes
    (:func:`class_task` with its zero-shot classifier ``weights_EK``, (E, K)).

    Raises
    ------
    ValueError
        If a natural-image dataset comes without ``weights_EK`` or a Shapes dataset without ``text`` or with
        ``weights_EK``; or as :func:`zero_shot_tasks` and :func:`class_task`.
    """
    kind = data.spec["kind"]
    if kind in datasets.NATURAL_KINDS:
        if weights_EK is None:
            raise ValueError(
                f"a natural-image dataset (kind {kind}) is scored over its classes: its zero-shot classifier "
                "(rule zero_shot_classifier) is needed, and none was given"
            )
        return [class_task(data, weights_EK)]
    if weights_EK is not None or text is None:
        raise ValueError(
            f"a {kind} dataset is scored on its attribute tasks: give the prompt embeddings of rule embed_text "
            "and no classifier"
        )
    return zero_shot_tasks(data, text)
