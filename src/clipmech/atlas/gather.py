"""What an atlas page shows, computed from arrays and tables (methods.md Sec. 10): pure functions.

Every unit's image-level activation is one column of an (N, U) array (:data:`ACTIVATIONS`): a neuron's is
its mean over the patch tokens (:data:`NEURON_REDUCTION` of :func:`clipmech.stores.activation_extraction.reduce_tokens`:
a ViT MLP output channel, methods.md Sec. 2, and a CLIP-ResNet attention-pool neuron over its feature map's
positions), a neuron-head pair's the scalar s_{n,h} (Sec. 5), an SAE latent's its maximum over the patch
tokens (:func:`clipmech.sae.latents.image_activations`, as the SAE's concept alignment reads it, Sec. 7.4).
From these: the top images, the Algorithm 1 affinities and entropy over them, and the activation
histogram; a dead unit (the same activation on every image, :mod:`clipmech.analyses.dead`) gets no page.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from clipmech.analyses import selectivity

#: Unit kinds of the atlas, in index order, with their page folders (``units/<kind>/...``).
KINDS = ("mlp", "neuron", "pair", "sae")
#: The token reduction that is a neuron's image-level activation: the mean over the patch tokens (class and
#: other prefix tokens excluded; a CLIP-ResNet channel: over the feature map's positions), methods.md Sec. 10.
NEURON_REDUCTION = "mean"
#: What each kind's image-level activation is, as its pages name it (methods.md Sec. 10).
ACTIVATIONS = {
    "mlp": "mean over the patch tokens, the class token excluded (methods.md Sec. 2)",
    "neuron": "mean over the feature map's positions (methods.md Sec. 5)",
    "pair": "s_(n,h) = sum over the tokens t of alpha_(h,t) x_t[n] (methods.md Sec. 5)",
    "sae": "max over the patch tokens, the class token excluded (methods.md Sec. 7.4)",
}
#: An SAE latent's image-level activation when its SAE reads the class token only.
SAE_CLASS_ACTIVATION = "the class token's value: the SAE reads no patch token (methods.md Sec. 7.4)"

#: Values held per image chunk while streaming (:func:`summarise`): images per chunk = this // the values of one
#: image (its units' activations or the tokens they are computed from, whichever are more), at least 1 (the
#: histogram pass holds about 32 bytes per activation: ~130 MB), so that memory does not grow with the images.
CHUNK_ELEMENTS = 1 << 22

_RESID_SITE = re.compile(r"visual\.blocks\.(\d+)\.(hook_resid_pre|hook_resid_mid|hook_resid_post)")


def top_images(acts_NU: np.ndarray, n_top: int) -> tuple[np.ndarray, np.ndarray]:
    """Each unit's ``n_top`` highest-activating images, ties towards the lower image index.

    Parameters
    ----------
    acts_NU : numpy.ndarray, (N, U)
        Image-level activations.
    n_top : int
        At most N (fewer images are returned when N is smaller).

    Returns
    -------
    index_KU : numpy.ndarray, int64, (K, U)
        Image indices, by descending activation; K = min(n_top, N).
    values_KU : numpy.ndarray, float32, (K, U)

    Raises
    ------
    ValueError
        If ``n_top`` < 1.
    """
    if n_top < 1:
        raise ValueError(f"n_top must be at least 1, got {n_top}")
    acts_NU = np.asarray(acts_NU, dtype=np.float32)
    n_images, n_units = acts_NU.shape
    values, index = selectivity.topk_merge(
        np.empty((0, n_units), np.float32),
        np.empty((0, n_units), np.int64),
        acts_NU,
        np.arange(n_images),
        min(n_top, n_images),
    )
    return index.astype(np.int64), values


def unit_selectivity(acts_NU: np.ndarray, counts_NF: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Algorithm 1 of the shapes paper over the columns of ``acts_NU`` (methods.md Sec. 2), via
    :func:`clipmech.analyses.selectivity.affinity` and :func:`~clipmech.analyses.selectivity.entropy`.

    Parameters
    ----------
    acts_NU : numpy.ndarray, (N, U)
    counts_NF : numpy.ndarray, (N, F)
        Objects with each feature per image (:func:`clipmech.data.shapes.feature_counts`, F = 16), or a
        natural-image dataset's concepts, 0 or 1 per image (:func:`clipmech.data.concepts.concept_matrix`).
    k : int
        Top images per unit, 1 <= k <= N.

    Returns
    -------
    affinity_UF : numpy.ndarray, float64, (U, F)
        Rows sum to 1.
    entropy_U : numpy.ndarray, float64, (U,)
        Nats, at most ln F.

    Raises
    ------
    ValueError
        If ``k`` is outside 1..N or the arrays disagree on N.
    """
    n_images = acts_NU.shape[0]
    if counts_NF.shape[0] != n_images:
        raise ValueError(f"activations have {n_images} images but the feature counts {counts_NF.shape[0]}")
    if not 1 <= k <= n_images:
        raise ValueError(f"k must be in 1..{n_images} (the images), got {k}")
    index_KU, _ = top_images(acts_NU, k)
    affinity_UF = selectivity.affinity(counts_NF, index_KU)
    return affinity_UF, selectivity.entropy(affinity_UF)


