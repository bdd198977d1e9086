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

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dask.array
import numpy as np
import xarray as xr
from tqdm import tqdm

from clipmech.data import datasets
from clipmech.decomposition import pool as dec
from clipmech.hooks.attnpool import capture_attnpool
from clipmech.models import loading
from clipmech.models.towers import tower
from clipmech.stores import activations, base

log = logging.getLogger(__name__)

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
class AttnPoolProvenance(base.ProvenanceAttrs):
    """What an attention-pool store holds; written into its attributes and checked on resume.

    Attributes
    ----------
    model, architecture : str
        Config name and open_clip architecture (a ModifiedResNet image tower).
    weights : str
        open_clip pretrained tag, ``sha256:<hex>`` of a local checkpoint, or ``random-init``.
    preprocess : str
        ``repr`` of the eval transform applied to every image.
    dataset : str
        Path of the dataset directory as given.
    dataset_sha256 : str
        sha256 of the dataset's data files (from its ``spec.json``).
    batch_size : int
        Images per zarr chunk.
    clipmech_version, open_clip_version, torch_version : str
    """

    model: str
    architecture: str
    weights: str
    preprocess: str
    dataset: str
    dataset_sha256: str
    batch_size: int
    clipmech_version: str
    open_clip_version: str
    torch_version: str


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

    weights: dec.AttnPoolWeights
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


def neuron_activations(x_NTC: np.ndarray, weights: dec.AttnPoolWeights) -> np.ndarray:
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


def store_template(
    n_images: int, batch: int, prov: AttnPoolProvenance, weights: dec.AttnPoolWeights, grid: tuple[int, int]
) -> xr.Dataset:
    """A Dataset of the store's full shape and chunking, for :func:`clipmech.stores.base.begin_store`.

    Parameters
    ----------
    n_images : int
    batch : int
        Images per zarr chunk.
    prov : AttnPoolProvenance
    weights : clipmech.decomposition.pool.AttnPoolWeights
        The pool's parameters (stored as given, in the model's dtype).
    grid : tuple of int
        (rows, cols) of the final feature map.

    Returns
    -------
    xarray.Dataset
        Lazy (dask) zeros for ``x`` (N, T, C), ``alpha`` (N, H, T), ``y`` (N, E), all float32
        and chunked by ``batch`` images; the parameters in memory; provenance and grid in the
        attributes. ``to_zarr(compute=False)`` writes the parameters, metadata and coordinates,
        ready for region writes of each batch.
    """
    n_tokens, width = weights.positional_embedding.shape
    embed_dim = weights.c_weight.shape[0]
    n_heads = weights.n_heads
    data_vars = {
        "x": (("image", "token", "neuron"), dask.array.zeros((n_images, n_tokens, width), chunks=(batch, n_tokens, width), dtype="float32")),
        "alpha": (("image", "head", "token"), dask.array.zeros((n_images, n_heads, n_tokens), chunks=(batch, n_heads, n_tokens), dtype="float32")),
        "y": (("image", "embed"), dask.array.zeros((n_images, embed_dim), chunks=(batch, embed_dim), dtype="float32")),
    }
    data_vars.update({name: (dims, getattr(weights, name)) for name, dims in WEIGHT_DIMS.items()})
    coords = {
        "image": np.arange(n_images),
        "token": np.arange(n_tokens),
        "neuron": np.arange(width),
        "head": np.arange(n_heads),
        "embed": np.arange(embed_dim),
    }
    attrs = {**prov.to_attrs(), "n_heads": n_heads, "grid_rows": grid[0], "grid_cols": grid[1]}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def extract_attnpool(
    spec: loading.ModelSpec, dataset_dir: str | Path, store: str | Path, batch_size: int = 32, device: str = "auto"
) -> Path:
    """Run a CLIP-ResNet over a dataset and write its attention-pool store (methods.md Sec. 5).

    Each batch goes through :func:`clipmech.hooks.attnpool.capture_attnpool`, which also checks
    that the output recomputed from the captured x and alpha matches the module's output.

    Parameters
    ----------
    spec : ModelSpec
        A model with a ModifiedResNet image tower.
    dataset_dir : path
        A dataset directory (:mod:`clipmech.data.datasets`).
    store : path
        The final store (a directory); written via ``<store>.partial``, resumable.
    batch_size : int
        Images per forward pass and per zarr chunk.
    device : str
        ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``...

    Returns
    -------
    pathlib.Path
        The published store.

    Raises
    ------
    FileExistsError
        If ``store`` already exists.
    TypeError
        If the model's image tower has no attention pool (a ViT).
    RuntimeError
        If the capture check fails (:func:`clipmech.hooks.attnpool.check_capture`).
    """
    store = Path(store)
    if store.exists():
        raise FileExistsError(f"attention-pool store {store} already exists; delete it to extract again")
    torch_device = activations.resolve_device(device)
    dataset = datasets.load(dataset_dir)
    model, preprocess, _ = loading.load(spec, torch_device)
    info = tower(model, "visual")
    if not info.has_attnpool:
        raise TypeError(
            f"{spec.name} has a {info.kind} image tower without visual.attnpool: attention-pool stores need an "
            "open_clip ModifiedResNet image tower (RN50, RN101, RN50x4, RN50x16, RN50x64, clipmech-rn-tiny)"
        )
    weights = dec.attnpool_weights(model.visual.attnpool, dtype=np.float32)
    prov = AttnPoolProvenance(**base.common_provenance(spec, preprocess, dataset_dir, dataset.spec["sha256"], batch_size))
    n_images = dataset.n_images
    start = base.begin_store(store, prov, lambda: store_template(n_images, batch_size, prov, weights, info.grid))
    for first in tqdm(range(start, n_images, batch_size), desc=f"attnpool {spec.name}", mininterval=10):
        last = min(first + batch_size, n_images)
        pixels = loading.preprocess_images(dataset.images[first:last], preprocess).to(torch_device)
        capture = capture_attnpool(model, pixels)
        batch = xr.Dataset(
            {
                "x": (("image", "token", "neuron"), capture.x_NTC.float().cpu().numpy()),
                "alpha": (("image", "head", "token"), capture.alpha_NHT.float().cpu().numpy()),
                "y": (("image", "embed"), capture.y_NE.float().cpu().numpy()),
            }
        )
        base.write_batch(store, batch, first, last)
    base.publish_store(store)
    log.info("published %s (%d images, %d tokens, %d neurons, %d heads)", store, n_images, *weights.positional_embedding.shape, weights.n_heads)
    return store


