"""Resumable, atomically published zarr stores: the protocol both store kinds share.

An activation store (:mod:`clipmech.stores.activations`) and an attention-pool store
(:mod:`clipmech.stores.attnpool`) are written the same way:

1. :func:`begin_store` writes the metadata of ``<store>.partial`` from a lazy template Dataset, or
   resumes a partial store whose attributes hold the same provenance (a frozen dataclass with the
   :class:`ProvenanceAttrs` mixin, compared field by field; any mismatch starts afresh);
2. :func:`write_batch` checks that one batch of images is finite, writes it as a region write,
   then records in ``<store>.progress.json`` how many images are complete (a batch cut off
   mid-write is rewritten whole on resume);
3. :func:`publish_store` checks that the progress file says every image and that every chunk of
   every array was written, records ``images_complete`` in the store's attributes and renames the
   partial store to ``<store>``, so a store that exists is complete; :func:`open_published` opens
   it (or says that a partial store waits to resume).

Integrity. Every array, coordinates included, is encoded with zstd (zarr's default) followed by a
crc32c checksum (:data:`COMPRESSORS`), so a changed byte in a chunk fails the read. Every chunk is
written, even one equal to the fill value, so a chunk file that is missing means a lost chunk
(zarr would read it as NaN): :func:`open_published` and :func:`publish_store` list the chunk files
(reading no data) and refuse a store that lacks one, has another image count than its
``images_complete`` attribute, or was written without checksums. A resume trusts the progress
file only as far as the chunks it claims exist; an unreadable progress file starts afresh.

Position. A chunk's own checksum does not tell where it belongs, so :func:`publish_store` records
the crc32c of every chunk by its key in the store (:data:`CHUNK_RECORD`, read from the four last
bytes of each file), and the reader of :func:`open_published` checks each chunk it reads against
the record of its key: a chunk file copied over another fails, naming the file and the chunk it
holds. A store without the record (published by an older clipmech) is refused on open.

One writer. A store is written under an exclusive lock on ``<store>.lock``
(:mod:`clipmech.stores.locks`), taken by :func:`begin_store` (or the extraction, earlier) and
released by :func:`publish_store`: a second writer fails at once, before it reads, writes or
deletes anything.

Parts. A store may instead be written by K processes at once, each its own range of whole chunks
(:func:`part_range`): :func:`begin_parts` writes the template of ``<store>.partial`` (or keeps a
partial store of the same provenance) under the store's lock; each part, under its own lock
``<store>.part-<k>.lock``, checks with :func:`begin_part` that the partial store holds its own
provenance (it refuses another, touching nothing), writes its batches with :func:`write_batch`
and records them in ``<store>.part-<k>.progress.json``, so a killed part resumes alone; and
:func:`publish_parts` checks that every part recorded its whole range before it publishes as
:func:`publish_store` does. The chunks, metadata and attributes are those one writer would write:
the published store is the same byte for byte.
"""

from __future__ import annotations

import glob
import itertools
import json
import logging
import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import google_crc32c
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec
from zarr.storage import LocalStore, WrapperStore

# The writer lock, re-exported: stores are written through this module.
from clipmech.stores.locks import (  # noqa: F401
    StoreLockedError,
    lock_path,
    lock_store,
    unlock_store,
    writer_pid,
    writing,
)

log = logging.getLogger(__name__)

#: The bytes-to-bytes codecs of every array: zarr's default zstd, then a crc32c checksum of each chunk.
COMPRESSORS = (ZstdCodec(level=0, checksum=False), Crc32cCodec())


#: The file in a published store recording the crc32c of every chunk by its key (``<array>/c/<i>/<j>``).
CHUNK_RECORD = "chunks.json"

#: Zarr warns of files in a store that are not part of its hierarchy: Snakemake's timestamp, the chunk record.
_FOREIGN_FILES = f".*(snakemake_timestamp|{CHUNK_RECORD.replace('.', '[.]')}).*"

