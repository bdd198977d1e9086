"""Attention-pool stores of CLIP-ResNet: per image the tokens x, the attention alpha and the output.

methods.md Sec. 5 (neuron-attention paper Secs. 3.1-3.2): everything the neuron x attention-head
decomposition needs is x (T x C, positional embedding included) and alpha (H x T) per image, plus
the attention pool's parameters; contributions, norms and maps are computed from them on the fly
(:mod:`clipmech.decomposition.pool`). Store layout (an ``xarray.Dataset`` in zarr):

- ``x`` (image, token, neuron), float32: attention-pool input tokens, token 0 = mean token,
  token ``1 + i * grid_cols + j`` = feature-map location (i, j);
- ``alpha`` (image, head, token), float32: attention of the query (token 0) to every token;
- ``y`` (image, embed), float32: the attention pool's output (the image embedding before
  normalisation);
- the pool's parameters in the model's dtype: ``positional_embedding`` (token, neuron),
  ``q_weight``/``k_weight``/``v_weight`` (qkv, neuron), ``q_bias``/``k_bias``/``v_bias`` (qkv),
  ``c_weight`` (embed, qkv), ``c_bias`` (embed); attribute ``n_heads``.

One zarr chunk is one batch of images. Attributes hold the :class:`AttnPoolProvenance` and the
grid. Written resumably and published atomically (:mod:`clipmech.stores.base`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from clipmech.data import datasets
from clipmech.decomposition import pool
from clipmech.stores import base

#: Parameters of the attention pool stored with the activations, with their dims.
WEIGHT_DIMS = {
    "positional_embedding": ("token", "neuron"),
    "q_weight": ("qkv", "neuron"),
    "q_bias": ("qkv",),
    "k_weight": ("qkv", "neuron"),
    "k_bias": ("qkv",),
    "v_weight": ("qkv", "neuron"),
    "v_bias": ("qkv",),
    "c_weight": ("embed", "qkv"),
    "c_bias": ("embed",),
}


@dataclass(frozen=True)
class PoolParts:
    """The image-independent parts of the decomposition of one store (methods.md Sec. 5).

    Attributes
    ----------
    weights : clipmech.decomposition.pool.AttnPoolWeights
        The attention pool's parameters, float64.
    u_HCE : ndarray, shape (H, C, E), float64
        Neuron-head directions u_{n,h} (:func:`clipmech.decomposition.pool.neuron_head_directions`).
    bias_E : ndarray, shape (E,), float64
        :func:`clipmech.decomposition.pool.output_bias`.
    grid : tuple of int
        (rows, cols) of the final feature map; T = rows * cols + 1.
    n_images : int
    """

    weights: pool.AttnPoolWeights
    u_HCE: np.ndarray
    bias_E: np.ndarray
    grid: tuple[int, int]
    n_images: int


@dataclass(frozen=True)
class Batch:
    """Consecutive images of a store in float64.

    Attributes
    ----------
    images : slice
        Their indices in the store.
    x_NTC : ndarray, shape (n, T, C)
        Tokens, positional embedding included.
    alpha_NHT : ndarray, shape (n, H, T)
    y_NE : ndarray, shape (n, E)
        The model's attention-pool output.
    """

    images: slice
    x_NTC: np.ndarray
    alpha_NHT: np.ndarray
    y_NE: np.ndarray


def neuron_activations(x_NTC: np.ndarray, weights: pool.AttnPoolWeights) -> np.ndarray:
    """Raw feature-map activations per token: x minus the positional embedding.

    Parameters
    ----------
    x_NTC : ndarray, shape (n, T, C)
        Tokens, positional embedding included.
    weights : clipmech.decomposition.pool.AttnPoolWeights

    Returns
    -------
    ndarray, shape (n, T, C)
        Token 0 is the mean of the spatial tokens. Post-ReLU, so non-negative: the "neuron maps"
        of the paper's segmentation (Sec. 5.1).
    """
    return x_NTC - weights.positional_embedding[None]


def open_store(store: str | Path) -> xr.Dataset:
    """Open a published attention-pool store lazily (:func:`clipmech.stores.base.open_published`).

    Raises
    ------
    FileNotFoundError
        If the store does not exist; the message says whether a partial store is waiting to resume.
    """
    return base.open_published(store, "attention-pool store")


def store_weights(ds: xr.Dataset) -> pool.AttnPoolWeights:
    """The attention pool's parameters stored in ``ds``.

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`open_store`.

    Returns
    -------
    clipmech.decomposition.pool.AttnPoolWeights
        float64 NumPy arrays.
    """
    return pool.AttnPoolWeights(
        **{name: ds[name].values.astype(np.float64) for name in WEIGHT_DIMS}, n_heads=int(ds.attrs["n_heads"])
    )


def parts(ds: xr.Dataset) -> PoolParts:
    """Parameters, directions u_{n,h}, bias and grid of an opened store.

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`open_store`.

    Returns
    -------
    PoolParts
        float64.
    """
    weights = store_weights(ds)
    return PoolParts(
        weights=weights,
        u_HCE=pool.neuron_head_directions(weights),
        bias_E=pool.output_bias(weights),
        grid=(int(ds.attrs["grid_rows"]), int(ds.attrs["grid_cols"])),
        n_images=int(ds.sizes["image"]),
    )


def iter_batches(ds: xr.Dataset, chunk_size: int, images: np.ndarray | None = None) -> Iterator[Batch]:
    """Read a store chunk by chunk in float64, so no more than ``chunk_size`` images are in memory.

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`open_store`.
    chunk_size : int
        Images per batch.
    images : array of int, optional
        Indices of the images to read (default all), in the order given; ``Batch.images`` then
        indexes into this array.

    Raises
    ------
    ValueError
        If ``chunk_size`` < 1.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}")
    index = np.arange(ds.sizes["image"]) if images is None else np.asarray(images, dtype=np.intp)
    for start in range(0, len(index), chunk_size):
        part = ds.isel(image=index[start : start + chunk_size])
        yield Batch(
            images=slice(start, start + len(part["image"])),
            x_NTC=part["x"].values.astype(np.float64),
            alpha_NHT=part["alpha"].values.astype(np.float64),
            y_NE=part["y"].values.astype(np.float64),
        )


