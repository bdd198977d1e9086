"""Feeding natural-image datasets (files or tar shards listed in a manifest) to a model, fast enough for a GPU.

A natural-image dataset directory holds ``manifest.parquet``: one row per sample in ``index`` order,
with ``source`` (an image file, a tar shard or a CIFAR-10 batch file, relative to the dataset root),
``member`` (the member name inside that shard, the image's row in that batch as decimal digits, ``""``
for a plain file) and ``sha256`` (of the image's bytes), among other columns. :class:`ManifestImages`
reads one sample: its bytes, decoded to RGB by :func:`open_rgb` (a CIFAR-10 row: its 32 x 32 pixels,
:func:`cifar_image`), through the model's eval transform; :func:`image_loader` batches them in index order with worker
processes that decode and transform in parallel (``benchmarks/loader.py`` measures how many images
per second one core decodes, which sizes the CPUs a GPU needs).

The pixels equal what the model's own transform gives for the same RGB image (``preprocess(open_rgb(path))``)
bit for bit, whatever the batch size or the number of workers.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import tarfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from clipmech.models.loading import preprocess_images

#: Manifest columns :class:`ManifestImages` reads (``sha256`` as well when it verifies the bytes).
MANIFEST_COLUMNS = ("index", "source", "member")

#: Tar shards a worker keeps open at once; older ones are closed (and their member index dropped) first.
MAX_OPEN_SHARDS = 8

#: A manifest ``member`` that names a row of a CIFAR-10 batch file (a tar member always has an extension).
BATCH_ROW = re.compile(r"^\d+$")

#: Integer greyscale modes that hold more than 8 bits per pixel, scaled to 8 bits by :func:`open_rgb`.
_DEEP_INTEGER_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def open_rgb(source: bytes | str | Path, name: str | None = None) -> Image.Image:
    """Decode an image (its bytes, or a file) into an RGB PIL image, as open_clip's transform would convert it.

    open_clip's eval transform converts every image with ``image.convert("RGB")`` (``MaybeConvertMode``,
    formerly ``_convert_to_rgb``), after resizing; this does the same conversion, before the transform, so
    that ``preprocess(open_rgb(path))`` is what the model sees:

    * RGB is returned as it is; greyscale (``L``, ``1``) is repeated in the three channels; CMYK (JPEGs
      from print workflows, including Adobe's inverted ones, which PIL's decoder un-inverts) and YCbCr go
      through PIL's conversion;
    * palette images (``P``, ``PA``) take their palette colours; a transparent palette entry keeps its
      own colour (transparency is dropped, as open_clip drops it);
    * images with alpha (``RGBA``, ``LA``, ``PA``) drop the alpha channel without compositing: the colour
      stored under a transparent pixel is used (what ``convert("RGB")`` does, so the model sees what it
      would in open_clip's pipeline and in CLIP's training; compositing on white would differ from both);
    * deep integer greyscale (``I;16*``, and ``I``, which PIL's decoders use for 16-bit PGM and TIFF data)
      is scaled from 16 bits to 8 (round(v * 255 / 65535), ``I`` clipped to 0..65535 first). Here this
      departs from ``convert("RGB")``, which clips such values at 255 and turns a 16-bit photograph white;
    * float greyscale (``F``) has no intrinsic scale and is taken as 0..255, as PIL converts it (clipped).

    Only the first frame of an animated or multi-page file is read; the EXIF orientation is not applied
    (open_clip does not apply it either).

    Parameters
    ----------
    source : bytes or str or pathlib.Path
        The encoded image (JPEG, PNG, ... as read from a file or a tar member) or the path of a file.
    name : str, optional
        What error messages call the image (a tar member: ``shard.tar:member``); default the path, or
        ``<bytes>``.

    Returns
    -------
    PIL.Image.Image
        Mode ``RGB``, decoded (not lazy).

    Raises
    ------
    FileNotFoundError
        If ``source`` is a path that does not exist.
    ValueError
        If the image cannot be decoded (not an image, truncated, unsupported mode, a decompression bomb);
        the message names it and gives PIL's reason.
    """
    if name is None:
        name = "<bytes>" if isinstance(source, bytes | bytearray) else str(source)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes | bytearray) else source) as image:
            image.load()
            if image.mode == "RGB":
                return image.copy()
            if image.mode in _DEEP_INTEGER_MODES:
                values = np.asarray(image).astype(np.int64)
                grey = ((np.clip(values, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)
                return Image.fromarray(grey).convert("RGB")
            return image.convert("RGB")
    except FileNotFoundError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        # PIL raises UnidentifiedImageError (OSError) for unknown formats, OSError for truncated data,
        # ValueError for unsupported conversions and SyntaxError from some format parsers.
        raise ValueError(f"cannot decode image {name}: {type(error).__name__}: {error}") from error


def read_cifar_batch(path: str | Path) -> np.ndarray:
    """The images of a CIFAR-10 batch file (python version), as the batch stores them.

    The file is a pickled dict whose ``data`` is uint8 (n, 3072): per image the 1024 red, then green, then
    blue values of its 32 x 32 pixels, row-major (read as torchvision's ``CIFAR10`` reads it, with
    ``encoding="latin1"``). Only call it on files you trust: unpickling runs code.

    Returns
    -------
    numpy.ndarray, uint8, (n, 3072)

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is not a pickled dict with such a ``data`` array (the message names it).
    """
    with open(path, "rb") as fh:
        try:
            batch = pickle.load(fh, encoding="latin1")
            data = np.asarray(batch["data"])
        except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path} is not a CIFAR-10 batch file: {type(error).__name__}: {error}") from error
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: its data is {data.dtype} of shape {data.shape}, expected uint8 (n, 3072)")
    return data


def cifar_image(row: bytes | np.ndarray) -> Image.Image:
    """A CIFAR-10 image from its 3072 bytes as its batch stores them (channel-first), as an RGB PIL image:
    ``Image.fromarray`` of the 32 x 32 x 3 array, what torchvision's ``CIFAR10`` gives for it."""
    pixels = np.frombuffer(row, dtype=np.uint8) if isinstance(row, bytes | bytearray) else np.asarray(row)
    return Image.fromarray(np.ascontiguousarray(pixels.reshape(3, 32, 32).transpose(1, 2, 0)))


def model_view(picture: Image.Image, size: int) -> Image.Image:
    """A photograph as the model sees it, at ``size`` x ``size`` pixels: its short side resized to ``size``
    (bicubic) and the centre cropped, the geometry of open_clip's eval transform (``Resize`` of the short side,
    ``CenterCrop``), so that a unit's patch map covers exactly the picture (the atlas's thumbnails, the SAE
    evaluation's top images)."""
    resized = TF.resize(picture, size, interpolation=InterpolationMode.BICUBIC)
    return TF.center_crop(resized, [size, size])


class ModelViewImages:
    """The photographs of a natural-image dataset as uint8 RGB arrays at ``size`` x ``size`` pixels, as the model
    sees them (:func:`model_view`), indexed like a Shapes dataset's (N, size, size, 3) image array: an int array
    of image indices gives those images, decoded on demand through the manifest (:class:`ManifestImages`).

    Parameters
    ----------
    dataset : clipmech.data.datasets.ImageDataset
        With ``manifest`` (one row per image, in ``index`` order), ``root`` and ``n_images``.
    size : int
        The model's input size (its crop).
    """

    def __init__(self, dataset, size: int) -> None:
        self.dataset = dataset
        self.size = int(size)
        self.shape = (int(dataset.n_images), self.size, self.size, 3)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, indices) -> np.ndarray:
        """uint8 (len(indices), size, size, 3) for an int array or list of image indices."""
        indices = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        manifest = self.dataset.manifest.iloc[indices]
        if not np.array_equal(manifest["index"].to_numpy(), indices):
            raise ValueError("the manifest's rows are not in index order")
        images = ManifestImages(manifest, self.dataset.root, lambda picture: np.asarray(model_view(picture, self.size)))
        try:
            out = np.zeros((len(indices), self.size, self.size, 3), dtype=np.uint8)
            for item in range(len(images)):
                out[item] = images[item][1]
            return out
        finally:
            images.close()


