"""Neuron selectivity: top-k feature affinity and Shannon entropy (Algorithm 1 of the shapes paper).

For every unit (a neuron of a vision-MLP output, reduced over tokens): rank the images by its
activation, take the top k; o_f = mean count of objects with feature f over those k images;
a_f = o_f / sum_j o_j (feature affinity); H = -sum_f a_f ln a_f over the 16 features (natural log,
maximum ln 16). Low entropy = selective. methods.md Sec. 2 adds a null: the entropy of random
k-subsets of images, giving each unit's percentile (the probability that a random subset is at least
as selective, a one-sided p-value).

The top-k is streamed over the store's image chunks, so memory is O((k + chunk) x units) whatever
the number of images.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats
import xarray as xr

from clipmech.data import shapes, tables
from clipmech.data.shapes import FEATURES

log = logging.getLogger(__name__)


def topk_merge(
    values_KU: np.ndarray, index_KU: np.ndarray, chunk_BU: np.ndarray, chunk_index_B: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge a chunk of activations into running per-unit top-k lists.

    Ties are broken towards the lower image index, exactly as a stable descending sort of all images
    would, provided chunks arrive in increasing image order (the running list, whose indices are all
    lower than the chunk's, is placed first and the sort is stable).

    Parameters
    ----------
    values_KU, index_KU : numpy.ndarray, (K', U)
        Current top values (descending per column) and their image indices; K' <= k (may be 0).
    chunk_BU : numpy.ndarray, (B, U)
        Activations of B new images for U units.
    chunk_index_B : numpy.ndarray, int, (B,)
        Their image indices, increasing and above every index already held.
    k : int

    Returns
    -------
    values_KU, index_KU : numpy.ndarray, (min(k, K' + B), U)
    """
    values = np.concatenate([values_KU, chunk_BU], axis=0)
    index = np.concatenate([index_KU, np.broadcast_to(chunk_index_B[:, None], chunk_BU.shape)], axis=0)
    order = np.argsort(-values, axis=0, kind="stable")[:k]
    return np.take_along_axis(values, order, axis=0), np.take_along_axis(index, order, axis=0)


