"""The site activations of a MiCLIP probe as a chunked zarr store (methods.md Sec. 9.3), written batch by batch.

Rule ``probe_miclip`` runs the target on a Shapes dataset in batches and writes each batch's site activations
here, so that neither the probe nor the evaluation holds the whole (N, T, D) array: the evaluation reads the
held-out images' activations lazily (:func:`open_probe_store`), a batch of images (SAE codes) or a few units
(Network Dissection's maps) at a time. The layout mirrors one site of an activation store
(:mod:`clipmech.stores.activations`): one variable ``site_acts``, float32, dims (image, token, unit) for a
transformer site or (image, unit, row, col) for a ResNet stage; a chunk is ``batch_size`` images by at most
:data:`UNIT_CHUNK` units. It is written and published by the activation store's protocol
(:mod:`clipmech.stores.base`: region writes of finite batches, atomic publication, a crc32c checksum per chunk
checked on every read).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import dask.array
import numpy as np
import xarray as xr

from clipmech.stores import base

#: The store's one variable.
VARIABLE = "site_acts"
#: What the store is, in messages.
KIND = "MiCLIP probe store"
#: Units per chunk: Network Dissection reads the maps of a few units of every image at a time.
UNIT_CHUNK = 64
#: The dims after ``image`` of a transformer site (3-D) and of a ResNet stage (4-D).
DIMS = {3: ("token", "unit"), 4: ("unit", "row", "col")}


@dataclass(frozen=True)
class ProbeProvenance(base.ProvenanceAttrs):
    """What a probe store holds: the site of ``model`` on the ``n_images`` images of the dataset with sha256
    ``dataset_sha256``, each of ``shape`` (T, D) or (C, h, w), written ``batch_size`` images at a time (a
    partial store of another provenance is started afresh)."""

    model: str
    site: str
    dataset_sha256: str
    n_images: int
    shape: tuple[int, ...]
    batch_size: int


def _template(prov: ProbeProvenance) -> xr.Dataset:
    dims = ("image", *DIMS[len(prov.shape) + 1])
    unit_axis = dims.index("unit") - 1
    chunks = tuple(min(UNIT_CHUNK, n) if axis == unit_axis else n for axis, n in enumerate(prov.shape))
    zeros = dask.array.zeros((prov.n_images, *prov.shape), chunks=(prov.batch_size, *chunks), dtype="float32")
    return xr.Dataset({VARIABLE: (dims, zeros)}, coords={"image": np.arange(prov.n_images)})


def write_probe_store(store: str | Path, prov: ProbeProvenance, batches: Iterable[np.ndarray]) -> None:
    """Write the site activations ``batches`` yields (float32, (B, *prov.shape), images in order, B =
    ``prov.batch_size`` but for the last) into ``store`` and publish it (:mod:`clipmech.stores.base`).

    Raises
    ------
    ValueError
        If a batch holds a non-finite value (nothing of it is written, the store stays unpublished), has another
        per-image shape, or the batches hold another number of images than ``prov.n_images``.
    FileExistsError
        If ``store`` exists.
    """
    dims = ("image", *DIMS[len(prov.shape) + 1])
    base.begin_store(store, prov, functools.partial(_template, prov))
    first = 0
    for acts in batches:
        if tuple(acts.shape[1:]) != tuple(prov.shape):
            raise ValueError(f"{KIND} {store}: a batch of shape {acts.shape[1:]}, the store's images are {prov.shape}")
        last = first + len(acts)
        batch = xr.Dataset({VARIABLE: (dims, np.asarray(acts, dtype=np.float32))})
        base.write_batch(store, batch, first, last, prov.model, {VARIABLE: prov.site})
        first = last
    if first != prov.n_images:
        raise ValueError(f"{KIND} {store}: {first} images written, {prov.n_images} expected")
    base.publish_store(store, KIND)


def open_probe_store(store: str | Path) -> xr.DataArray:
    """The site activations of a published probe store, lazily: float32, (image, token, unit) or
    (image, unit, row, col); index it by position (``acts[start:stop]``, ``acts[:, :, first:stop]``) or
    ``isel``, and read a block with ``numpy.asarray``.

    Raises
    ------
    FileNotFoundError
        If the store does not exist.
    clipmech.stores.base.StoreIntegrityError
        If it lacks a chunk or a chunk fails its checksum (on the read of that chunk).
    """
    return base.open_published(store, KIND)[VARIABLE]