class ManifestImages(torch.utils.data.Dataset):
    """The samples of a manifest, decoded by :func:`open_rgb` and passed through a model's eval transform.

    Item ``i`` is the manifest's ``i``-th row (the rows given, in their order). A plain file is read
    from ``root / source``; a tar member from the shard ``root / source`` (uncompressed tar: members are
    read by seeking to their data, after one pass over the shard's headers); a CIFAR-10 image (a ``member``
    of digits, :data:`BATCH_ROW`) is that row of the batch file ``root / source`` (:func:`read_cifar_batch`,
    decoded by :func:`cifar_image`). Each process opens its own shard handles lazily and keeps up to
    :data:`MAX_OPEN_SHARDS` of them, and as many CIFAR-10 batches in memory (each worker reads a batch file
    once); a process that finds handles opened by another (after a fork) drops them and opens its own, and
    :func:`image_loader`'s workers drop them on start (:meth:`reset_handles`), so no file offset is ever
    shared between processes.

    Parameters
    ----------
    manifest : pandas.DataFrame
        Rows of ``manifest.parquet`` (all or some, in the order to read them); needs the columns
        :data:`MANIFEST_COLUMNS`, and ``sha256`` when ``verify`` is set.
    root : str or pathlib.Path
        The dataset root that ``source`` is relative to.
    transform : callable
        PIL RGB image -> torch.Tensor, float32, (3, S, S): the ``preprocess`` that
        :func:`clipmech.models.loading.load_model` returns.
    verify : bool
        Check each image's bytes against the manifest's ``sha256`` before decoding them.

    Raises
    ------
    ValueError
        On construction, if a needed column is missing (the message lists the manifest's columns).
    """

    def __init__(self, manifest: pd.DataFrame, root: str | Path, transform: Callable, *, verify: bool = False) -> None:
        needed = MANIFEST_COLUMNS + (("sha256",) if verify else ())
        missing = [column for column in needed if column not in manifest.columns]
        if missing:
            raise ValueError(
                f"manifest lacks the column(s) {', '.join(missing)} (it has: {', '.join(map(str, manifest.columns))})"
            )
        self.root = Path(root)
        self.transform = transform
        self.verify = verify
        # Plain arrays and lists, not the DataFrame: cheap to index and to copy into worker processes.
        self.indices = manifest["index"].to_numpy(dtype=np.int64)
        self.sources = [str(source) for source in manifest["source"]]
        self.members = [member if isinstance(member, str) else "" for member in manifest["member"]]
        self.sha256 = [str(digest) for digest in manifest["sha256"]] if verify else None
        self._shards: OrderedDict[str, tuple] = OrderedDict()
        self._batches: OrderedDict[str, np.ndarray] = OrderedDict()
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> tuple[int, torch.Tensor]:
        """Sample ``item``: (its manifest ``index``, the transformed image, float32, (3, S, S)).

        Raises
        ------
        FileNotFoundError
            If the file or shard is missing, or the shard has no such member (the message names them).
        ValueError
            If the bytes' sha256 differs from the manifest's (``verify``; the message names the image and
            both hashes), or the image cannot be decoded (:func:`open_rgb`).
        """
        data, name = self.read_bytes(item)
        if self.verify:
            actual = hashlib.sha256(data).hexdigest()
            if actual != self.sha256[item]:
                raise ValueError(
                    f"image {name} (manifest index {self.indices[item]}) has sha256 {actual}, but the manifest "
                    f"records {self.sha256[item]}: the file changed after the manifest was written"
                )
        picture = cifar_image(data) if BATCH_ROW.match(self.members[item]) else open_rgb(data, name)
        return int(self.indices[item]), self.transform(picture)

    def read_bytes(self, item: int) -> tuple[bytes, str]:
        """The bytes of sample ``item`` (encoded; a CIFAR-10 image's 3072 as its batch stores them) and its name
        for messages (``path``, ``shard:member`` or ``batch:row``)."""
        path = self.root / self.sources[item]
        member = self.members[item]
        if BATCH_ROW.match(member):
            rows = self._batch(path)
            if int(member) >= len(rows):
                raise FileNotFoundError(
                    f"CIFAR-10 batch {path} has {len(rows)} rows, no row {member} (manifest index {self.indices[item]})"
                )
            return rows[int(member)].tobytes(), f"{path}:{member}"
        if not member:
            try:
                return path.read_bytes(), str(path)
            except FileNotFoundError as error:
                raise FileNotFoundError(f"image file missing: {path} (manifest index {self.indices[item]})") from error
        handle, offsets = self._shard(path)
        name = f"{path}:{member}"
        if member not in offsets:
            raise FileNotFoundError(f"tar shard {path} has no member {member!r} (manifest index {self.indices[item]})")
        start, size = offsets[member]
        handle.seek(start)
        return handle.read(size), name

    def __getstate__(self) -> dict:
        # Workers started by spawn (not fork) get a pickled copy: without the open shards and read batches.
        return {**self.__dict__, "_shards": OrderedDict(), "_batches": OrderedDict()}

    def reset_handles(self) -> None:
        """Forget the shard handles (without closing them: they may belong to the parent of a fork) and the
        batches read."""
        self._shards = OrderedDict()
        self._batches = OrderedDict()
        self._pid = os.getpid()

    def close(self) -> None:
        """Close this process's shard handles and drop its batches."""
        for handle, _ in self._shards.values():
            handle.close()
        self._shards = OrderedDict()
        self._batches = OrderedDict()

    def _batch(self, path: Path) -> np.ndarray:
        if self._pid != os.getpid():
            self.reset_handles()
        key = str(path)
        if key not in self._batches:
            if not path.is_file():
                raise FileNotFoundError(f"CIFAR-10 batch file missing: {path}")
            self._batches[key] = read_cifar_batch(path)
            if len(self._batches) > MAX_OPEN_SHARDS:
                self._batches.popitem(last=False)
        self._batches.move_to_end(key)
        return self._batches[key]

    def _shard(self, path: Path) -> tuple:
        if self._pid != os.getpid():
            self.reset_handles()
        key = str(path)
        if key in self._shards:
            self._shards.move_to_end(key)
            return self._shards[key]
        if not path.is_file():
            raise FileNotFoundError(f"tar shard missing: {path}")
        handle = open(path, "rb")
        try:
            # One pass over the headers: name -> (data offset, size); reads then seek on the raw file.
            with tarfile.open(fileobj=handle, mode="r:") as tar:
                offsets = {info.name: (info.offset_data, info.size) for info in tar if info.isfile()}
        except tarfile.TarError as error:
            handle.close()
            raise ValueError(f"cannot read tar shard {path} (not an uncompressed tar?): {error}") from error
        self._shards[key] = (handle, offsets)
        if len(self._shards) > MAX_OPEN_SHARDS:
            old, _ = self._shards.popitem(last=False)[1]
            old.close()
        return self._shards[key]