def pair_scalars(ds: xr.Dataset, chunk_size: int, images: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Neuron-head scalars s_{n,h} and outputs y of a store's images, computed chunk by chunk.

    s_{n,h} = sum_t alpha_{h,t} x_t[n] (methods.md Sec. 5; :func:`clipmech.decomposition.pool.pair_scalars`);
    only s (N x H x C) is kept, never x of all images. The stages stream :func:`iter_scalars` instead; this
    in-memory form is the oracle their tests compare against, and suits a store small enough to hold s.

    Returns
    -------
    s_NHC : ndarray, shape (N, H, C), float64
    y_NE : ndarray, shape (N, E), float64
    """
    s_chunks, y_chunks = [], []
    for batch, s_NHC in iter_scalars(ds, chunk_size, images):
        s_chunks.append(s_NHC)
        y_chunks.append(batch.y_NE)
    return np.concatenate(s_chunks), np.concatenate(y_chunks)


def iter_scalars(
    ds: xr.Dataset, chunk_size: int, images: np.ndarray | None = None
) -> Iterator[tuple[Batch, np.ndarray]]:
    """Each batch of :func:`iter_batches` with its neuron-head scalars s_{n,h}, shape (n, H, C), float64.

    The streamed form of :func:`pair_scalars`: one chunk of images in memory at a time, each chunk's
    scalars equal to those :func:`pair_scalars` computes with the same ``chunk_size``.

    Raises
    ------
    ValueError
        If ``chunk_size`` < 1.
    """
    for batch in iter_batches(ds, chunk_size, images):
        yield batch, pool.pair_scalars(batch.x_NTC, batch.alpha_NHT)


def check_images(ds, data: datasets.ImageDataset, store: str, dataset_dir: str) -> None:
    if ds.sizes["image"] != data.n_images:
        raise ValueError(
            f"store {store} holds {ds.sizes['image']} images but dataset {dataset_dir} has {data.n_images}"
        )
