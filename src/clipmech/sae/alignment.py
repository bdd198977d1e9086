"""Concept alignment of SAE latents and of baseline units (methods.md Sec. 7).

The concepts and their ground truth (:class:`GroundTruth`) are those of the dataset the SAE trained on:

- Shapes (:func:`shapes_truth`): the 16 Shapes features (:data:`clipmech.data.shapes.FEATURES`), from the
  object table (image level) and the instance masks (patch level);
- a natural-image dataset (:func:`natural_truth`): its image-level concepts
  (:func:`clipmech.data.concepts.concept_matrix`: ImageNet or folder classes, COCO categories, caption
  words). There are no masks, so there is no patch level: the patch AUROC is NaN, every other measure is
  the same.

A unit is an SAE latent, a raw neuron (dimension) of the site,
a signed PCA direction or a k-means centroid (:func:`method_activations`); its activation is given per
token of the evaluated images (the tokens the SAE reads, ``clipmech.sae.latents.token_positions``).

- Image level: the unit's activation on an image is its maximum over the image's patch tokens, the class
  token excluded (:func:`clipmech.sae.latents.image_activations`, the one definition of an SAE latent's
  image-level activation, which the atlas shows too; the class token's value when the SAE reads the class
  token only); the baselines are read the same way, so the methods compare on one reduction. An image is
  positive for a concept when one of its objects has it (:func:`clipmech.analyses.concepts.image_presence`);
  on a natural-image dataset when its concept matrix says so.
- Patch level: the unit's activation on each patch token; a patch is positive for a concept when its pixel
  square overlaps the mask of an object with that concept (:func:`clipmech.analyses.concepts.patch_presence`).
  Undefined (NaN) when the SAE reads the class token only, and on a natural-image dataset (no masks).
- AUROC per unit and concept, at both levels: :func:`clipmech.analyses.concepts.auroc` (mid-ranks).
- AP per unit and concept, image level: :func:`clipmech.analyses.concepts.average_precision`. Best AP of a concept:
  the maximum over units; its best unit b(f): the unit of highest AP (ties: lowest index).
- Purity@k (k = 16 by default) of a concept f: the fraction of the k top images of b(f) (highest image
  activation; ties to the lower image index, :func:`clipmech.analyses.selectivity.topk_merge`) that
  contain f; Purity@k is its mean over the concepts.
- Coverage@t (t = 0.3 by default): the fraction of concepts whose best AP is >= t.
- Entropy: Algorithm 1 of the shapes paper (:mod:`clipmech.analyses.selectivity`, top ``entropy_k``
  images by image activation), over the object counts of Shapes or the 0/1 concepts of a natural-image
  dataset (as rule ``neuron_selectivity`` counts them); NaN for a unit whose top images hold no concept.
- Dead units (:func:`clipmech.analyses.dead.dead_units`): a unit whose image activation is the same on
  every evaluated image (e.g. a latent that never fires) ranks the images arbitrarily; it has no scores
  (AUROC, AP, Purity and entropy NaN), so it is never a concept's best unit, and no top concept.

Every mean over concepts covers the concepts that some but not all evaluated images (patches, at patch
level) have; for the others AUROC and AP are undefined.

Baselines (:func:`method_activations`), fit on tokens of the training images (not the evaluated ones):

- ``neurons``: the d dimensions of the site as they are (their sign is the model's);
- ``pca``: the projections onto the first min(n_latents, d, n_fit_tokens) principal directions
  (``sklearn.decomposition.PCA``, centred by the fit mean), each direction with both signs as two units
  (``+p`` and ``-p``; the sign of a principal direction is arbitrary), so 2 x n_components units;
- ``kmeans``: ``sklearn.cluster.MiniBatchKMeans`` with min(n_latents, max_clusters, n_fit_tokens) clusters
  (capped for cost); a unit's activation is the negative Euclidean distance of the token to its centroid.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse
import torch
from sklearn.cluster import MiniBatchKMeans
from sklearn.decomposition import PCA

from clipmech.analyses import concepts, dead, selectivity
from clipmech.data import shapes
from clipmech.data.concepts import Concepts
from clipmech.sae import latents
from clipmech.stores.base import spill_array

#: Units whose alignment is measured, in table order.
METHODS = ("sae", "neurons", "pca", "kmeans")
#: Columns of the per-latent table.
LATENT_COLUMNS = (
    "latent",
    "frequency",
    "dead",
    "entropy",
    "top_concept",
    "auroc_image",
    "auroc_patch",
    "ap",
    "purity",
)
#: Elements of the dense float32 block scored at once (bounds memory): token activations of dense units, the
#: image-level activations of sparse ones.
BLOCK_ELEMENTS = 1 << 21
#: The ``concept_type`` of a natural-image dataset's concepts, by :attr:`clipmech.data.concepts.Concepts.source`.
NATURAL_CONCEPT_TYPES = {
    "ImageNet classes": "class",
    "folder classes": "class",
    "CIFAR-10 classes": "class",
    "COCO categories": "category",
    "PASCAL Context categories": "category",
    "caption words": "word",
}


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """The F concepts the units are scored against, over every image of the dataset (module docstring).

    Attributes
    ----------
    names, types : tuple of F str
        The concepts and their type (Shapes: shape, colour, position; natural images:
        :data:`NATURAL_CONCEPT_TYPES`).
    present_NF : numpy.ndarray, bool, (N_dataset, F)
        Image-level presence.
    counts_NF : numpy.ndarray, float64, (N_dataset, F)
        Algorithm 1's counts: objects with each concept (Shapes), or the presence as 0/1.
    source : str
        What the concepts are ("Shapes features", "folder classes", ...).
    patch_presence : callable or None
        ``(images, grid) -> bool (N, rows x cols, F)``, the patch-level presence of the given images
        (:func:`clipmech.analyses.concepts.patch_presence`); None without masks (natural images).
    """

    names: tuple[str, ...]
    types: tuple[str, ...]
    present_NF: np.ndarray
    counts_NF: np.ndarray
    source: str
    patch_presence: Callable[[np.ndarray, tuple[int, int]], np.ndarray] | None = None

    @property
    def n_concepts(self) -> int:
        return len(self.names)


def shapes_truth(objects: pd.DataFrame, masks_NHW: np.ndarray, n_dataset: int) -> GroundTruth:
    """The 16 Shapes features of a Shapes dataset: image presence and object counts from the object table,
    patch presence from the instance masks."""
    return GroundTruth(
        names=tuple(shapes.FEATURES),
        types=tuple(shapes.FEATURE_TYPES),
        present_NF=concepts.image_presence(objects, n_dataset),
        counts_NF=shapes.feature_counts(objects, n_dataset).astype(np.float64),
        source="Shapes features",
        patch_presence=lambda images, grid: concepts.patch_presence(masks_NHW, objects, images, grid),
    )


def natural_truth(matrix: Concepts) -> GroundTruth:
    """The image-level concepts of a natural-image dataset (:func:`clipmech.data.concepts.concept_matrix`),
    counted 0/1 for Algorithm 1; no patch level (no masks)."""
    kind = NATURAL_CONCEPT_TYPES.get(matrix.source, matrix.source)
    return GroundTruth(
        names=matrix.names,
        types=(kind,) * matrix.n_concepts,
        present_NF=np.asarray(matrix.present_NF, dtype=bool),
        counts_NF=matrix.present_NF.astype(np.float64),
        source=matrix.source,
    )


@dataclass(frozen=True)
class UnitScores:
    """Alignment scores of U units with the 16 concepts (module docstring).

    Attributes
    ----------
    auroc_image_UF, auroc_patch_UF, ap_UF : numpy.ndarray, float64, (U, 16)
        NaN for an undefined concept (or, at patch level, without patch tokens) and for a dead unit.
    purity_UF : numpy.ndarray, float64, (U, 16)
        Fraction of the unit's top-k images that hold each concept; NaN for a dead unit.
    entropy_U : numpy.ndarray, float64, (U,)
        Algorithm 1 entropy in nats; NaN for a dead unit.
    dead_U : numpy.ndarray, bool, (U,)
        Units constant over the images (:func:`clipmech.analyses.dead.dead_units` of the image activations).
    """

    auroc_image_UF: np.ndarray
    auroc_patch_UF: np.ndarray
    ap_UF: np.ndarray
    purity_UF: np.ndarray
    entropy_U: np.ndarray
    dead_U: np.ndarray


def _dense_columns(acts_BU, start: int, stop: int) -> np.ndarray:
    block = acts_BU[:, start:stop]
    if scipy.sparse.issparse(block):
        block = block.toarray()
    return np.asarray(block, dtype=np.float32)


def _top_index(image_NU: np.ndarray, k: int) -> np.ndarray:
    empty = np.empty((0, image_NU.shape[1]))
    return selectivity.topk_merge(empty, empty.astype(np.int64), image_NU, np.arange(image_NU.shape[0]), k)[1]


def score_units(
    acts_BU,
    *,
    n_images: int,
    patch_tokens: np.ndarray,
    present_NF: np.ndarray,
    patch_present_NSF: np.ndarray | None,
    counts_NF: np.ndarray,
    purity_k: int,
    entropy_k: int,
) -> UnitScores:
    """AUROC (image and patch level), AP, Purity and Algorithm 1 entropy of every unit (module docstring).

    Units are scored in blocks of columns, one pass over the activations. Dense activations are read
    :data:`BLOCK_ELEMENTS` floats at a time; sparse ones (an SAE's latents) stay sparse, their image-level
    activations (:func:`clipmech.sae.latents.sparse_image_activations`) and patch AUROC
    (:func:`clipmech.analyses.concepts.sparse_auroc`) computed from the stored entries, equal to the dense
    computation; only the image-level activations of :data:`BLOCK_ELEMENTS` // N units at a time are dense.

    Parameters
    ----------
    acts_BU : numpy.ndarray or scipy.sparse matrix, (N x T', U)
        Token activations, image-major (row n T' + t is token t of image n).
    n_images : int
        N.
    patch_tokens : numpy.ndarray, bool, (T',)
        Which of the T' tokens are patch tokens, in raster order (all patches or none).
    present_NF : numpy.ndarray, bool, (N, F)
        Image-level presence.
    patch_present_NSF : numpy.ndarray, bool, (N, S, F), optional
        Patch-level presence (:func:`clipmech.analyses.concepts.patch_presence`); None when there are no patch
        tokens or no masks (natural images): then the patch AUROC is NaN.
    counts_NF : numpy.ndarray, (N, F)
        Algorithm 1's counts: objects with each concept per image (:func:`clipmech.data.shapes.feature_counts`),
        or the 0/1 presence of a natural-image dataset's concepts.
    purity_k, entropy_k : int
        Top images for Purity and for the entropy.

    Returns
    -------
    UnitScores

    Raises
    ------
    ValueError
        If the rows are not N x T', a patch presence is given that does not match the patch tokens, or a k
        exceeds N.
    """
    n_rows, n_units = acts_BU.shape
    n_tokens = patch_tokens.size
    if n_rows != n_images * n_tokens:
        raise ValueError(f"token activations have {n_rows} rows, expected {n_images} images x {n_tokens} tokens")
    n_patches = int(patch_tokens.sum())
    if patch_present_NSF is not None and (n_patches == 0 or patch_present_NSF.shape[:2] != (n_images, n_patches)):
        raise ValueError(f"{n_patches} patch tokens per image but patch presence of shape {patch_present_NSF.shape}")
    for name, k in (("purity_k", purity_k), ("entropy_k", entropy_k)):
        if not 1 <= k <= n_images:
            raise ValueError(f"{name} must lie in 1..{n_images} (the evaluated images), got {k}")
    sparse = scipy.sparse.issparse(acts_BU)
    if sparse:
        acts_BU = scipy.sparse.csc_matrix(acts_BU)
    # A dense block is (N x T', units); a sparse one leaves dense only its (N, units) image-level activations.
    chunk = max(1, BLOCK_ELEMENTS // max(n_images if sparse else n_rows, 1))  # as token_activations' chunks
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ("image", "patch", "ap", "purity", "entropy", "dead")}
    n_concepts = present_NF.shape[1]
    flat_patch_present = None if patch_present_NSF is None else patch_present_NSF.reshape(-1, n_concepts)
    patch_rows = np.flatnonzero(np.tile(patch_tokens, n_images))
    for start in range(0, n_units, chunk):
        stop = min(start + chunk, n_units)
        if sparse:
            block_BU = acts_BU[:, start:stop]
            image_NU = latents.sparse_image_activations(block_BU, n_images, patch_tokens)
        else:
            block_NTU = _dense_columns(acts_BU, start, stop).reshape(n_images, n_tokens, -1)
            image_NU = latents.image_activations(block_NTU, patch_tokens)
        dead_U = dead.dead_units(image_NU)
        parts["dead"].append(dead_U)
        parts["image"].append(_drop_dead(concepts.auroc(image_NU, present_NF), dead_U))
        if flat_patch_present is None:
            parts["patch"].append(np.full((image_NU.shape[1], n_concepts), np.nan))
        elif sparse:
            patch_BU = block_BU if patch_rows.size == n_rows else block_BU[patch_rows]
            parts["patch"].append(_drop_dead(concepts.sparse_auroc(patch_BU, flat_patch_present), dead_U))
        else:
            patch_BU = block_NTU[:, patch_tokens].reshape(n_images * n_patches, -1)
            parts["patch"].append(_drop_dead(concepts.auroc(patch_BU, flat_patch_present), dead_U))
        parts["ap"].append(_drop_dead(concepts.average_precision(image_NU, present_NF), dead_U))
        parts["purity"].append(_drop_dead(present_NF[_top_index(image_NU, purity_k)].mean(axis=0), dead_U))
        entropy_U = selectivity.entropy(selectivity.affinity(counts_NF, _top_index(image_NU, entropy_k)))
        parts["entropy"].append(_drop_dead(entropy_U, dead_U))
    return UnitScores(
        auroc_image_UF=np.concatenate(parts["image"]),
        auroc_patch_UF=np.concatenate(parts["patch"]),
        ap_UF=np.concatenate(parts["ap"]),
        purity_UF=np.concatenate(parts["purity"]),
        entropy_U=np.concatenate(parts["entropy"]),
        dead_U=np.concatenate(parts["dead"]),
    )


def _drop_dead(score_U, dead_U: np.ndarray) -> np.ndarray:
    score_U = np.array(score_U, dtype=np.float64)
    score_U[dead_U] = np.nan
    return score_U


def _defined(score_UF: np.ndarray) -> np.ndarray:
    return ~np.isnan(score_UF).all(axis=0)


def best_units(scores: UnitScores) -> np.ndarray:
    """b(f): the live unit of highest AP for each concept (ties: lowest index), int64 (F,); -1 where undefined."""
    defined = _defined(scores.ap_UF)
    best = np.full(scores.ap_UF.shape[1], -1, dtype=np.int64)
    best[defined] = np.argmax(np.nan_to_num(scores.ap_UF[:, defined], nan=-np.inf), axis=0)
    return best


def summarise(
    scores: UnitScores,
    *,
    purity_k: int,
    coverage_ap: float,
    names: Sequence[str] = shapes.FEATURES,
    types: Sequence[str] = shapes.FEATURE_TYPES,
) -> tuple[dict, pd.DataFrame]:
    """The alignment metrics of a set of units (module docstring).

    Parameters
    ----------
    scores : UnitScores
    purity_k : int
        Only names the metric (the scores hold the purity at this k).
    coverage_ap : float
        t of Coverage@t.
    names, types : sequence of F str
        The concepts (:attr:`GroundTruth.names`, :attr:`GroundTruth.types`); the Shapes features by default.

    Returns
    -------
    metrics : dict
        ``n_units``, ``mean_best_auroc_image``, ``mean_best_auroc_patch`` (NaN without patch tokens),
        ``mean_best_ap``, ``purity_at_<k>``, ``coverage_at_<t>``, ``mean_entropy`` (over the non-constant
        units; NaN if none).
    per_concept : pandas.DataFrame
        One row per concept: ``concept, concept_type, best_auroc_image, best_auroc_patch, best_ap,
        best_unit, purity`` (NaN / -1 where undefined).
    """
    best = best_units(scores)
    defined = best >= 0
    concept_index = np.arange(len(names))
    per_concept = pd.DataFrame(
        {
            "concept": list(names),
            "concept_type": list(types),
            "best_auroc_image": _best(scores.auroc_image_UF),
            "best_auroc_patch": _best(scores.auroc_patch_UF),
            "best_ap": _best(scores.ap_UF),
            "best_unit": best,
            "purity": np.where(defined, scores.purity_UF[np.maximum(best, 0), concept_index], np.nan),
        }
    )
    finite_entropy = scores.entropy_U[~np.isnan(scores.entropy_U)]
    covered = per_concept.loc[defined, "best_ap"] >= coverage_ap
    metrics = {
        "n_units": int(scores.ap_UF.shape[0]),
        "mean_best_auroc_image": _mean(per_concept["best_auroc_image"]),
        "mean_best_auroc_patch": _mean(per_concept["best_auroc_patch"]),
        "mean_best_ap": _mean(per_concept["best_ap"]),
        f"purity_at_{purity_k}": _mean(per_concept["purity"]),
        f"coverage_at_{coverage_ap:g}": float(covered.mean()) if defined.any() else float("nan"),
        "mean_entropy": float(finite_entropy.mean()) if finite_entropy.size else float("nan"),
    }
    return metrics, per_concept


def _best(score_UF: np.ndarray) -> np.ndarray:
    defined = _defined(score_UF)
    best = np.full(score_UF.shape[1], np.nan)
    best[defined] = np.nanmax(score_UF[:, defined], axis=0)
    return best


def _mean(values: pd.Series) -> float:
    values = values.to_numpy(dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def latent_table(scores: UnitScores, frequency_U: np.ndarray, names: Sequence[str] = shapes.FEATURES) -> pd.DataFrame:
    """One row per SAE latent (:data:`LATENT_COLUMNS`): firing frequency on the evaluated tokens, whether it is
    dead (module docstring), entropy, and for its top concept (highest image-level AUROC, which unlike AP does
    not favour frequent concepts; ties to the first in ``names`` order, the Shapes features by default) the
    image and patch AUROC, AP and Purity. A dead latent has no top concept ('') and NaN scores."""
    n_units = scores.ap_UF.shape[0]
    defined = _defined(scores.auroc_image_UF)
    top_U = np.flatnonzero(defined)[np.argmax(scores.auroc_image_UF[:, defined], axis=1)] if defined.any() else None
    units = np.arange(n_units)

    def at_top(score_UF):
        return score_UF[units, top_U] if top_U is not None else np.full(n_units, np.nan)

    top_concept = np.asarray(list(names), dtype=object)[top_U] if top_U is not None else np.full(n_units, "")
    return pd.DataFrame(
        {
            "latent": units,
            "frequency": np.asarray(frequency_U, dtype=np.float64),
            "dead": scores.dead_U,
            "entropy": scores.entropy_U,
            "top_concept": np.where(scores.dead_U, "", top_concept).astype(object),
            "auroc_image": at_top(scores.auroc_image_UF),
            "auroc_patch": at_top(scores.auroc_patch_UF),
            "ap": at_top(scores.ap_UF),
            "purity": at_top(scores.purity_UF),
        }
    )


def fit_pca(train_BD: np.ndarray, n_components: int) -> PCA:
    """PCA of the training tokens with min(n_components, d, tokens) components (full SVD: deterministic)."""
    n_components = min(n_components, *train_BD.shape)
    return PCA(n_components=n_components, svd_solver="full").fit(train_BD.astype(np.float64))


def fit_kmeans(train_BD: np.ndarray, n_clusters: int, seed: int) -> MiniBatchKMeans:
    """MiniBatchKMeans of the training tokens with min(n_clusters, tokens) clusters, seeded (``n_init=3``)."""
    n_clusters = min(n_clusters, train_BD.shape[0])
    with warnings.catch_warnings():
        # Few distinct tokens for many clusters (tiny tests) only warn; the fit is still deterministic.
        warnings.filterwarnings("ignore", message="Number of distinct clusters", category=UserWarning)
        return MiniBatchKMeans(n_clusters=n_clusters, random_state=seed, n_init=3, batch_size=1024).fit(
            train_BD.astype(np.float64)
        )


def method_activations(method: str, x_BD: np.ndarray, *, sae=None, pca=None, kmeans=None, batch_size: int = 4096):
    """Token activations of the units of a method (module docstring).

    Parameters
    ----------
    method : {"sae", "neurons", "pca", "kmeans"}
    x_BD : numpy.ndarray, float32, (B, d)
        The evaluated tokens.
    sae, pca, kmeans
        The fitted model of the method (:func:`fit_pca`, :func:`fit_kmeans`).
    batch_size : int
        Tokens per SAE forward.

    Returns
    -------
    numpy.ndarray, float32, (B, U), or scipy.sparse.csc_matrix for ``sae``
        U: n_latents (sae), d (neurons), 2 x n_components (pca: +p then -p), n_clusters (kmeans).

    Raises
    ------
    ValueError
        For another method, or a method whose model is missing.
    """
    models = {"sae": sae, "pca": pca, "kmeans": kmeans}
    if method not in METHODS:
        raise ValueError(f"unknown alignment method {method!r}; valid methods are: {', '.join(METHODS)}")
    if method in models and models[method] is None:
        raise ValueError(f"method {method!r} needs its fitted model (argument {method}=...)")
    if method == "sae":
        return latents.sparse_latents(sae, x_BD, batch_size)
    if method == "neurons":
        return np.asarray(x_BD, dtype=np.float32)
    if method == "pca":
        projection = pca.transform(x_BD.astype(np.float64)).astype(np.float32)
        return np.concatenate([projection, -projection], axis=1)
    return (-kmeans.transform(x_BD.astype(np.float64))).astype(np.float32)


def unit_maps(
    acts_BU, unit: int, n_images: int, patch_tokens: np.ndarray, grid: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray | None]:
    """One unit's image activations (N,) float32 (:func:`clipmech.sae.latents.image_activations`) and patch maps
    (N, rows, cols) float32, or None without patches."""
    block_NT = _dense_columns(acts_BU, unit, unit + 1).reshape(n_images, patch_tokens.size)
    maps = block_NT[:, patch_tokens].reshape(n_images, *grid) if patch_tokens.any() else None
    return latents.image_activations(block_NT[:, :, None], patch_tokens)[:, 0], maps


def fit_tokens(
    acts, train: np.ndarray, positions: np.ndarray, *, fit_tokens: int, batch_size: int, rng: np.random.Generator
) -> np.ndarray:
    """At most ``fit_tokens`` selected tokens of seeded random training images, float32 (B, D): first
    ceil(fit_tokens / T') images drawn by ``rng`` (sorted), then, if they hold more, ``fit_tokens`` of their
    token rows (sorted). The baselines are fit on them."""
    n_images = min(train.size, math.ceil(fit_tokens / positions.size))
    chosen = np.sort(rng.choice(train, size=n_images, replace=False))
    tokens_BD = stack_tokens(acts, chosen, positions, batch_size)
    if tokens_BD.shape[0] > fit_tokens:
        tokens_BD = tokens_BD[np.sort(rng.choice(tokens_BD.shape[0], size=fit_tokens, replace=False))]
    return tokens_BD


def stack_tokens(acts, images: np.ndarray, positions: np.ndarray, batch_size: int) -> np.ndarray:
    """The selected tokens of ``images`` as float32 rows (N x T', D), image-major
    (:func:`clipmech.sae.latents.read_tokens`, dims (image, token, unit))."""
    parts = list(latents.read_tokens(acts, images, positions, batch_size))
    return np.concatenate(parts).reshape(-1, acts.sizes["unit"])


def token_activations(
    acts, images: np.ndarray, positions: np.ndarray, fitted: dict, *, batch_size: int, spill: str | Path | None = None
) -> dict:
    """Every method's token activations on the selected tokens of ``images``, in one read of the store,
    ``batch_size`` images at a time (:func:`method_activations` of each batch's tokens).

    The SAE's are its top-k codes, gathered into one sparse matrix; the dense ones (neurons, PCA, k-means, whose
    activations are computed token by token) are concatenated in memory, or, when ``spill`` names a directory,
    appended batch by batch to one uncompressed zarr array per method there (chunks of one batch's tokens x
    the units of one of :func:`score_units`' dense blocks, :data:`BLOCK_ELEMENTS` // (N x T')), which
    :func:`score_units` then reads a block, a column of whole chunks, at a time.

    Parameters
    ----------
    acts : xarray.DataArray, dims (image, token, unit)
    images : numpy.ndarray, int
    positions : numpy.ndarray, int, (T',)
    fitted : dict
        ``sae``, ``pca``, ``kmeans``: the fitted model of each method (:func:`method_activations`).
    batch_size : int
        Images per read.
    spill : str or pathlib.Path, optional
        A directory (created if absent) for the dense methods' activations.

    Returns
    -------
    dict of str to scipy.sparse.csc_matrix (``sae``), numpy.ndarray or zarr.Array, float32, (N x T', U)
        Image-major rows, for each method of :data:`METHODS`.

    Raises
    ------
    ValueError
        If ``images`` is empty.
    """
    n_latents = fitted["sae"].n_latents
    units = max(1, BLOCK_ELEMENTS // max(1, len(images) * positions.size))  # score_units' dense block
    values, indices = [np.zeros((0, fitted["sae"].k), np.float32)], [np.zeros((0, fitted["sae"].k), np.int64)]
    dense: dict[str, list] = {method: [] for method in METHODS if method != "sae"}
    arrays: dict = {}
    for x_NTD in latents.read_tokens(acts, images, positions, batch_size):
        x_BD = x_NTD.reshape(-1, x_NTD.shape[-1])
        values_BK, indices_BK = latents.encode_codes(fitted["sae"], x_BD)
        values.append(values_BK)
        indices.append(indices_BK)
        for method in dense:
            block_BU = method_activations(method, x_BD, **fitted)
            if spill is None:
                dense[method].append(block_BU)
                continue
            if method not in arrays:
                arrays[method] = spill_array(Path(spill) / method, block_BU.shape, units)
            arrays[method].append(block_BU, axis=0)
    if len(values) == 1:
        raise ValueError("token_activations: no images to read")
    result = {"sae": latents.codes_matrix(np.concatenate(values), np.concatenate(indices), n_latents)}
    for method, blocks in dense.items():
        result[method] = arrays[method] if spill is not None else np.concatenate(blocks)
    return {method: result[method] for method in METHODS}


def align(
    sae: torch.nn.Module,
    acts,
    *,
    images: np.ndarray,
    train: np.ndarray,
    positions: np.ndarray,
    patch_tokens: np.ndarray,
    truth: GroundTruth,
    grid: tuple[int, int],
    params: dict,
    seed: int,
    spill: str | Path | None = None,
) -> dict:
    """The alignment of the SAE's latents and of every baseline of :data:`METHODS` on ``images`` (module
    docstring), the baselines fit on tokens of the ``train`` images (:func:`fit_tokens`, drawn by
    ``numpy.random.default_rng(seed)``; k-means seeded by ``seed``).

    Parameters
    ----------
    acts : xarray.DataArray, dims (image, token, unit)
        The site's store activations.
    images, train : numpy.ndarray, int
        Evaluated images and training images (dataset positions).
    positions : numpy.ndarray, int, (T',)
        The SAE's token positions; ``patch_tokens`` (bool, (T',)) marks the patch tokens among them.
    truth : GroundTruth
        The concepts of the dataset's images (:func:`shapes_truth`, :func:`natural_truth`).
    grid : tuple of int
        The patch grid (rows, cols), for the patch-level presence.
    params : dict
        ``batch_size``, ``fit_tokens``, ``kmeans_max_clusters``, ``purity_k``, ``entropy_k``, ``coverage_ap``.
    spill : str or pathlib.Path, optional
        A directory (created if absent) in which the dense methods' token activations are held on disk while they are scored
        (:func:`token_activations`; a temporary directory inside it, deleted on return), so that memory holds
        one block of units; by default they are held in memory.

    Returns
    -------
    dict
        ``table`` (one row per method: ``method`` and the metrics of :func:`summarise`), ``json`` (per method
        its ``metrics`` and ``per_concept`` bests as lists), ``sae_acts`` and ``sae_scores`` (the SAE's token
        activations and :class:`UnitScores`), ``n_fit_tokens``.
    """
    n_latents = sae.W_enc.shape[0]
    rng = np.random.default_rng(seed)
    fit_BD = fit_tokens(
        acts, train, positions, fit_tokens=params["fit_tokens"], batch_size=params["batch_size"], rng=rng
    )
    present_NF, counts_NF = truth.present_NF[images], truth.counts_NF[images]
    has_patches = patch_tokens.any() and truth.patch_presence is not None
    patch_present = truth.patch_presence(images, grid) if has_patches else None
    fitted = {
        "sae": sae,
        "pca": fit_pca(fit_BD, n_latents),
        "kmeans": fit_kmeans(fit_BD, min(n_latents, params["kmeans_max_clusters"]), seed),
    }
    rows, by_method = [], {}
    with contextlib.ExitStack() as stack:
        where = None
        if spill is not None:
            Path(spill).mkdir(parents=True, exist_ok=True)
            where = stack.enter_context(tempfile.TemporaryDirectory(prefix=".alignment-", dir=spill))
        token_acts = token_activations(acts, images, positions, fitted, batch_size=params["batch_size"], spill=where)
        for method in METHODS:
            scores = score_units(
                token_acts[method],
                n_images=images.size,
                patch_tokens=patch_tokens,
                present_NF=present_NF,
                patch_present_NSF=patch_present,
                counts_NF=counts_NF,
                purity_k=params["purity_k"],
                entropy_k=params["entropy_k"],
            )
            metrics, per_concept = summarise(
                scores, purity_k=params["purity_k"], coverage_ap=params["coverage_ap"], names=truth.names,
                types=truth.types,
            )  # fmt: skip
            rows.append({"method": method, **metrics})
            by_method[method] = {"metrics": metrics, "per_concept": per_concept.to_dict("list")}
            if method == "sae":
                sae_scores = scores
    return {
        "table": pd.DataFrame(rows),
        "json": by_method,
        "sae_acts": token_acts["sae"],
        "sae_scores": sae_scores,
        "n_fit_tokens": fit_BD.shape[0],
    }


def top_latents(
    latent_table: pd.DataFrame,
    sae_acts,
    images: np.ndarray,
    images_NHW3,
    *,
    patch_tokens: np.ndarray,
    grid: tuple[int, int],
    n_latents: int,
    n_images: int,
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """The ``n_latents`` lowest-entropy latents (ties: lower index) of :func:`latent_table` with the top
    ``n_images`` of the evaluated ``images`` of each (highest image activation, ties to the lower position).

    ``images_NHW3`` is the dataset's uint8 (N, H, W, 3) image array (Shapes), or any object indexed the same
    way by an int array with the same ``shape`` (a natural-image dataset's photographs as the model sees
    them, :class:`clipmech.data.loader.ModelViewImages`).

    Returns
    -------
    images_LKHW3 : numpy.ndarray, uint8, (L, K, H, W, 3)
    maps_LKhw : numpy.ndarray, float32, (L, K, rows, cols), or None without patch tokens
    titles : list of str
    """
    chosen = latent_table[latent_table["entropy"].notna()].sort_values(["entropy", "latent"], kind="stable")
    chosen = chosen.head(n_latents)
    n_show = min(n_images, images.size)
    shown_images, shown_maps, titles = [], [], []
    for row in chosen.itertuples(index=False):
        image_N, maps_Nhw = unit_maps(sae_acts, int(row.latent), images.size, patch_tokens, grid)
        top = np.argsort(-image_N, kind="stable")[:n_show]
        shown_images.append(images_NHW3[images[top]])
        shown_maps.append(None if maps_Nhw is None else maps_Nhw[top])
        titles.append(
            f"latent {row.latent}: {row.top_concept} (AUROC {row.auroc_image:.2f}, AP {row.ap:.2f}), "
            f"entropy {row.entropy:.2f} nats, frequency {row.frequency:.3g}"
        )
    size = images_NHW3.shape[1:]
    return (
        np.stack(shown_images) if shown_images else np.zeros((0, n_show, *size), dtype=np.uint8),
        np.stack(shown_maps) if shown_maps and patch_tokens.any() else None,
        titles,
    )


def save_top_latents(path: str, images_LKHW3: np.ndarray, maps_LKhw: np.ndarray | None, titles: list[str]) -> None:
    """:func:`top_latents`' images, maps (left out when None) and row titles as a compressed npz, what rule
    ``plot_sae_evaluation`` draws."""
    arrays = {"images": images_LKHW3, "titles": np.asarray(titles, dtype=str)}
    if maps_LKhw is not None:
        arrays["maps"] = maps_LKhw
    np.savez_compressed(path, **arrays)


def load_top_latents(path: str) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """What :func:`save_top_latents` wrote: images, maps (None if left out) and titles."""
    with np.load(path, allow_pickle=False) as record:
        maps = record["maps"] if "maps" in record.files else None
        return record["images"], maps, [str(title) for title in record["titles"]]