#: The rule that writes each kind of store, for the messages that ask to rerun it.
_RULES = {"activation store": "extract_activations", "attention-pool store": "extract_attnpool"}


class StoreIntegrityError(RuntimeError):
    """A store that lacks chunks, holds another image count than it claims, has no checksums, or holds a
    chunk at another position than the one it was written at."""


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


class StoreProvenanceError(ValueError):
    """A part of a store whose provenance differs from the one its partial store's template records."""


@dataclass(frozen=True)
class Part:
    """Part ``index`` of ``parts`` of a store: images ``first`` to ``end - 1``, whole chunks (:func:`part_range`)."""

    index: int
    parts: int
    first: int
    end: int

    def name(self, store: str | Path) -> Path:
        """``<store>.part-<k>``: the part's lock is this path's (:func:`lock_path`, ``<store>.part-<k>.lock``)."""
        store = Path(store)
        return store.with_name(f"{store.name}.part-{self.index}")

    def progress(self, store: str | Path) -> Path:
        """The file recording how far the part got: ``<store>.part-<k>.progress.json``."""
        store = Path(store)
        return store.with_name(f"{store.name}.part-{self.index}.progress.json")

    def record(self, n_complete: int) -> dict:
        """The content of its progress file once images ``first`` to ``n_complete - 1`` are written."""
        return {"images_complete": n_complete, **asdict(self)}


