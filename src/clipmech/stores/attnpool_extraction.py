"""Extraction of an attention-pool store: run a CLIP-ResNet over a dataset with its attention pool captured.

The store's layout is described in :mod:`clipmech.stores.attnpool`, whose readers do not depend on
this module, the model loading or the hooks; this module writes it (:func:`extract_attnpool`),
resumably through :mod:`clipmech.stores.base`, with the captures of :mod:`clipmech.hooks.attnpool`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import dask.array
import numpy as np
import torch
import xarray as xr
from tqdm import tqdm

from clipmech.data import datasets, loader
from clipmech.decomposition import pool
from clipmech.hooks.attnpool import capture_attnpool
from clipmech.hooks.pool_forward import attnpool_output_from_attention
from clipmech.models import loading
from clipmech.models.precision import autocast
from clipmech.models.towers import tower
from clipmech.stores import attnpool as pool_store
from clipmech.stores import base

log = logging.getLogger(__name__)

#: What each batch variable records, for the message of a non-finite batch (:func:`clipmech.stores.base.check_finite`).
POOL_SITES = {
    "x": "visual.attnpool input x",
    "alpha": "visual.attnpool attention alpha",
    "y": "visual.attnpool output y",
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
    code : str
        Hash of the package code of the extracting rule (its ``code`` param, :mod:`clipmech.codehash`), so
        that a resume after a code edit starts afresh instead of mixing two versions in one store.
    precision : {"fp32", "bf16", "fp16"}
        The compute precision of the forwards (``extraction.precision``, :mod:`clipmech.models.precision`).
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
    code: str
    precision: str


@torch.no_grad()
def _stored_output(model, capture, precision: str) -> torch.Tensor:
    """The pool output y to store, float32 (N, E): the module's at fp32; at bf16 / fp16 the output of the
    captured x and alpha recomputed in float64 (:func:`clipmech.hooks.pool_forward.attnpool_output_from_attention`),
    so that the stored y is the exact pool of the stored x and alpha to float32 rounding, as the
    decomposition checks (``decomposition.max_rel_err``), rather than to the half precision's. The two
    differ by at most that rounding, which the capture check bounds (:data:`clipmech.hooks.attnpool.VERIFY_RTOL`)."""
    if precision == "fp32":
        return capture.y_NE.float()
    pool_module = model.visual.attnpool
    return attnpool_output_from_attention(
        capture.x_NTC,
        capture.alpha_NHT,
        pool_module.v_proj.weight,
        pool_module.v_proj.bias,
        pool_module.c_proj.weight,
        pool_module.c_proj.bias,
    ).float()


def store_template(
    n_images: int, batch: int, prov: AttnPoolProvenance, weights: pool.AttnPoolWeights, grid: tuple[int, int]
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
        "x": (
            ("image", "token", "neuron"),
            dask.array.zeros((n_images, n_tokens, width), chunks=(batch, n_tokens, width), dtype="float32"),
        ),
        "alpha": (
            ("image", "head", "token"),
            dask.array.zeros((n_images, n_heads, n_tokens), chunks=(batch, n_heads, n_tokens), dtype="float32"),
        ),
        "y": (("image", "embed"), dask.array.zeros((n_images, embed_dim), chunks=(batch, embed_dim), dtype="float32")),
    }
    data_vars.update({name: (dims, getattr(weights, name)) for name, dims in pool_store.WEIGHT_DIMS.items()})
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
    spec: loading.ModelSpec,
    dataset_dir: str | Path,
    store: str | Path,
    batch_size: int = 32,
    device: str = "auto",
    precision: str = "fp32",
    *,
    code: str,
    workers: int = 0,
) -> Path:
    """Run a CLIP-ResNet over a dataset and write its attention-pool store (methods.md Sec. 5).

    Each batch goes through :func:`clipmech.hooks.attnpool.capture_attnpool`, which also checks
    that the output recomputed from the captured x and alpha matches the module's output.

    Parameters
    ----------
    spec : ModelSpec
        A model with a ModifiedResNet image tower.
    dataset_dir : path
        A dataset directory (:mod:`clipmech.data.datasets`): synthetic, or a natural-image manifest whose
        files are decoded by ``workers`` processes (:func:`clipmech.data.loader.pixel_batches`).
    store : path
        The final store (a directory); written via ``<store>.partial``, resumable.
    batch_size : int
        Images per forward pass and per zarr chunk.
    device : str
        ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``...
    precision : {"fp32", "bf16", "fp16"}
        The forward's compute precision (:func:`clipmech.models.precision.autocast`); the pool's x, alpha and
        y are stored as float32 whatever it is, the capture check's tolerance is that of the pool's
        dtype (:data:`clipmech.hooks.attnpool.VERIFY_RTOL`), and at bf16 / fp16 the stored y is the pool of
        the stored x and alpha recomputed in float64 (:func:`_stored_output`).
    code : str
        Hash of the extracting rule's package code (``AttnPoolProvenance.code``).
    workers : int
        Decoding processes for a natural-image dataset.

    Returns
    -------
    pathlib.Path
        The published store.

    Raises
    ------
    StoreLockedError
        If another process is writing the store (:mod:`clipmech.stores.locks`); raised before the model
        is loaded, and nothing is read, written or deleted.
    FileExistsError
        If ``store`` already exists.
    TypeError
        If the model's image tower has no attention pool (a ViT).
    RuntimeError
        If the capture check fails (:func:`clipmech.hooks.attnpool.check_capture`).
    ValueError
        If a batch holds a NaN or infinite value (:func:`clipmech.stores.base.check_finite`; the
        store stays unpublished), or for fp16 on a device that is not CUDA.
    """
    store = Path(store)
    # A second writer of the store fails here, before it loads anything or touches a file.
    with base.writing(store):
        if store.exists():
            raise FileExistsError(f"attention-pool store {store} already exists; delete it to extract again")
        torch_device = loading.resolve_device(device)
        compute = autocast(torch_device, precision)
        dataset = datasets.load(dataset_dir)
        model, preprocess = loading.load_model(spec, torch_device)
        info = tower(model, "visual")
        if not info.has_attnpool:
            raise TypeError(
                f"{spec.name} has a {info.kind} image tower without visual.attnpool: attention-pool stores need an "
                "open_clip ModifiedResNet image tower (RN50, RN101, RN50x4, RN50x16, RN50x64, clipmech-rn-tiny)"
            )
        weights = pool.attnpool_weights(model.visual.attnpool, dtype=np.float32)
        prov = AttnPoolProvenance(
            **loading.run_provenance(spec, preprocess, dataset_dir, dataset.spec["sha256"], batch_size),
            code=code,
            precision=precision,
        )
        n_images = dataset.n_images
        start = base.begin_store(store, prov, lambda: store_template(n_images, batch_size, prov, weights, info.grid))
        batches = loader.pixel_batches(
            dataset, preprocess, batch_size=batch_size, start=start, workers=workers, device=torch_device
        )
        for first, last, pixels in tqdm(
            batches, desc=f"attnpool {spec.name}", total=-(-(n_images - start) // batch_size), mininterval=10
        ):
            with compute:
                capture = capture_attnpool(model, pixels.to(torch_device, non_blocking=True))
            batch = xr.Dataset(
                {
                    "x": (("image", "token", "neuron"), capture.x_NTC.float().cpu().numpy()),
                    "alpha": (("image", "head", "token"), capture.alpha_NHT.float().cpu().numpy()),
                    "y": (("image", "embed"), _stored_output(model, capture, precision).cpu().numpy()),
                }
            )
            base.write_batch(store, batch, first, last, spec.name, POOL_SITES)
        base.publish_store(store, "attention-pool store")
    log.info(
        "published %s (%d images, %d tokens, %d neurons, %d heads)",
        store,
        n_images,
        *weights.positional_embedding.shape,
        weights.n_heads,
    )
    return store