def streaming_topk(acts: xr.DataArray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit top-k images of an (image, unit...) DataArray, streamed over its image chunks.

    Parameters
    ----------
    acts : xarray.DataArray
        Dims ``("image", ...)``; any further dims are flattened into units (e.g. layer x neuron).
        Backed by dask/zarr: only one image chunk is in memory at a time.
    k : int

    Returns
    -------
    values_KU : numpy.ndarray, float32, (k, U)
        Top activations per unit, descending.
    index_KU : numpy.ndarray, int64, (k, U)
        Their positions along the image dim (ties: lower index first).

    Raises
    ------
    ValueError
        If ``k`` exceeds the number of images.
    """
    n_images = acts.sizes["image"]
    if not 1 <= k <= n_images:
        raise ValueError(f"top-k needs 1 <= k <= number of images ({n_images}), got k={k}")
    chunks = acts.chunks[acts.get_axis_num("image")] if acts.chunks else (n_images,)
    n_units = int(np.prod([acts.sizes[d] for d in acts.dims if d != "image"]))
    values = np.empty((0, n_units), dtype=np.float32)
    index = np.empty((0, n_units), dtype=np.int64)
    first = 0
    for size in chunks:
        chunk = np.asarray(acts.isel(image=slice(first, first + size)).values, dtype=np.float32).reshape(size, n_units)
        values, index = topk_merge(values, index, chunk, np.arange(first, first + size), k)
        first += size
    return values, index


def affinity(counts_NF: np.ndarray, index_KU: np.ndarray) -> np.ndarray:
    """Feature affinities of each unit from its top-k images (Algorithm 1, lines 4-9).

    Parameters
    ----------
    counts_NF : numpy.ndarray, (N, F)
        Objects with each feature per image (:func:`clipmech.data.shapes.feature_counts`).
    index_KU : numpy.ndarray, int, (k, U)
        Top-k image indices per unit.

    Returns
    -------
    affinity_UF : numpy.ndarray, float64, (U, F)
        a_f = o_f / sum_j o_j with o_f the mean count over the top-k images; rows sum to 1, or are NaN
        when no top-k image holds any concept.
    """
    occurrences_UF = counts_NF[index_KU].mean(axis=0)
    total_U1 = occurrences_UF.sum(axis=1, keepdims=True)
    # A unit whose top-k images hold no concept (possible outside Shapes) has no affinity: NaN.
    return np.divide(occurrences_UF, total_U1, out=np.full(occurrences_UF.shape, np.nan), where=total_U1 > 0)


def entropy(affinity_UF: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats of each row of affinities (0 ln 0 = 0); maximum ln F; NaN for a NaN row.

    Returns
    -------
    numpy.ndarray, float64, (U,)
    """
    a = np.asarray(affinity_UF, dtype=np.float64)
    terms = np.where(a > 0, -a * np.log(np.where(a > 0, a, 1.0)), 0.0)
    return np.where(np.isnan(a).any(axis=-1), np.nan, terms.sum(axis=-1))


def null_entropies(counts_NF: np.ndarray, k: int, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """Entropies of random k-subsets of images: the selectivity of a unit that ignores the image.

    Parameters
    ----------
    counts_NF : numpy.ndarray, (N, F)
    k : int
        Subset size (the top-k of the analysis).
    n_draws : int
        Random subsets, each drawn without replacement.
    rng : numpy.random.Generator

    Returns
    -------
    numpy.ndarray, float64, (n_draws,)
    """
    n_images = counts_NF.shape[0]
    index_KZ = np.stack([rng.choice(n_images, size=k, replace=False) for _ in range(n_draws)], axis=1)
    return entropy(affinity(counts_NF, index_KZ))


def null_percentile(entropy_U: np.ndarray, null_Z: np.ndarray) -> np.ndarray:
    """Fraction of null subsets at least as selective (entropy <= the unit's): a one-sided p-value.

    Uses ``scipy.stats.percentileofscore(kind="weak")`` over the finite null entropies (a random subset
    without any concept has none); 0 means more selective than every random subset drawn; NaN for a
    unit without entropy.
    """
    finite = null_Z[np.isfinite(null_Z)]
    percentile = scipy.stats.percentileofscore(finite, entropy_U, kind="weak") / 100.0
    return np.where(np.isnan(entropy_U), np.nan, percentile)


def unit_table(
    entropy_U: np.ndarray,
    affinity_UF: np.ndarray,
    layer_U: np.ndarray,
    neuron_U: np.ndarray,
    p_null_U: np.ndarray,
    names: Sequence[str] = FEATURES,
) -> pd.DataFrame:
    """All units sorted by ascending entropy (ties by layer, neuron).

    Columns: layer, neuron, entropy, p_null (null percentile), top1..top3 (concepts of highest
    affinity; fewer with fewer concepts), then one ``a_<concept>`` column per concept of ``names``
    (the Shapes features by default; a dataset's concepts, methods.md Sec. 1.1).
    """
    order = np.argsort(-np.nan_to_num(affinity_UF, nan=-1.0), axis=1, kind="stable")
    columns = {"layer": layer_U, "neuron": neuron_U, "entropy": entropy_U, "p_null": p_null_U}
    for rank in range(min(3, len(names))):
        columns[f"top{rank + 1}"] = np.asarray(names, dtype=object)[order[:, rank]]
    table = pd.DataFrame(columns)
    affinities = pd.DataFrame(affinity_UF, columns=[f"a_{name}" for name in names])
    table = pd.concat([table, affinities], axis=1)
    return table.sort_values(["entropy", "layer", "neuron"], kind="stable").reset_index(drop=True)


def run(
    store: xr.Dataset,
    counts_NF: np.ndarray,
    reduction: str,
    k: int,
    n_null: int,
    seed: int,
    names: Sequence[str] = FEATURES,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Algorithm 1 over every unit of an activation store, with the random-subset null.

    Parameters
    ----------
    store : xarray.Dataset
        An activation store (:mod:`clipmech.stores.activations`) holding the ``reduction`` variable.
    counts_NF : numpy.ndarray, (N, F)
        Feature counts of the store's images, in store order: Shapes' 16 feature counts, or another
        dataset's concept matrix (methods.md Sec. 1.1) as 0/1.
    reduction : {"mean", "max", "cls"}
    k : int
    n_null : int
        Random subsets in the null.
    seed : int
    names : sequence of str
        The F concepts' names (the Shapes features by default).

    Returns
    -------
    units : pandas.DataFrame
        :func:`unit_table` over all layers.
    topk : pandas.DataFrame
        Long table (layer, neuron, rank, image, activation) of every unit's top-k images.
    null_Z : numpy.ndarray
        The null entropies.

    Raises
    ------
    KeyError
        If the store lacks the reduction (the message lists what it holds).
    ValueError
        If the store and the counts disagree on the number of images.
    """
    if reduction not in store:
        held = [name for name in store.data_vars if name in ("mean", "max", "cls")]
        raise KeyError(f"store has no {reduction!r} reduction; it holds: {', '.join(held)}")
    acts = store[reduction].transpose("image", "layer", "neuron")
    if acts.sizes["image"] != counts_NF.shape[0]:
        raise ValueError(
            f"store has {acts.sizes['image']} images but the feature counts have {counts_NF.shape[0]} rows"
        )
    values_KU, index_KU = streaming_topk(acts, k)
    n_layers, n_neurons = acts.sizes["layer"], acts.sizes["neuron"]
    layer_U = np.repeat(acts["layer"].values, n_neurons)
    neuron_U = np.tile(acts["neuron"].values, n_layers)
    affinity_UF = affinity(counts_NF, index_KU)
    entropy_U = entropy(affinity_UF)
    null_Z = null_entropies(counts_NF, k, n_null, np.random.default_rng(seed))
    units = unit_table(entropy_U, affinity_UF, layer_U, neuron_U, null_percentile(entropy_U, null_Z), names)
    topk = pd.DataFrame(
        {
            "layer": np.tile(layer_U, k),
            "neuron": np.tile(neuron_U, k),
            "rank": np.repeat(np.arange(k), layer_U.size),
            "image": index_KU.ravel(),
            "activation": values_KU.ravel(),
        }
    ).sort_values(["layer", "neuron", "rank"], kind="stable")
    log.info(
        "%d units; entropy min %.3f median %.3f (null median %.3f, max ln %d = %.3f)",
        entropy_U.size,
        np.nanmin(entropy_U),
        np.nanmedian(entropy_U),
        np.nanmedian(null_Z),
        len(names),
        np.log(len(names)),
    )
    return units, topk, null_Z


def write(
    units: pd.DataFrame,
    topk: pd.DataFrame,
    null_Z: np.ndarray,
    units_path: str | Path,
    topk_path: str | Path,
    null_path: str | Path,
) -> None:
    """Write the unit table, the top-k table and the null entropies as TSV files."""
    for table, path in ((units, units_path), (topk, topk_path), (pd.DataFrame({"entropy": null_Z}), null_path)):
        tables.write_table(table, path)


def heatmap_examples(
    store: xr.Dataset,
    counts_NF: np.ndarray,
    unit: pd.Series,
    topk: pd.DataFrame,
    n_examples: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Images with and without a unit's two highest-affinity features, with its patch-wise activation.

    "With": the unit's top-ranked images. "Without": a seeded random draw among the images that hold
    neither feature (the poster's figure contrasts both).

    Parameters
    ----------
    store : xarray.Dataset
        Must hold ``tokens`` (image, layer, token, neuron) and the ``n_prefix_tokens``,
        ``grid_rows``, ``grid_cols`` attributes.
    unit : pandas.Series
        A row of the unit table (layer, neuron, top1, top2).

    Returns
    -------
    with_idx, maps_with, without_idx, maps_without
        Image indices (n,) and activation maps (n, grid_rows, grid_cols), float32.

    Raises
    ------
    KeyError
        If the store holds no per-token activations (extracted with ``save_tokens: false``).
    """
    if "tokens" not in store:
        raise KeyError("store holds no per-token activations (extraction ran with save_tokens: false)")
    ranked = topk[(topk["layer"] == unit["layer"]) & (topk["neuron"] == unit["neuron"])].sort_values("rank")
    with_idx = ranked["image"].to_numpy()[:n_examples]
    features = [FEATURES.index(unit["top1"]), FEATURES.index(unit["top2"])]
    candidates = np.flatnonzero(counts_NF[:, features].sum(axis=1) == 0)
    without_idx = np.sort(rng.choice(candidates, size=min(n_examples, candidates.size), replace=False))
    prefix = int(store.attrs["n_prefix_tokens"])
    grid = (int(store.attrs["grid_rows"]), int(store.attrs["grid_cols"]))
    unit_tokens = store["tokens"].sel(layer=unit["layer"], neuron=unit["neuron"])

    def maps(index):
        tokens_NT = np.asarray(unit_tokens.isel(image=np.asarray(index, dtype=int)).values, dtype=np.float32)
        return tokens_NT[:, prefix:].reshape(len(index), *grid)

    return with_idx, maps(with_idx), without_idx, maps(without_idx)


def read_affinities(units: str | Path) -> np.ndarray:
    """The (U, 16) affinity matrix of a unit table, rows renormalised to sum to 1.

    ``units.tsv`` stores affinities to 6 significant digits, so its rows sum to 1 only up to
    rounding (up to ~1e-5 over 16 columns); :mod:`clipmech.analyses.superposition` checks the sums at
    1e-6, so the rounding is divided out here. Rows are in the table's order (ascending entropy).
    """
    table = pd.read_csv(units, sep="\t")
    affinity_UF = table[[f"a_{feature}" for feature in shapes.FEATURES]].to_numpy(dtype=np.float64)
    return affinity_UF / affinity_UF.sum(axis=1, keepdims=True)