def part_range(n_images: int, batch_size: int, index: int, parts: int) -> Part:
    """Part ``index`` of ``parts`` of a store of ``n_images`` images in chunks of ``batch_size``.

    Each part but the last holds ``ceil(n_chunks / parts)`` whole chunks, so no two parts write one
    chunk file; a part past the last chunk is empty (``first == end``).

    Raises
    ------
    ValueError
        If ``parts`` < 1, ``index`` is not in ``0 .. parts - 1``, or ``batch_size`` < 1.
    """
    if parts < 1 or not 0 <= index < parts or batch_size < 1:
        raise ValueError(f"part {index} of {parts} (batch size {batch_size}): need 0 <= part < parts, batch size >= 1")
    per_part = -(-(-(-n_images // batch_size)) // parts) * batch_size  # images: ceil(n_chunks / parts) chunks
    return Part(index, parts, min(index * per_part, n_images), min((index + 1) * per_part, n_images))


def _part_files(store: Path, suffix: str) -> list[Path]:
    """The files ``<store>.part-<k><suffix>`` of any part count."""
    return sorted(store.parent.glob(f"{glob.escape(store.name)}.part-*{suffix}"))


def _check_no_part_writer(store: Path) -> None:
    """Raise :class:`StoreLockedError` if a live process writes a part of the store (holds its lock)."""
    for lock in _part_files(store, ".lock"):
        pid = writer_pid(lock.with_suffix(""))
        if pid is not None:
            raise StoreLockedError(
                f"{lock.with_suffix('')} is being written by another process (pid {pid}); wait for it or kill it"
            )


def _chunk_keys(path: Path) -> Iterator[str]:
    """The key of every chunk of every array of a store (``mean/c/0/1/0``), from its metadata."""
    for name, array in _arrays(path):
        for coords in itertools.product(*(range(n) for n in array.cdata_shape)):
            yield f"{name}/{array.metadata.encode_chunk_key(coords)}"


def _record_chunks(path: Path) -> None:
    """Write :data:`CHUNK_RECORD` into a store: the crc32c of each chunk file by its key.

    The crc32c is the one :class:`zarr.codecs.Crc32cCodec` stores as each file's four last bytes, so
    only those are read: a chunk copied over another keeps its own crc32c and no longer matches the
    record of its position.
    """
    record = {}
    for key in _chunk_keys(path):
        with open(path / key, "rb") as file:
            file.seek(-4, os.SEEK_END)
            record[key] = int.from_bytes(file.read(4), "little")
    tmp = path / (CHUNK_RECORD + ".tmp")
    tmp.write_text(json.dumps({"crc32c": record}, sort_keys=True))  # the same bytes whatever the listing order
    os.replace(tmp, path / CHUNK_RECORD)


def _read_chunk_record(store: Path, kind: str) -> dict[str, int]:
    """The chunk record of a published store, checked to name every chunk of it exactly once."""
    rerun = f"delete it and extract it again (rule {_RULES.get(kind, 'that writes it')})"
    try:
        record = json.loads((store / CHUNK_RECORD).read_text())["crc32c"]
    except FileNotFoundError:
        raise StoreIntegrityError(
            f"{kind} {store} has no {CHUNK_RECORD}: published by an older clipmech, its chunks cannot be "
            f"bound to their positions; {rerun}"
        ) from None
    except (ValueError, KeyError, TypeError) as error:
        raise StoreIntegrityError(f"{kind} {store}: {CHUNK_RECORD} is unreadable ({error}); {rerun}") from None
    expected = set(_chunk_keys(store))
    if not isinstance(record, dict) or set(record) != expected:
        raise StoreIntegrityError(f"{kind} {store}: {CHUNK_RECORD} does not list exactly the store's chunks; {rerun}")
    return record


class _VerifiedStore(WrapperStore):
    """A read-only local store that checks the crc32c of every chunk it reads, so that the error of a
    corrupt chunk names its file (zarr's codec checks it again, without naming it), and checks that
    crc32c against the one recorded for the chunk's key when the store was published
    (:data:`CHUNK_RECORD`), so that a chunk file copied over another fails too."""

    def __init__(self, store, record: dict[str, int]):
        super().__init__(store)
        self._record = record
        self._keys_by_crc: dict[int, list[str]] | None = None

    def _with_store(self, store):
        return type(self)(store, self._record)

    async def get(self, key, prototype, byte_range=None):
        buffer = await self._store.get(key, prototype, byte_range)
        if buffer is None or byte_range is not None or key.rsplit("/", 1)[-1] == "zarr.json":
            return buffer
        data = buffer.as_numpy_array()
        file = Path(self._store.root) / key
        crc = int.from_bytes(data[-4:].tobytes(), "little")
        if google_crc32c.value(data[:-4].tobytes()) != crc:
            raise StoreIntegrityError(
                f"chunk file {file} fails its crc32c checksum: the store is corrupt; delete it and extract it again"
            )
        if self._record.get(key) != crc:
            if self._keys_by_crc is None:  # built once, on the first misplaced chunk
                self._keys_by_crc = {}
                for other, value in self._record.items():
                    self._keys_by_crc.setdefault(value, []).append(other)
            origin = [other for other in self._keys_by_crc.get(crc, []) if other != key]
            holds = f"the chunk written at {' or '.join(origin)}" if origin else "a chunk written at another position"
            raise StoreIntegrityError(
                f"chunk file {file} holds {holds}, not the chunk written at {key} (its crc32c differs from the one "
                f"recorded in {CHUNK_RECORD}): the store is corrupt; delete it and extract it again"
            )
        return buffer


def _images_complete(progress: Path) -> int | None:
    """The image count a progress file records, or None (with a warning naming it) if it is unreadable."""
    try:
        n_complete = json.loads(progress.read_text())["images_complete"]
    except (ValueError, KeyError, TypeError) as error:  # JSONDecodeError is a ValueError
        log.warning("progress file %s is unreadable (%s: %s); starting afresh", progress, type(error).__name__, error)
        return None
    if not isinstance(n_complete, int) or n_complete < 0:
        log.warning("progress file %s records images_complete=%r, not a count; starting afresh", progress, n_complete)
        return None
    return n_complete


def _open_group(path: Path, mode: str = "r") -> zarr.Group:
    with warnings.catch_warnings():
        # Snakemake leaves a timestamp file in directory outputs; zarr notes it is not an array.
        warnings.filterwarnings("ignore", message=_FOREIGN_FILES)
        return zarr.open_group(path, mode=mode, zarr_format=3)


def _arrays(path: Path) -> list[tuple[str, zarr.Array]]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_FOREIGN_FILES)
        return list(_open_group(path).arrays())


def missing_chunks(path: str | Path) -> dict[str, list[tuple[int, ...]]]:
    """The chunks of each array of a zarr store whose files do not exist, from one listing of its files.

    Parameters
    ----------
    path : path
        A store written through this module (local directory, zarr v3, default chunk keys).

    Returns
    -------
    dict of str to list of tuple of int
        Array name -> the grid coordinates of its missing chunks; arrays with every chunk are left out.
    """
    path = Path(path)
    missing = {}
    for name, array in _arrays(path):
        directory = path / name
        present = {file.relative_to(directory).as_posix() for file in directory.rglob("*") if file.is_file()}
        lost = [
            coords
            for coords in itertools.product(*(range(n) for n in array.cdata_shape))
            if array.metadata.encode_chunk_key(coords) not in present
        ]
        if lost:
            missing[name] = lost
    return missing


def _chunk_files(path: Path, missing: dict[str, list[tuple[int, ...]]], limit: int = 5) -> str:
    group = _open_group(path)
    files = [path / name / group[name].metadata.encode_chunk_key(c) for name, lost in missing.items() for c in lost]
    more = f" and {len(files) - limit} more" if len(files) > limit else ""
    return ", ".join(str(file) for file in files[:limit]) + more


def check_store(path: str | Path, kind: str, n_complete: int) -> None:
    """Check, reading no data, that a store has checksums, ``n_complete`` images and every chunk file.

    Parameters
    ----------
    path : path
    kind : str
        What the store is, for the message (``"activation store"``).
    n_complete : int
        The number of images it must hold.

    Raises
    ------
    StoreIntegrityError
        If an array has no crc32c checksum, the ``image`` coordinate has another length than
        ``n_complete``, or a chunk file is missing; the message names the arrays or files.
    """
    path = Path(path)
    group = _open_group(path)
    unchecked = [
        name for name, array in _arrays(path) if not any(isinstance(c, Crc32cCodec) for c in array.metadata.codecs)
    ]
    if unchecked:
        raise StoreIntegrityError(
            f"{kind} {path} has arrays without a crc32c checksum ({', '.join(sorted(unchecked))}): written by an older "
            "clipmech, its chunks cannot be verified; delete it and extract it again"
        )
    n_images = group["image"].shape[0]
    if n_images != n_complete:
        raise StoreIntegrityError(f"{kind} {path} has {n_images} images but {n_complete} are recorded complete")
    missing = missing_chunks(path)
    if missing:
        n_lost = sum(map(len, missing.values()))
        raise StoreIntegrityError(
            f"{kind} {path} lacks {n_lost} chunk files ({_chunk_files(path, missing)}), which would read as NaN; "
            "delete the store and extract it again"
        )


def _verified_start(partial: Path, progress: Path, claimed: int, first: int = 0) -> int:
    """``claimed``, or fewer images if the partial store lacks chunks of the claimed images ``first`` on
    (logged); -1 if the claim or the store's coordinates cannot be trusted."""
    group = _open_group(partial)
    n_images = group["image"].shape[0]
    if not first <= claimed <= n_images:
        log.warning(
            "progress file %s claims %d images, partial store %s has %d; starting afresh",
            progress,
            claimed,
            partial,
            n_images,
        )
        return -1
    verified = claimed
    for name, lost in missing_chunks(partial).items():
        dims = group[name].metadata.dimension_names or ()
        if "image" not in dims:
            log.warning("partial store %s lacks chunks of %s; starting afresh", partial, name)
            return -1
        axis = dims.index("image")
        starts = [c[axis] * group[name].chunks[axis] for c in lost]
        verified = min([verified] + [start for start in starts if start >= first])
    if verified < claimed:
        log.warning(
            "progress file %s claims %d images complete but partial store %s lacks chunks from image %d on; "
            "resuming after %d images",
            progress,
            claimed,
            partial,
            verified,
            verified,
        )
    return verified


def _stored_provenance(partial: Path, prov: ProvenanceAttrs) -> list[str] | None:
    """The provenance fields in which a partial store differs from ``prov`` ([] if none), or None
    (logged) if the store or its provenance is unreadable."""
    try:
        stored = type(prov).from_attrs(xr.open_zarr(partial, consolidated=False).attrs)
    except (KeyError, FileNotFoundError, ValueError) as error:
        log.warning("partial store %s unreadable (%s)", partial, error)
        return None
    return [f.name for f in fields(prov) if getattr(stored, f.name) != getattr(prov, f.name)]


def _read_progress(partial: Path, progress: Path, prov: ProvenanceAttrs) -> int:
    """Images already complete in a partial store with the same provenance, else -1."""
    if not progress.is_file():
        return -1
    changed = _stored_provenance(partial, prov)
    if changed is None:
        log.warning("partial store %s unreadable; starting afresh", partial)
        return -1
    if changed:
        log.warning("partial store %s has other provenance (%s differ); starting afresh", partial, ", ".join(changed))
        return -1
    claimed = _images_complete(progress)
    return -1 if claimed is None else _verified_start(partial, progress, claimed)


def _write_progress(progress: Path, n_complete: int, part: Part | None = None) -> None:
    tmp = progress.with_name(progress.name + ".tmp")
    tmp.write_text(json.dumps({"images_complete": n_complete} if part is None else part.record(n_complete)))
    os.replace(tmp, progress)


def _write_template(partial: Path, template: Callable[[], xr.Dataset]) -> None:
    shutil.rmtree(partial, ignore_errors=True)
    ds = template()
    encoding = {name: {"compressors": COMPRESSORS} for name in ds.variables}
    ds.to_zarr(partial, compute=False, mode="w", consolidated=False, encoding=encoding, write_empty_chunks=True)


def begin_store(store: str | Path, prov: ProvenanceAttrs, template: Callable[[], xr.Dataset]) -> int:
    """Start or resume writing ``<store>.partial``; the first image still to write.

    First takes the store's writer lock (:func:`lock_store`), held until :func:`publish_store` (or the
    end of :func:`writing`, or of the process), so that a second writer fails before it reads,
    writes or deletes anything. A partial store whose attributes hold the same provenance resumes
    after its last complete batch; anything else (no progress file, unreadable store, other
    provenance) is deleted and the store started afresh from ``template()`` (a lazy Dataset of the
    full shape and chunking, whose metadata and coordinates ``to_zarr(compute=False)`` writes).

    Progress files of parts (:func:`begin_parts`) are deleted: their chunks are rewritten.

    Raises
    ------
    StoreLockedError
        If another process is writing the store or a part of it (it holds the lock); nothing is touched.
    FileExistsError
        If ``store`` already exists (a complete store is never overwritten); nothing is touched.
    """
    store = Path(store)
    taken = lock_store(store)
    try:
        if store.exists():
            raise FileExistsError(f"store {store} already exists; delete it to extract again")
        partial, progress = partial_path(store), progress_path(store)
        _check_no_part_writer(store)
        # A part's progress claims chunks of a sharded run: not this writer's, so never trusted here.
        for stale in _part_files(store, ".progress.json"):
            stale.unlink()
        start = _read_progress(partial, progress, prov)
        if start < 0:
            _write_template(partial, template)
            _write_progress(progress, 0)
            return 0
    except BaseException:
        if taken:
            unlock_store(store)
        raise
    if start:
        log.info("resuming %s after %d images", partial, start)
    return start


def check_finite(batch: xr.Dataset, first: int, last: int, model: str, sites: dict) -> None:
    """Check that every value of a batch is finite before it is written.

    Parameters
    ----------
    batch : xarray.Dataset
        The batch's variables, images first.
    first, last : int
        The images it holds.
    model : str
        The model's config name, for the message.
    sites : dict of str to str or tuple of str
        Variable -> what it records: a site name, or one site name per index of its second dim (its layers).

    Raises
    ------
    ValueError
        If a value is NaN or infinite; the message names the model, the variable, the sites and the images.
    """
    for name, variable in batch.data_vars.items():
        values = variable.values
        bad = ~np.isfinite(values)
        if not bad.any():
            continue
        label = sites[name]
        if isinstance(label, tuple):
            layers = np.flatnonzero(bad.any(axis=tuple(axis for axis in range(values.ndim) if axis != 1)))
            label = ", ".join(label[layer] for layer in layers)
        images = first + np.flatnonzero(bad.reshape(len(values), -1).any(axis=1))
        n_nan = int(np.isnan(values).sum())
        overflow = " (float16 overflows beyond 65504)" if values.dtype == np.float16 and n_nan < bad.sum() else ""
        raise ValueError(
            f"model {model}: {n_nan} NaN and {int(bad.sum()) - n_nan} infinite values{overflow} in {name} at {label}, "
            f"images {', '.join(map(str, images[:10]))}{' ...' if len(images) > 10 else ''} of batch {first}:{last}; "
            "the batch is not written and the store stays unpublished"
        )


def write_batch(
    store: str | Path, batch: xr.Dataset, first: int, last: int, model: str, sites: dict, part: Part | None = None
) -> None:
    """Check images ``first:last`` (:func:`check_finite`), write them into the partial store (a region
    write), then record them complete: in the store's progress file, or in the progress file of
    ``part`` (:func:`begin_part`), whose range must hold them.

    Raises
    ------
    ValueError
        If a value of the batch is not finite, or the images are outside ``part``; nothing of it is written.
    """
    if part is not None and not part.first <= first <= last <= part.end:
        raise ValueError(f"images {first}:{last} are outside part {part.index} ({part.first}:{part.end})")
    check_finite(batch, first, last, model, sites)
    batch.to_zarr(
        partial_path(store), region={"image": slice(first, last)}, consolidated=False, write_empty_chunks=True
    )
    if part is None:
        _write_progress(progress_path(store), last)
    else:
        _write_progress(part.progress(store), last, part)


def publish_store(store: str | Path, kind: str) -> Path:
    """Check a finished partial store, record its chunks and publish it by a rename, so a store that
    exists is complete; then release the writer lock (:func:`begin_store`).

    The record (:data:`CHUNK_RECORD`, in the store) holds the crc32c of every chunk by its key, so
    that reading a chunk file copied over another fails (:func:`open_published`).

    Parameters
    ----------
    store : path
    kind : str
        What the store is, for the error message (``"activation store"``).

    Raises
    ------
    StoreLockedError
        If another process is writing the store.
    StoreIntegrityError
        If the progress file does not record every image complete, or a chunk file is missing (:func:`check_store`).
    """
    store = Path(store)
    partial, progress = partial_path(store), progress_path(store)
    taken = lock_store(store)
    try:
        group = _open_group(partial, mode="r+")
        n_images = group["image"].shape[0]
        n_complete = _images_complete(progress)
        if n_complete != n_images:
            raise StoreIntegrityError(
                f"progress file {progress} records {n_complete} of {n_images} images complete; {partial} is not published"
            )
        _publish(store, group, kind, [progress])
    except BaseException:
        if taken:
            unlock_store(store)
        raise
    unlock_store(store)
    return store


def _publish(store: Path, group: zarr.Group, kind: str, progress: list[Path]) -> None:
    """Check every chunk of a finished partial store, record them, drop its progress files and rename it."""
    partial = partial_path(store)
    n_images = group["image"].shape[0]
    check_store(partial, f"partial {kind}", n_images)
    _record_chunks(partial)
    group.attrs["images_complete"] = n_images
    # Without its progress files a leftover partial store restarts from scratch, so dropping them
    # before the rename never lets an incomplete store pass for a complete one.
    for file in progress:
        file.unlink()
    os.replace(partial, store)


def begin_parts(store: str | Path, prov: ProvenanceAttrs, template: Callable[[], xr.Dataset]) -> bool:
    """Write the template of ``<store>.partial`` for its parts (:func:`begin_part`), or keep a partial
    store whose attributes hold the same provenance, so that its parts resume.

    Runs under the store's writer lock, released on return. A kept partial store loses its
    single-writer progress file (:func:`begin_store`), whose chunks the parts rewrite; a new one
    drops every part's progress file.

    Returns
    -------
    bool
        True if a partial store was kept.

    Raises
    ------
    StoreLockedError
        If another process is writing the store or a part of it; nothing is touched.
    FileExistsError
        If ``store`` already exists; nothing is touched.
    """
    store = Path(store)
    partial = partial_path(store)
    with writing(store):
        if store.exists():
            raise FileExistsError(f"store {store} already exists; delete it to extract again")
        _check_no_part_writer(store)
        progress_path(store).unlink(missing_ok=True)
        changed = _stored_provenance(partial, prov) if partial.exists() else None
        if changed == []:
            log.info("keeping %s: its parts resume", partial)
            return True
        if changed:
            log.warning(
                "partial store %s has other provenance (%s differ); starting afresh", partial, ", ".join(changed)
            )
        for stale in _part_files(store, ".progress.json"):
            stale.unlink()
        _write_template(partial, template)
    return False


def begin_part(store: str | Path, prov: ProvenanceAttrs, part: Part) -> int:
    """Start or resume writing one part of a store (:func:`part_range`); the first image still to write.

    Takes the part's writer lock (``<store>.part-<k>.lock``), held until the process ends or
    :func:`unlock_store` of :meth:`Part.name`. The partial store (:func:`begin_parts`) must hold
    ``prov``; the part resumes after the last complete batch its progress file records, if that file
    is of the same part and range and the chunks it claims exist, else from ``part.first``.

    Raises
    ------
    StoreLockedError
        If another process is writing this part, or holds the store's own lock (its template or
        publishing job, or a one-job extraction); nothing is touched.
    FileExistsError
        If ``store`` already exists.
    FileNotFoundError
        If there is no partial store (its template job has not run).
    StoreProvenanceError
        If the partial store holds other provenance (the message names the fields); nothing is touched.
    """
    store = Path(store)
    partial, progress = partial_path(store), part.progress(store)
    taken = lock_store(part.name(store))
    try:
        pid = writer_pid(store)
        if pid is not None:  # the template job, the publishing job, or a one-job extraction
            raise StoreLockedError(f"{store} is being written by another process (pid {pid}); wait for it or kill it")
        if store.exists():
            raise FileExistsError(f"store {store} already exists; delete it to extract again")
        if not partial.exists():
            raise FileNotFoundError(
                f"part {part.index} of {store}: no partial store {partial}; write its template first"
            )
        changed = _stored_provenance(partial, prov)
        if changed is None:
            raise StoreProvenanceError(f"part {part.index} of {store}: partial store {partial} is unreadable")
        if changed:
            raise StoreProvenanceError(
                f"part {part.index} of {store}: partial store {partial} was begun with other provenance "
                f"({', '.join(changed)} differ); the part refuses to write into it. Rerun the store's template "
                "job (it starts the partial store afresh), then every part"
            )
        start = -1
        if progress.is_file():
            claimed = _images_complete(progress)
            try:
                same = json.loads(progress.read_text()) == part.record(claimed)
            except ValueError:
                same = False
            if claimed is not None and same:
                start = _verified_start(partial, progress, claimed, part.first)
            else:
                log.warning("progress file %s is of another part or range; starting the part afresh", progress)
        if start < 0:
            start = part.first
            _write_progress(progress, start, part)
    except BaseException:
        if taken:
            unlock_store(part.name(store))
        raise
    if start > part.first:
        log.info("resuming part %d of %s after image %d", part.index, partial, start)
    return start


def publish_parts(store: str | Path, kind: str, parts: int, batch_size: int) -> Path:
    """Check that each of the ``parts`` parts of a partial store recorded its whole range complete and
    that every chunk was written, then publish it as :func:`publish_store` does (the same chunk
    record, attributes and rename), dropping the parts' progress files.

    Raises
    ------
    StoreLockedError
        If another process is writing the store or a part of it.
    StoreIntegrityError
        If a part's progress file is missing, of another part count or range, or short, or a chunk
        file is missing (:func:`check_store`).
    """
    store = Path(store)
    partial = partial_path(store)
    with writing(store):
        _check_no_part_writer(store)
        group = _open_group(partial, mode="r+")
        n_images = group["image"].shape[0]
        progress = []
        for index in range(parts):
            part = part_range(n_images, batch_size, index, parts)
            file = part.progress(store)
            try:
                recorded = json.loads(file.read_text())
            except (FileNotFoundError, ValueError) as error:
                raise StoreIntegrityError(
                    f"part {index} of {parts} of {partial}: no readable {file} ({error})"
                ) from None
            if recorded != part.record(part.end):
                raise StoreIntegrityError(
                    f"part {index} of {parts} of {partial}: {file} records {recorded}, not images {part.first} to "
                    f"{part.end - 1} complete; {partial} is not published"
                )
            progress.append(file)
        # Those of another part count too (a kept partial store whose K changed), so that none is left behind.
        _publish(store, group, kind, sorted(set(progress) | set(_part_files(store, ".progress.json"))))
    return store


def open_published(store: str | Path, kind: str) -> xr.Dataset:
    """Check a published store (:func:`check_store`) and open it lazily, once per job: read what is
    needed from the returned Dataset.

    Parameters
    ----------
    store : path
    kind : str
        What the store is, for the error message (``"activation store"``).

    Returns
    -------
    xarray.Dataset
        Lazy; reading a chunk whose crc32c checksum fails, or whose file holds another chunk than the
        one written at its position (a chunk file copied over another: its crc32c differs from the one
        :data:`CHUNK_RECORD` records for its key), raises :class:`StoreIntegrityError` naming the file
        and, when its crc32c is recorded for another key, that chunk.

    Raises
    ------
    FileNotFoundError
        If the store does not exist; the message says whether a partial store is waiting to resume.
    StoreIntegrityError
        If the store records no ``images_complete`` or another image count, lacks a chunk file or
        has no checksums (:func:`check_store`), or has no :data:`CHUNK_RECORD` listing every chunk
        (a store published by an older clipmech: the message names the rule to rerun).
    """
    store = Path(store)
    if not store.exists():
        waiting = partial_path(store).exists()
        hint = " (an unfinished partial store exists: rerun extraction to resume it)" if waiting else ""
        raise FileNotFoundError(f"no {kind} at {store}{hint}")
    n_complete = _open_group(store).attrs.get("images_complete")
    if n_complete is None:
        raise StoreIntegrityError(
            f"{kind} {store} records no images_complete: written by an older clipmech or not published by it; "
            "delete it and extract it again"
        )
    check_store(store, kind, n_complete)
    record = _read_chunk_record(store, kind)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_FOREIGN_FILES)
        return xr.open_zarr(_VerifiedStore(LocalStore(store, read_only=True), record), consolidated=False)


def spill_array(path: str | Path, batch_shape: tuple[int, int], units: int) -> zarr.Array:
    """An empty (0, U) float32 zarr array at ``path`` that batches of (B, U) are appended to: uncompressed chunks
    of one batch's rows and ``units`` units, so that a block of that many units reads whole chunks. A stage's
    temporary spill of per-input activations (concept AUROC, the SAE evaluation's baselines), not a store.
    """
    rows, n_units = batch_shape
    return zarr.create_array(
        store=str(path),
        shape=(0, n_units),
        chunks=(max(1, rows), max(1, min(units, n_units))),
        dtype="float32",
        compressors=None,
        fill_value=0.0,
    )