def open_store(store: str | Path) -> xr.Dataset:
    """Open a published attention-pool store lazily (:func:`clipmech.stores.base.open_published`).

    Raises
    ------
    FileNotFoundError
        If the store does not exist; the message says whether a partial store is waiting to resume.
    """
    return base.open_published(store, "attention-pool store")


def store_weights(ds: xr.Dataset) -> dec.AttnPoolWeights:
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
    return dec.AttnPoolWeights(
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
        u_HCE=dec.neuron_head_directions(weights),
        bias_E=dec.output_bias(weights),
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
    only s (N x H x C) is kept, never x of all images.

    Returns
    -------
    s_NHC : ndarray, shape (N, H, C), float64
    y_NE : ndarray, shape (N, E), float64
    """
    s_chunks, y_chunks = [], []
    for batch in iter_batches(ds, chunk_size, images):
        s_chunks.append(dec.pair_scalars(batch.x_NTC, batch.alpha_NHT))
        y_chunks.append(batch.y_NE)
    return np.concatenate(s_chunks), np.concatenate(y_chunks)


@dataclass(frozen=True)
class Scan:
    """What one pass over an attention-pool store gives (:func:`scan`), float64.

    Attributes
    ----------
    s_NHC : ndarray, shape (N, H, C)
        Neuron-head scalars of every image (as :func:`pair_scalars`).
    y_NE : ndarray, shape (N, E)
        Stored outputs of every image.
    token_mean_TC : ndarray, shape (T, C)
        mean_i x_t[n] over all images (positional embedding included); the reference of the
        activation mean-ablation (:func:`clipmech.decomposition.components.activation_ablated_outputs`).
    x_NTC : ndarray, shape (M, T, C)
        Tokens of the ``keep`` images, in the order given.
    """

    s_NHC: np.ndarray
    y_NE: np.ndarray
    token_mean_TC: np.ndarray
    x_NTC: np.ndarray


def scan(ds: xr.Dataset, chunk_size: int, keep: np.ndarray) -> Scan:
    """Pair scalars, outputs, mean tokens and the tokens of some images, in one pass over the store.

    Reads the store once, chunk by chunk (``chunk_size`` images in memory besides the kept
    tokens); the results equal, bit for bit, :func:`pair_scalars` and the chunk-wise token mean
    with the same ``chunk_size``, and the tokens :func:`iter_batches` reads for ``keep``.

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`open_store`.
    chunk_size : int
        Images per chunk.
    keep : array of int, shape (M,)
        Images whose tokens are kept.

    Returns
    -------
    Scan

    Raises
    ------
    ValueError
        If ``chunk_size`` < 1 or an index of ``keep`` is out of range.
    """
    n_images = ds.sizes["image"]
    keep = np.asarray(keep, dtype=np.intp)
    if keep.size and not (0 <= keep.min() and keep.max() < n_images):
        raise ValueError(f"keep indexes images {keep.min()}..{keep.max()}, the store has {n_images}")
    s_chunks, y_chunks = [], []
    total_TC = np.zeros((ds.sizes["token"], ds.sizes["neuron"]))
    x_MTC = np.empty((keep.size, ds.sizes["token"], ds.sizes["neuron"]))
    for batch in iter_batches(ds, chunk_size):
        s_chunks.append(dec.pair_scalars(batch.x_NTC, batch.alpha_NHT))
        y_chunks.append(batch.y_NE)
        total_TC += batch.x_NTC.sum(axis=0)
        hit = np.flatnonzero((keep >= batch.images.start) & (keep < batch.images.stop))
        x_MTC[hit] = batch.x_NTC[keep[hit] - batch.images.start]
    return Scan(np.concatenate(s_chunks), np.concatenate(y_chunks), total_TC / n_images, x_MTC)


def check_images(ds, data: datasets.ImageDataset, store: str, dataset_dir: str) -> None:
    if ds.sizes["image"] != data.n_images:
        raise ValueError(f"store {store} holds {ds.sizes['image']} images but dataset {dataset_dir} has {data.n_images}")