def _reset_worker_handles(worker_id: int) -> None:
    dataset = torch.utils.data.get_worker_info().dataset
    if isinstance(dataset, ManifestImages):
        dataset.reset_handles()


def image_loader(
    dataset: ManifestImages, *, batch_size: int, workers: int, device: str | torch.device | None = None
) -> torch.utils.data.DataLoader:
    """Batches of a dataset in index order, decoded by ``workers`` processes while the model runs.

    Each worker decodes whole batches (worker ``k`` the batches ``k``, ``k + workers``, ...), one thread
    each (torch sets 1 thread in its workers); the DataLoader hands them back in order. ``workers=0``
    decodes in the calling process. A GPU that consumes X images/s needs about
    ``X / (images/s of one core)`` workers, plus one core for the process that runs the model
    (``benchmarks/loader.py`` prints the rate of one core). A worker hands each batch over in shared
    memory, which costs it about 10 % more CPU per image than decoding in the model's process.

    Parameters
    ----------
    dataset : ManifestImages
        Or any dataset of (int, torch.Tensor (3, S, S)) items.
    batch_size : int
        Images per batch (the last one may be smaller).
    workers : int
        Worker processes (a rule passes its ``threads``); 0 decodes in this process.
    device : str or torch.device, optional
        Where the batches go: a CUDA device pins the batches in page-locked memory, so that
        ``.to(device, non_blocking=True)`` overlaps the copy with compute. The batches stay on the CPU.

    Returns
    -------
    torch.utils.data.DataLoader
        Yielding ``(index_N, pixels_NCHW)``: torch.Tensor, int64, (N,), the manifest ``index`` of each
        image; torch.Tensor, float32, (N, 3, S, S). Workers persist across passes (``workers > 0``).
    """
    device = torch.device(device) if device is not None else None
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=device is not None and device.type == "cuda",
        persistent_workers=workers > 0,
        worker_init_fn=_reset_worker_handles if workers > 0 else None,
    )