def summary_selectivity(summary: UnitSummary, counts_NF: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`unit_selectivity` from a :func:`summarise` that kept at least ``k`` top images per unit.

    Parameters
    ----------
    summary : UnitSummary
    counts_NF : numpy.ndarray, (N, F)
    k : int
        1 <= k <= N.

    Returns
    -------
    affinity_UF : numpy.ndarray, float64, (U, F)
    entropy_U : numpy.ndarray, float64, (U,)

    Raises
    ------
    ValueError
        If ``k`` is outside 1..N or exceeds the images the summary kept.
    """
    n_images = counts_NF.shape[0]
    if not 1 <= k <= min(n_images, summary.index_KU.shape[0]):
        raise ValueError(f"k must be in 1..{min(n_images, summary.index_KU.shape[0])} (the images kept), got {k}")
    affinity_UF = selectivity.affinity(counts_NF, summary.index_KU[:k])
    return affinity_UF, selectivity.entropy(affinity_UF)


def histograms(acts_NU: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit histograms of the image-level activations over each unit's own range.

    Parameters
    ----------
    acts_NU : numpy.ndarray, (N, U)
    bins : int
        At least 1.

    Returns
    -------
    counts_UB : numpy.ndarray, int64, (U, bins)
        Images per bin; each row sums to N (the last bin is closed on the right).
    edges_UB : numpy.ndarray, float64, (U, bins + 1)
        Bin edges; a constant unit gets the range [value - 0.5, value + 0.5].

    Raises
    ------
    ValueError
        If ``bins`` < 1.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    acts_NU = np.asarray(acts_NU, dtype=np.float64)
    low_U, high_U, edges_UB = _bin_edges(acts_NU.min(axis=0), acts_NU.max(axis=0), bins)
    return _bin_counts(acts_NU, low_U, high_U, bins), edges_UB


@dataclass(frozen=True)
class UnitSummary:
    """What an atlas page needs of U units' image-level activations over N images, held in O(U) memory.

    Attributes
    ----------
    index_KU : numpy.ndarray, int64, (K, U)
        Each unit's top images by descending activation, ties towards the lower image index (:func:`top_images`).
    values_KU : numpy.ndarray, float32, (K, U)
    dead_U : numpy.ndarray, bool, (U,)
        The same activation on every image (:func:`clipmech.analyses.dead.dead_units`).
    counts_UB : numpy.ndarray, int64, (U, bins)
    edges_UB : numpy.ndarray, float64, (U, bins + 1)
        The histograms of :func:`histograms`.
    """

    index_KU: np.ndarray
    values_KU: np.ndarray
    dead_U: np.ndarray
    counts_UB: np.ndarray
    edges_UB: np.ndarray


def image_chunks(n_images: int, per_image: int, chunk_elements: int = CHUNK_ELEMENTS) -> list[tuple[int, int]]:
    """(start, stop) image ranges covering 0..N-1 in order, each holding at most ``chunk_elements`` values
    when one image holds ``per_image`` (the most a chunk's read holds per image: its units' activations, or
    the tokens they are computed from when those are more), and at least one image."""
    step = max(1, chunk_elements // max(1, per_image))
    return [(start, min(start + step, n_images)) for start in range(0, n_images, step)]


def summarise(
    read: Callable[[int, int], np.ndarray],
    n_images: int,
    n_top: int,
    bins: int,
    chunks: list[tuple[int, int]],
) -> UnitSummary:
    """Top images, dead units and histograms of U units, streamed over image chunks (methods.md Sec. 10):
    two passes over ``read`` (the first: a running top-k, minimum and maximum; the second: the histograms
    over each unit's range), so that memory does not grow with the number of images. Equal to
    :func:`top_images`, :func:`clipmech.analyses.dead.dead_units` and :func:`histograms` of the whole array.

    Parameters
    ----------
    read : callable
        ``read(start, stop)`` -> (stop - start, U) activations of those images (any float dtype; dead units
        are compared in it, as :func:`clipmech.analyses.dead.dead_units` does).
    n_images : int
        N, at least 1.
    n_top : int
        Top images kept per unit (at least 1; K = min(n_top, N)).
    bins : int
        Histogram bins, at least 1.
    chunks : list of (int, int)
        Image ranges covering 0..N-1 in increasing order (:func:`image_chunks`).

    Returns
    -------
    UnitSummary

    Raises
    ------
    ValueError
        If ``n_top`` or ``bins`` < 1, N < 1, or the chunks do not cover 0..N-1 in order.
    """
    if n_top < 1:
        raise ValueError(f"n_top must be at least 1, got {n_top}")
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    starts = [0] + [stop for _, stop in chunks[:-1]]
    if n_images < 1 or not chunks or [start for start, _ in chunks] != starts or chunks[-1][1] != n_images:
        raise ValueError(f"the chunks must cover images 0..{n_images - 1} in order, got {chunks[:3]}...")
    k = min(n_top, n_images)
    values = index = low = high = None
    for start, stop in chunks:
        chunk_BU = np.asarray(read(start, stop))
        if values is None:
            values, index = np.empty((0, chunk_BU.shape[1]), np.float32), np.empty((0, chunk_BU.shape[1]), np.int64)
            low, high = chunk_BU.min(axis=0), chunk_BU.max(axis=0)
        values, index = selectivity.topk_merge(values, index, chunk_BU.astype(np.float32), np.arange(start, stop), k)
        low, high = np.minimum(low, chunk_BU.min(axis=0)), np.maximum(high, chunk_BU.max(axis=0))
    dead_U = high == low
    low_U, high_U, edges_UB = _bin_edges(low.astype(np.float64), high.astype(np.float64), bins)
    counts_UB = np.zeros((low_U.size, bins), dtype=np.int64)
    for start, stop in chunks:
        counts_UB += _bin_counts(np.asarray(read(start, stop), dtype=np.float64), low_U, high_U, bins)
    return UnitSummary(index.astype(np.int64), values, dead_U, counts_UB, edges_UB)


def _bin_edges(low_U: np.ndarray, high_U: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each unit's histogram range from its float64 minimum and maximum (a constant unit's widened to
    [value - 0.5, value + 0.5]) and its ``bins + 1`` equal edges: (low_U, high_U, edges_UB)."""
    flat = high_U <= low_U
    low_U, high_U = np.where(flat, low_U - 0.5, low_U), np.where(flat, high_U + 0.5, high_U)
    edges_UB = low_U[:, None] + (high_U - low_U)[:, None] * np.linspace(0.0, 1.0, bins + 1)[None]
    return low_U, high_U, edges_UB


def _bin_counts(acts_NU: np.ndarray, low_U: np.ndarray, high_U: np.ndarray, bins: int) -> np.ndarray:
    """(U, bins) counts of float64 activations in ``bins`` equal bins from ``low_U`` to ``high_U`` (the last
    bin closed on the right, values outside clipped into the end bins)."""
    position_NU = (acts_NU - low_U) / (high_U - low_U) * bins
    bin_NU = np.clip(np.floor(position_NU).astype(np.int64), 0, bins - 1)
    n_units = acts_NU.shape[1]
    flat = (np.arange(n_units) * bins + bin_NU).ravel()
    return np.bincount(flat, minlength=n_units * bins).reshape(n_units, bins)


def quantise_maps(maps_Kt: np.ndarray) -> np.ndarray:
    """Patch maps as integers 0..255 on one scale per unit: 0 at the lowest and 255 at the highest patch
    activation over all of the unit's maps (a unit's constant offset would otherwise cover every patch).

    Parameters
    ----------
    maps_Kt : numpy.ndarray, (K, ...)
        The maps of one unit on its K top images (any trailing shape).

    Returns
    -------
    numpy.ndarray, uint8, same shape
        All zeros when the maps are constant (nothing stands out).
    """
    maps = np.asarray(maps_Kt, dtype=np.float64)
    if maps.size == 0 or maps.max() <= maps.min():
        return np.zeros(maps.shape, dtype=np.uint8)
    low, high = maps.min(), maps.max()
    return np.rint(255.0 * (maps - low) / (high - low)).astype(np.uint8)


def pair_token_maps(x_KTC: np.ndarray, alpha_KHT: np.ndarray, head: int, neuron: int) -> np.ndarray:
    """The per-token terms alpha_{h,t} x_t[n] of a neuron-head pair's scalar s_{n,h} (methods.md Sec. 5).

    Summed over all tokens they give s_{n,h}; the map is the spatial tokens' terms (token 0, the mean
    token, left out).

    Parameters
    ----------
    x_KTC : numpy.ndarray, (K, T, C)
        Attention-pool input tokens (positional embedding included).
    alpha_KHT : numpy.ndarray, (K, H, T)
    head, neuron : int

    Returns
    -------
    numpy.ndarray, float64, (K, T - 1)
    """
    terms_KT = np.asarray(alpha_KHT[:, head, :], dtype=np.float64) * np.asarray(x_KTC[:, :, neuron], dtype=np.float64)
    return terms_KT[:, 1:]


def residual_writers(site: str, n_layers: int) -> list[int]:
    """The vision blocks whose MLP output (``visual.blocks.{l}.hook_mlp_out``) is summed into the residual
    stream at ``site``: blocks before l for ``hook_resid_pre``, up to and including l for ``hook_resid_post``,
    before l for ``hook_resid_mid`` (the MLP of block l comes after it).

    Parameters
    ----------
    site : str
        ``visual.blocks.{l}.hook_resid_pre`` | ``hook_resid_mid`` | ``hook_resid_post``.
    n_layers : int
        Vision blocks of the model (the writers are capped to them).

    Returns
    -------
    list of int
        Increasing; empty for another kind of site (its dims are not residual dims).
    """
    match = _RESID_SITE.fullmatch(site)
    if match is None:
        return []
    layer, hook = int(match.group(1)), match.group(2)
    last = layer if hook == "hook_resid_post" else layer - 1
    return list(range(min(last, n_layers - 1) + 1))


def strongest_inputs(w_enc_nD: np.ndarray, n_inputs: int) -> tuple[np.ndarray, np.ndarray]:
    """Each SAE latent's ``n_inputs`` input dims of largest |encoder weight| (ties to the lower dim).

    A latent reads residual dim j, which is written by channel j of every earlier block's MLP output
    (:func:`residual_writers`): these are the ViT MLP units a latent's page links to.

    Parameters
    ----------
    w_enc_nD : numpy.ndarray, (n, D)
        ``W_enc`` of a :class:`clipmech.sae.model.TopKSAE`.
    n_inputs : int
        At least 1, capped to D.

    Returns
    -------
    dims_nK : numpy.ndarray, int64, (n, K)
    weights_nK : numpy.ndarray, float64, (n, K)
        The signed weights.

    Raises
    ------
    ValueError
        If ``n_inputs`` < 1.
    """
    if n_inputs < 1:
        raise ValueError(f"n_inputs must be at least 1, got {n_inputs}")
    w = np.asarray(w_enc_nD, dtype=np.float64)
    dims = np.argsort(-np.abs(w), axis=1, kind="stable")[:, : min(n_inputs, w.shape[1])]
    return dims.astype(np.int64), np.take_along_axis(w, dims, axis=1)


def page_mask(entropy_U: np.ndarray, dead_U: np.ndarray, max_units: int | None) -> np.ndarray:
    """Which units get a full page: the ``max_units`` lowest-entropy live ones (ties to the lower position,
    undefined entropies last); every live unit when ``max_units`` is None. A dead unit
    (:func:`clipmech.analyses.dead.dead_units`) never gets a page.

    Parameters
    ----------
    entropy_U : numpy.ndarray, float, (U,)
    dead_U : numpy.ndarray, bool, (U,)
    max_units : int or None

    Returns
    -------
    numpy.ndarray, bool, (U,)
    """
    entropy_U = np.asarray(entropy_U, dtype=np.float64)
    live_U = ~np.asarray(dead_U, dtype=bool)
    if max_units is None or max_units >= entropy_U.size:
        return live_U
    order = np.argsort(np.where(np.isnan(entropy_U), np.inf, entropy_U), kind="stable")
    mask = np.zeros(entropy_U.size, dtype=bool)
    mask[order[live_U[order]][:max_units]] = True
    return mask
