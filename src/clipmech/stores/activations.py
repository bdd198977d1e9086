"""Extract vision-MLP activations of a CLIP model into a chunked zarr store, through xarray.

Store layout (an ``xarray.Dataset``; dims image, layer, token, neuron, embed):

- ``mean``, ``max``, ``cls`` (image, layer, neuron), float32: per-image reductions over tokens
  (methods.md Sec. 2), whichever are configured;
- ``tokens`` (image, layer, token, neuron), float16: the full per-token activations (optional);
- ``embedding`` (image, embed), float32: the L2-normalised image embeddings.

One zarr chunk is one batch of images for one layer. Attributes hold the :class:`StoreProvenance`
plus the token layout (``n_prefix_tokens``, ``grid_rows``, ``grid_cols``).

Resumable and atomic: a job writes into ``<store>.partial``, recording after every batch how many
images are complete. A rerun whose provenance matches resumes after the last complete batch (a
batch is rewritten whole, so a write cut off mid-batch is repaired); any mismatch starts afresh.
The final store appears only by renaming the finished partial store, so a store that exists is
complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import dask.array
import numpy as np
import open_clip
import torch
import xarray as xr
from tqdm import tqdm

from clipmech import __version__
from clipmech.data import datasets
from clipmech.hooks.sites import hooked
from clipmech.models import loading
from clipmech.models.towers import tower

log = logging.getLogger(__name__)

REDUCTIONS = ("mean", "max", "cls")


def reduce_tokens(acts_NLTD: torch.Tensor, reduction: str, n_prefix_tokens: int) -> torch.Tensor:
    """Reduce per-token activations to one value per image and unit (methods.md Sec. 2).

    Parameters
    ----------
    acts_NLTD : torch.Tensor, (N, L, T, D)
    reduction : {"mean", "max", "cls"}
        ``mean`` / ``max`` over the patch tokens, or the class token's activation.
    n_prefix_tokens : int
        Tokens before the patch tokens.

    Returns
    -------
    torch.Tensor, float32, (N, L, D)

    Raises
    ------
    ValueError
        For an unknown reduction, or ``cls`` on a tower without a class token.
    """
    patches = acts_NLTD[:, :, n_prefix_tokens:].float()
    if reduction == "mean":
        return patches.mean(dim=2)
    if reduction == "max":
        return patches.amax(dim=2)
    if reduction == "cls":
        if n_prefix_tokens < 1:
            raise ValueError("reduction 'cls' needs a class token; this tower has none (use 'mean' or 'max')")
        return acts_NLTD[:, :, 0].float()
    raise ValueError(f"unknown reduction {reduction!r}; valid reductions are: {', '.join(REDUCTIONS)}")


class ProvenanceAttrs:
    """Mixin of the frozen provenance dataclasses of resumable stores: JSON attributes and back.

    A store's provenance (this module's :class:`StoreProvenance`, or the attention-pool store's
    :class:`clipmech.stores.attnpool.AttnPoolProvenance`) is written into the store's attributes and
    compared field by field on resume (:func:`begin_store`).
    """

    def to_attrs(self) -> dict:
        """JSON-compatible attributes (tuples become lists)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @classmethod
    def from_attrs(cls, attrs: dict):
        """Rebuild from store attributes.

        Raises
        ------
        KeyError
            If a field is missing (the store was not written by this version of clipmech).
        """
        values = {}
        for field in fields(cls):
            value = attrs[field.name]
            values[field.name] = tuple(value) if isinstance(value, list) else value
        return cls(**values)