def pixel_batches(
    dataset,
    preprocess: Callable,
    *,
    batch_size: int,
    start: int = 0,
    stop: int | None = None,
    workers: int = 0,
    device: str | torch.device | None = None,
):
    """The images of any dataset from ``start`` on (to ``stop``, excluded), through a model's eval transform, in batches.

    A synthetic dataset (``dataset.images``, uint8 (N, H, W, 3)) is transformed image by image in this
    process (:func:`clipmech.models.loading.preprocess_images`); a natural-image dataset (``dataset.manifest``)
    is decoded by :func:`image_loader` with ``workers`` processes. Either way the pixels equal
    ``preprocess`` of the RGB image, and batch b holds images ``start + b * batch_size`` onwards, so that a
    resumed store (whose chunks are ``batch_size`` images) reads whole chunks.

    Parameters
    ----------
    dataset : clipmech.data.datasets.ImageDataset
    preprocess : callable
        PIL RGB image -> torch.Tensor, float32, (3, S, S).
    batch_size : int
    start : int
        The first image.
    stop : int, optional
        The image after the last (default: every image to the end).
    workers : int
        Decoding processes for a natural-image dataset (0: this process).
    device : str or torch.device, optional
        Where the model runs: CUDA pins the batches of either kind of dataset in page-locked memory
        (:func:`image_loader`), so that ``.to(device, non_blocking=True)`` overlaps the copy with compute.

    Yields
    ------
    first, last : int
        The images ``first .. last - 1`` of the dataset.
    pixels_NCHW : torch.Tensor, float32, (last - first, 3, S, S), on the CPU (pinned for a CUDA ``device``)
    """
    n_images = dataset.n_images if stop is None else min(stop, dataset.n_images)
    pin = device is not None and torch.device(device).type == "cuda"
    if dataset.images is not None:
        for first in range(start, n_images, batch_size):
            last = min(first + batch_size, n_images)
            pixels_NCHW = preprocess_images(dataset.images[first:last], preprocess)
            yield first, last, pixels_NCHW.pin_memory() if pin else pixels_NCHW
        return
    rows = dataset.manifest.iloc[start:n_images]
    images = ManifestImages(rows, dataset.root, preprocess)
    first = start
    for _, pixels_NCHW in image_loader(images, batch_size=batch_size, workers=workers, device=device):
        last = first + pixels_NCHW.shape[0]
        yield first, last, pixels_NCHW
        first = last
