"""Resumable, atomically published zarr stores: the protocol both store kinds share.

An activation store (:mod:`clipmech.stores.activations`) and an attention-pool store
(:mod:`clipmech.stores.attnpool`) are written the same way:

1. :func:`begin_store` writes the metadata of ``<store>.partial`` from a lazy template Dataset, or
   resumes a partial store whose attributes hold the same provenance (a frozen dataclass with the
   :class:`ProvenanceAttrs` mixin, compared field by field; any mismatch starts afresh);
2. :func:`write_batch` writes one batch of images as a region write, then records in
   ``<store>.progress.json`` how many images are complete (a batch cut off mid-write is rewritten
   whole on resume);
3. :func:`publish_store` renames the finished partial store to ``<store>``, so a store that exists
   is complete; :func:`open_published` opens it (or says that a partial store waits to resume).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path

import xarray as xr

log = logging.getLogger(__name__)


class ProvenanceAttrs:
    """Mixin of the frozen provenance dataclasses of resumable stores: JSON attributes and back.

    A store's provenance (:class:`clipmech.stores.activations.StoreProvenance`, or the attention-pool
    store's :class:`clipmech.stores.attnpool.AttnPoolProvenance`) is written into the store's attributes and
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


def partial_path(store: str | Path) -> Path:
    """Where a store is written before it is published: ``<store>.partial``."""
    store = Path(store)
    return store.with_name(store.name + ".partial")


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


def open_published(store: str | Path, kind: str) -> xr.Dataset:
    """Open a published store lazily, once per job: read what is needed from the returned Dataset.

    Parameters
    ----------
    store : path
    kind : str
        What the store is, for the error message (``"activation store"``).

    Raises
    ------
    FileNotFoundError
        If the store does not exist; the message says whether a partial store is waiting to resume.
    """
    store = Path(store)
    if not store.exists():
        waiting = partial_path(store).exists()
        hint = " (an unfinished partial store exists: rerun extraction to resume it)" if waiting else ""
        raise FileNotFoundError(f"no {kind} at {store}{hint}")
    with warnings.catch_warnings():
        # Snakemake leaves a timestamp file in directory outputs; zarr notes it is not an array.
        warnings.filterwarnings("ignore", message=".*snakemake_timestamp.*")
        return xr.open_zarr(store, consolidated=False)