@dataclass(frozen=True)
class StoreProvenance(ProvenanceAttrs):
    """What an activation store holds; written into its attributes and checked on resume.

    Attributes
    ----------
    model, architecture : str
        Config name and open_clip architecture.
    weights : str
        open_clip pretrained tag, ``sha256:<hex>`` of a local checkpoint, or ``random-init``.
    preprocess : str
        ``repr`` of the eval transform applied to every image.
    dataset : str
        Path of the dataset directory as given.
    dataset_sha256 : str
        sha256 of the dataset's data files (from its ``spec.json``).
    layers : tuple of int
    reductions : tuple of str
    save_tokens : bool
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
    layers: tuple[int, ...]
    reductions: tuple[str, ...]
    save_tokens: bool
    batch_size: int
    clipmech_version: str
    open_clip_version: str
    torch_version: str


def common_provenance(spec: loading.ModelSpec, preprocess, dataset_dir, dataset_sha256: str, batch_size: int) -> dict:
    """The provenance fields every resumable store records: model, weights, preprocessing, dataset,
    chunk size and package versions (pass them with a store's own fields to its provenance class)."""
    return {
        "model": spec.name,
        "architecture": spec.architecture,
        "weights": loading.weights_id(spec),
        "preprocess": repr(preprocess),
        "dataset": str(dataset_dir),
        "dataset_sha256": dataset_sha256,
        "batch_size": int(batch_size),
        "clipmech_version": __version__,
        "open_clip_version": open_clip.__version__,
        "torch_version": torch.__version__,
    }


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; any other value is passed to torch.device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def partial_path(store: str | Path) -> Path:
    """Where a store is written before it is published: ``<store>.partial``."""
    store = Path(store)
    return store.with_name(store.name + ".partial")


def store_template(n_images: int, layers, n_tokens: int, width: int, embed_dim: int, batch: int, prov, extra_attrs) -> xr.Dataset:
    """A lazy (dask) Dataset of the store's full shape and chunking; ``to_zarr(compute=False)``
    writes its metadata and coordinates only, ready for region writes of each batch."""
    n_layers = len(layers)
    data_vars = {
        reduction: (("image", "layer", "neuron"), dask.array.zeros((n_images, n_layers, width), chunks=(batch, 1, width), dtype="float32"))
        for reduction in prov.reductions
    }
    if prov.save_tokens:
        data_vars["tokens"] = (
            ("image", "layer", "token", "neuron"),
            dask.array.zeros((n_images, n_layers, n_tokens, width), chunks=(batch, 1, n_tokens, width), dtype="float16"),
        )
    data_vars["embedding"] = (("image", "embed"), dask.array.zeros((n_images, embed_dim), chunks=(batch, embed_dim), dtype="float32"))
    coords = {
        "image": np.arange(n_images),
        "layer": np.asarray(layers),
        "token": np.arange(n_tokens),
        "neuron": np.arange(width),
        "embed": np.arange(embed_dim),
    }
    return xr.Dataset(data_vars, coords=coords, attrs={**prov.to_attrs(), **extra_attrs})


def progress_path(store: str | Path) -> Path:
    """The file beside the partial store that records how many images are complete."""
    store = Path(store)
    return store.with_name(store.name + ".progress.json")


def _read_progress(partial: Path, progress: Path, prov: ProvenanceAttrs) -> int:
    """Images already complete in a partial store with the same provenance, else -1."""
    if not progress.is_file():
        return -1
    try:
        stored = type(prov).from_attrs(xr.open_zarr(partial, consolidated=False).attrs)
    except (KeyError, FileNotFoundError, ValueError) as error:
        log.warning("partial store %s unreadable (%s); starting afresh", partial, error)
        return -1
    if stored != prov:
        changed = [f.name for f in fields(prov) if getattr(stored, f.name) != getattr(prov, f.name)]
        log.warning("partial store %s has other provenance (%s differ); starting afresh", partial, ", ".join(changed))
        return -1
    return int(json.loads(progress.read_text())["images_complete"])


def _write_progress(progress: Path, n_complete: int) -> None:
    tmp = progress.with_name(progress.name + ".tmp")
    tmp.write_text(json.dumps({"images_complete": n_complete}))
    os.replace(tmp, progress)


def begin_store(store: str | Path, prov: ProvenanceAttrs, template: Callable[[], xr.Dataset]) -> int:
    """Start or resume writing ``<store>.partial``; the first image still to write.

    A partial store whose attributes hold the same provenance resumes after its last complete
    batch; anything else (no progress file, unreadable store, other provenance) is deleted and
    the store started afresh from ``template()`` (a lazy Dataset of the full shape and chunking,
    whose metadata and coordinates ``to_zarr(compute=False)`` writes).

    Raises
    ------
    FileExistsError
        If ``store`` already exists (a complete store is never overwritten).
    """
    store = Path(store)
    if store.exists():
        raise FileExistsError(f"store {store} already exists; delete it to extract again")
    partial, progress = partial_path(store), progress_path(store)
    start = _read_progress(partial, progress, prov)
    if start < 0:
        shutil.rmtree(partial, ignore_errors=True)
        template().to_zarr(partial, compute=False, mode="w", consolidated=False)
        _write_progress(progress, 0)
        return 0
    if start:
        log.info("resuming %s after %d images", partial, start)
    return start


def write_batch(store: str | Path, batch: xr.Dataset, first: int, last: int) -> None:
    """Write images ``first:last`` of the partial store (a region write), then record them complete."""
    batch.to_zarr(partial_path(store), region={"image": slice(first, last)}, consolidated=False)
    _write_progress(progress_path(store), last)


def publish_store(store: str | Path) -> Path:
    """Publish a finished partial store by a rename, so a store that exists is complete."""
    store = Path(store)
    # Without the progress file a leftover partial store restarts from scratch, so dropping it
    # before the rename never lets an incomplete store pass for a complete one.
    progress_path(store).unlink()
    os.replace(partial_path(store), store)
    return store


def activations_batch(
    model, cache, sites: list[str], pixels_NCHW: torch.Tensor, reductions, save_tokens: bool, n_prefix_tokens: int
) -> xr.Dataset:
    """Forward one batch with the MLP-output sites hooked and package what the store holds for it.

    Parameters
    ----------
    model
        An open_clip model run inside ``hooked(model, capture=sites)``, which yields ``cache``.
    cache : clipmech.hooks.sites.ActivationCache
    sites : list of str
        ``visual.blocks.<l>.hook_mlp_out`` of the stored layers, in layer order.
    pixels_NCHW : torch.Tensor
        Preprocessed images on the model's device.

    Returns
    -------
    xarray.Dataset
        The batch's reductions (image, layer, neuron) float32, ``tokens`` (image, layer, token,
        neuron) float16 when ``save_tokens``, and ``embedding`` (image, embed) float32 normalised;
        no coordinates, ready for a region write.
    """
    cache.reset()
    embedding_NE = model.encode_image(pixels_NCHW, normalize=True).float()
    acts_NLTD = torch.stack([cache[site] for site in sites], dim=1)  # [batch, layer, token, d_model]
    batch = {
        reduction: (("image", "layer", "neuron"), reduce_tokens(acts_NLTD, reduction, n_prefix_tokens).cpu().numpy())
        for reduction in reductions
    }
    if save_tokens:
        batch["tokens"] = (("image", "layer", "token", "neuron"), acts_NLTD.to(torch.float16).cpu().numpy())
    batch["embedding"] = (("image", "embed"), embedding_NE.cpu().numpy())
    return xr.Dataset(batch)


def extract(
    spec: loading.ModelSpec,
    dataset_dir: str | Path,
    store: str | Path,
    layers: list[int] | None = None,
    reductions: tuple[str, ...] = ("mean", "max", "cls"),
    save_tokens: bool = True,
    batch_size: int = 32,
    device: str = "auto",
) -> Path:
    """Run a model over a dataset with MLP hooks and write the activation store.

    Parameters
    ----------
    spec : ModelSpec
    dataset_dir : path
        A dataset directory (:mod:`clipmech.data.datasets`).
    store : path
        The final store (a directory); written via ``<store>.partial``.
    layers : list of int, optional
        Vision blocks to hook (default: all).
    reductions : tuple of {"mean", "max", "cls"}
    save_tokens : bool
        Also store every token's activation (float16).
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
        If ``store`` already exists (a complete store is never overwritten).
    ValueError
        For an unknown reduction.
    """
    store = Path(store)
    if store.exists():
        raise FileExistsError(f"activation store {store} already exists; delete it to extract again")
    unknown = sorted(set(reductions) - set(REDUCTIONS))
    if unknown:
        raise ValueError(f"unknown reductions {unknown}; valid reductions are: {', '.join(REDUCTIONS)}")
    torch_device = resolve_device(device)
    dataset = datasets.load(dataset_dir)
    model, preprocess, _ = loading.load(spec, torch_device)
    info = tower(model, "visual")
    if info.kind == "resnet":
        raise TypeError(
            f"activation stores hold transformer MLP outputs; {spec.name} has a ModifiedResNet vision tower "
            "(use the attention-pool store, clipmech.stores.attnpool)"
        )
    layers = list(range(info.n_layers)) if layers is None else list(layers)
    sites = [f"visual.blocks.{layer}.hook_mlp_out" for layer in layers]
    prov = StoreProvenance(
        **common_provenance(spec, preprocess, dataset_dir, dataset.spec["sha256"], batch_size),
        layers=tuple(layers),
        reductions=tuple(reductions),
        save_tokens=bool(save_tokens),
    )
    n_images = dataset.n_images
    layout = {"n_prefix_tokens": info.n_prefix_tokens, "grid_rows": info.grid[0], "grid_cols": info.grid[1]}
    embed_dim = int(model.visual.output_dim)
    start = begin_store(
        store,
        prov,
        lambda: store_template(n_images, layers, info.n_tokens, info.width, embed_dim, batch_size, prov, layout),
    )
    with hooked(model, capture=sites) as cache, torch.inference_mode():
        for first in tqdm(range(start, n_images, batch_size), desc=f"extract {spec.name}", mininterval=10):
            last = min(first + batch_size, n_images)
            pixels = loading.preprocess_images(dataset.images[first:last], preprocess).to(torch_device)
            batch = activations_batch(model, cache, sites, pixels, reductions, save_tokens, info.n_prefix_tokens)
            write_batch(store, batch, first, last)
    publish_store(store)
    log.info("published %s (%d images, layers %s)", store, n_images, layers)
    return store


def open_store(store: str | Path) -> xr.Dataset:
    """Open a published activation store lazily.

    Raises
    ------
    FileNotFoundError
        If the store does not exist; the message says whether a partial store is waiting to resume.
    """
    store = Path(store)
    if not store.exists():
        hint = " (an unfinished partial store exists: rerun extraction to resume it)" if partial_path(store).exists() else ""
        raise FileNotFoundError(f"no activation store at {store}{hint}")
    with warnings.catch_warnings():
        # Snakemake leaves a timestamp file in directory outputs; zarr notes it is not an array.
        warnings.filterwarnings("ignore", message=".*snakemake_timestamp.*")
        return xr.open_zarr(store, consolidated=False)
